"""Every bad input is one line `harness: error: …`, exit 2, before anything is written: the --out
folder is left as it was (not created, no empty optuna.journal)."""
from __future__ import annotations

import warnings

import pytest

from harness.cli import main

RUN = ["--threads", "1", "run", "--no-progress"]


def _write(tmp_path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return name


def _csv(rows: list[str]) -> str:
    return "\n".join(rows) + "\n"


FILES = {
    "header.csv": _csv(["a,y"]),
    "target_only.csv": _csv(["y", "0", "1", "0", "1"]),
    "one_class.csv": _csv(["a,y"] + [f"{i},0" for i in range(30)]),
    "inf.csv": _csv(["a,b,y"] + [f"{i},{'inf' if i == 7 else 1},{i % 2}" for i in range(30)]),
    "minus_inf.csv": _csv(["a,b,y"] + [f"{i},{'-inf' if i == 3 else 1},{i % 2}" for i in range(30)]),
    "huge.csv": _csv(["a,b,y"] + [f"{i},{'1e38' if i == 5 else 1},{i % 2}" for i in range(30)]),
    "no_utf8.yaml": b"name: x\xff\nmethods: [logreg]\ndatasets: [iris]\n",
    "timeout.yaml": 'methods: [logreg]\ndatasets: [iris]\ntimeout: "abc"\n',
    "sampler_seed.yaml": 'methods: [logreg]\ndatasets: [iris]\nsampler_seed: "x"\n',
    "storage.yaml": "methods: [logreg]\ndatasets: [iris]\nstorage: 5\n",
    "tune.yaml": 'methods: [{method: logreg, tune: "no"}]\ndatasets: [iris]\n',
    "option.yaml": "methods: [logreg]\ndatasets: [{name: iris, colour: red}]\n",
    "row_param.yaml": "methods: [{method: logreg, params: {nosuchkey: 3}}]\ndatasets: [iris]\n",
    "a_file": "",
}


@pytest.mark.parametrize("args, said", [
    # paths
    (["logreg", "--dataset", "iris", "--out", "a_file"], "--out a_file is a file, not a folder"),
    (["logreg", "--dataset", "iris", "--out", "a_file/o"], "cannot create --out a_file/o: a_file is a file"),
    (["logreg", "--dataset", "iris", "--storage", "a_file/s.journal"], "cannot create --storage a_file/s.journal"),
    (["logreg", "--dataset", "iris", "--storage", "."], "unrecognised storage '.'"),
    # suite files
    (["--suite", "no_utf8.yaml"], "suite file no_utf8.yaml is not UTF-8 text"),
    (["--suite", "timeout.yaml"], "timeout must be a number of seconds, got 'abc'"),
    (["--suite", "sampler_seed.yaml"], "sampler_seed (--sampler-seed) must be a non-negative integer, got 'x'"),
    (["--suite", "storage.yaml"], "storage must be a string, got 5"),
    (["--suite", "tune.yaml"], "logreg: tune must be true or false, got 'no'"),
    (["--suite", "option.yaml"], "data set 'iris' has no option 'colour'"),
    (["logreg", "--dataset", "iris", "--sampler-seed", "-1"], "must be a non-negative integer, got -1"),
    # data
    (["logreg", "--dataset", "no_such_data"], "unknown data set 'no_such_data'"),
    (["logreg", "--dataset", "csv:header.csv", "--target", "y"], "CSV header.csv has a header but no rows"),
    (["logreg", "--dataset", "csv:target_only.csv", "--target", "y"], "has no feature columns besides 'y'"),
    (["logreg", "--dataset", "csv:header.csv", "--target", "label"], "has no column 'label'"),
    (["logreg", "--dataset", "csv:one_class.csv", "--target", "y"], "holds one class only ('0')"),
    (["logreg", "--dataset", "csv:inf.csv", "--target", "y"], "column 'b', data row 8 holds inf"),
    (["logreg", "--dataset", "csv:minus_inf.csv", "--target", "y"], "column 'b', data row 4 holds -inf"),
    (["logreg", "--dataset", "csv:huge.csv", "--target", "y"], "column 'b', data row 6 holds 1e+38"),
    (["erm", "--dataset", "iris", "--labels-per-class", "5000"], "exceeds the"),
    # pinned values, against the method's search space, before the first trial
    (["logreg", "--dataset", "iris", "--param", "nosuchkey=3"], "no method of this run (logreg) has a parameter"),
    (["--suite", "row_param.yaml"], "logreg: logreg has no parameter or configuration key 'nosuchkey'"),
    (["erm", "--dataset", "iris", "--param", "batch_size=0"], "erm: pinned batch_size=0 must be an integer ≥ 1"),
    (["erm", "--dataset", "iris", "--param", "optimizer=banana"], "erm: pinned optimizer='banana' is not in its"),
    (["erm", "--dataset", "iris", "--param", "lr=-5"], "erm: pinned lr=-5 is not in its search space ([0.001, 0.3] log)"),
    (["erm", "--dataset", "iris", "--param", "lr=abc"], "erm: pinned lr='abc' is not in its search space"),
    (["logreg", "--dataset", "iris", "--param", "C=-1"], "logreg: pinned C=-1 is not in its search space"),
    (["knn", "--dataset", "iris", "--param", "n_neighbors=100000"], "knn: pinned n_neighbors=100000 is not in"),
    # nothing left to run
    (["gcn", "--dataset", "iris"], "nothing to run: iris · gcn: gcn does not support tabular tasks"),
])
def test_bad_input_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, capsys, args, said):
    monkeypatch.chdir(tmp_path)
    for name, text in FILES.items():
        _write(tmp_path, name, text)
    code = main([*RUN, *args] + ([] if "--out" in args else ["--out", "o"]))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    assert said in lines[0]
    assert not (tmp_path / "o").exists()


def test_bad_input_leaves_an_existing_folder_unchanged(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*RUN, "logreg", "--dataset", "iris", "--trials", "1", "--seeds", "1", "--out", "o"]) == 0
    before = {p: p.read_bytes() for p in (tmp_path / "o").rglob("*") if p.is_file()}
    for bad in (["logreg", "--dataset", "nowhere"], ["logreg", "--dataset", "iris", "--param", "C=-1"],
                ["logreg", "--dataset", "iris", "--trials", "1", "--seeds", "1", "--epochs", "1"]):
        capsys.readouterr()
        assert main([*RUN, *bad, "--out", "o"]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    after = {p: p.read_bytes() for p in (tmp_path / "o").rglob("*") if p.is_file()}
    assert after == before


def test_report_refuses_an_unwritable_page_before_rewriting_the_tables(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*RUN, "logreg", "--dataset", "iris", "--trials", "1", "--seeds", "1", "--out", "o"]) == 0
    (tmp_path / "a_file").write_text("")
    stamp = (tmp_path / "o" / "summary.md").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["report", "--out", "o", "--html", "a_file/page.html"]) == 2
    assert "cannot create --html a_file/page.html: a_file is a file" in capsys.readouterr().err
    assert (tmp_path / "o" / "summary.md").stat().st_mtime_ns == stamp


def test_per_seed_seed_column_stays_integer_beside_a_fail_row(tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    assert main(["--plugin", "fixture_plugins.broken", *RUN, "raises", "logreg", "--dataset", "iris",
                 "--trials", "1", "--seeds", "2", "--out", "o"]) == 2  # raises: every trial fails
    text = (tmp_path / "o" / "per_seed.csv").read_text()
    assert ",FAIL," in text
    frame = pd.read_csv(tmp_path / "o" / "per_seed.csv")
    assert frame.seed.dropna().tolist() == [0, 1]
    assert all("." not in line.split(",")[2] for line in text.splitlines()[1:]), text  # 0, not 0.0


def test_non_latin_names_plot_without_glyph_warnings(tmp_path):
    from harness.report import plots

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.quiet_glyphs()
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.set_title("数据集 · метод")
        fig.savefig(tmp_path / "p.png")
        plt.close(fig)


@pytest.mark.parametrize("values, expected", [([float("nan")] * 3, (None, None)), ([0.5, float("nan")], (0.5, 0.0)),
                                              ([1.0, 3.0], (2.0, 2 ** 0.5))])
def test_summary_statistics_of_missing_values_raise_no_numpy_warning(values, expected):
    import math

    import numpy as np

    from harness.report.tables import nan_mean_std

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, std = nan_mean_std(np.array(values))
    for got, want in zip((mean, std), expected):
        assert math.isnan(got) if want is None else got == pytest.approx(want)
