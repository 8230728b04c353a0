"""The report page and its files, written from per-seed rows and tuning studies: self-contained,
escaped, with the statistics, figures and LaTeX tables; and `harness report --study/--html`."""
import base64
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from harness.report.pipeline import build
from harness.report.latex import escape
from harness.report.plots import StudyRecord, param_importances

from conftest import run_cli

EVIL = "<script>alert(1)</script>"
METHODS = ("alpha", "beta", EVIL)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _rows(datasets=("d1", "d2"), methods=METHODS, seeds=3):
    rng = np.random.default_rng(0)
    rows = []
    for ds in datasets:
        for i, m in enumerate(methods):
            for s in range(seeds):
                rows.append(dict(
                    suite="syn", dataset=ds, method=m, plugin="fixture", plugin_method="erm", seed=s, status="ok",
                    accuracy=0.8 + 0.05 * i + rng.normal(0, 0.01), ece=0.05 + rng.normal(0, 0.005),
                    nll=0.4 - 0.03 * i + rng.normal(0, 0.01), brier=0.3 + rng.normal(0, 0.01),
                    train_samples_per_s=1000.0 * (i + 1), infer_samples_per_s=1e5 / (i + 1), params_total=1e4,
                    params_trainable=1e4, trainable_fraction=1.0, config={"lr": 0.01}, n_train=100, n_val=20,
                    n_test=30, reliability={"count": [0] * 13 + [10, 20], "confidence": [None] * 13 + [0.9, 0.97],
                                            "accuracy": [None] * 13 + [0.8, 1.0]}))
                if m == "alpha":
                    rows[-1]["shift"] = [{"shift": "noise", "intensity": v, "accuracy": 0.8 - v, "ece": 0.05 + v / 4,
                                          "nll": 0.4 + v} for v in (0.1, 0.3)]
                    rows[-1]["ood"] = {"noise": {"auroc_entropy": 0.9 + 0.01 * s, "auroc_max_prob": 0.85}}
    return rows


def _study(n_trials=4, directions=("maximize",)):
    study = optuna.create_study(directions=list(directions), sampler=optuna.samplers.RandomSampler(seed=0))
    if len(directions) == 1:
        study.optimize(lambda t: t.suggest_float("lr", 1e-3, 1, log=True) + 0.1 * t.suggest_int("width", 1, 4),
                       n_trials=n_trials)
    else:
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1) + t.params["x"]),
                       n_trials=n_trials)
    return study


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    studies = [StudyRecord("syn", ds, m, _study(), ("accuracy",), 1) for ds in ("d1", "d2") for m in METHODS]
    mo = _study(8, ("maximize", "minimize"))
    studies.append(StudyRecord("syn", "d1", "multi", mo, ("accuracy", "ece"), mo.best_trials[0].number))
    paths = build(_rows(), {"suite": "syn", "git_commit": "abc123", "versions": {"torch": "x"}}, studies=studies,
                  descriptions={"erm": {"description": "<b>bold</b> & co", "citation": ""}}).write(out)
    return out, paths, paths["html"].read_text()


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.attrs = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    return parser


def test_page_is_self_contained(report):
    _, _, page = report
    parsed = _parse(page)
    for name, value in parsed.attrs:
        if name in ("src", "href"):
            assert value.startswith(("data:", "#")), (name, value[:80])
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == parsed.tags.count("img") >= 8
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    # one script, and the Content-Security-Policy allows exactly that one
    assert parsed.tags.count("script") == 1
    script = page.split("<script>")[1].split("</script>")[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page and "default-src 'none'" in page
    for section in ("summary", "statistics", "plots", "shift", "tuning", "pareto", "methods", "seeds", "provenance"):
        assert f"<section id='{section}'>" in page
    assert page.count("class='sortable'") >= 5


def test_plugin_strings_are_shown_as_text(report):
    out, _, page = report
    parsed = _parse(page)
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert EVIL in "".join(parsed.text)                 # a browser shows the name as written
    assert "b" not in parsed.tags and "<b>bold</b> &amp; co" not in page and "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page
    tex = (out / "summary.tex").read_text()
    assert r"\textless{}script\textgreater{}alert(1)\textless{}/script\textgreater{}" in tex and EVIL not in tex


def test_statistics_and_files(report):
    out, paths, page = report
    comp = pd.read_csv(out / "comparisons.csv")
    assert len(comp) == (2 + 1) * 3 * 4                 # (data sets + across them) × pairs × metrics
    assert set(comp["test"]) == {"paired t-test"}
    assert set(comp.groupby("paired_over")["n"].unique().map(tuple)) == {(3,), (2,)}  # 3 seeds, 2 data sets
    acc = comp[(comp["metric"] == "accuracy") & (comp["method_a"] == "alpha") & (comp["method_b"] == EVIL)]
    assert (acc["better"] == EVIL).all()                # 10 points apart with a 1-point spread
    ranks = pd.read_csv(out / "ranks.csv")
    acc_ranks = ranks[ranks["metric"] == "accuracy"].set_index("method")["average_rank"]
    assert acc_ranks[EVIL] == 1.0 and acc_ranks["alpha"] == 3.0
    assert "Friedman test" in page and "Nemenyi critical difference" in page
    assert "paired t-test" in page and "3 seeds per method" in page and "cannot reach p &lt; 0.05" in page
    assert "critical-difference diagram, accuracy" in page and "Pareto front, d1 multi" in page
    assert "calibration under shift, d1" in page and "<td class='num' data-v='0.91'>0.910 ± 0.010</td>" in page
    for key in ("plot:accuracy_vs_ece", "plot:accuracy_vs_throughput", "plot:cd_accuracy", "plot:history_d1",
                "plot:importance_d1", "plot:pareto_d1_multi", "reliability_png:d1", "shift_png:d1", "summary_tex",
                "ranks_tex:accuracy"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0, key
    tex = (out / "summary.tex").read_text()
    assert tex.count(r"\textbf{") >= 2 * 4 and r"\begin{tabular}" in tex and r"\bottomrule" in tex


def test_one_data_set_has_ranks_but_no_friedman(tmp_path):
    paths = build(_rows(datasets=("only",)), {"suite": "one"}).write(tmp_path)
    page = paths["html"].read_text()
    assert "at least 2 data sets" in page and "critical-difference diagram" not in page
    assert not any(k.startswith("ranks_tex") for k in paths)
    solo = build(_rows(datasets=("only",), methods=("solo",)), {"suite": "solo"}).write(tmp_path / "solo")
    text = solo["html"].read_text()
    assert "nothing to compare head to head" in text and "Pairwise comparisons" not in text


def test_param_importances_are_guarded_and_seeded():
    assert param_importances(_study(1)) == {}
    flat = optuna.create_study()
    flat.optimize(lambda t: 1.0, n_trials=3)             # nothing tuned
    assert param_importances(flat) == {}
    study = _study(6)
    first = param_importances(study)
    assert set(first) == {"lr", "width"} and sum(first.values()) == pytest.approx(1.0)
    assert param_importances(study) == first
    assert set(param_importances(_study(6, ("maximize", "minimize")))) == {"x", "y"}


def test_latex_escape():
    assert escape("a_b & 50% $x$ #1 {y} ~^\\") == (r"a\_b \& 50\% \$x\$ \#1 \{y\} \textasciitilde{}"
                                                  r"\textasciicircum{}\textbackslash{}")


def _harness_storage(path: Path):
    """A journal storage holding two harness studies the way the runner stores them."""
    from harness.storage import make_storage

    storage = make_storage(str(path), path.parent)
    for i, method in enumerate(("alpha", EVIL)):
        study = optuna.create_study(study_name=f"syn/d1/{method}", storage=storage, direction="maximize")
        study.optimize(lambda t: t.suggest_float("lr", 0.01, 1.0), n_trials=3)
        study.set_user_attr("harness", {"suite": "syn", "dataset": "d1", "row": method, "method": "logreg",
                                        "plugin": "sklearn", "row_order": i, "objectives": ["accuracy"]})
        study.set_user_attr("best_trial", study.best_trial.number)
        for seed, row in enumerate(r for r in _rows(("d1",)) if r["method"] == method):
            row = {k: v for k, v in row.items() if k not in ("suite", "dataset", "method", "plugin", "plugin_method")}
            study.set_user_attr(f"result:{seed}", row)
    return storage


def test_report_command_writes_the_page_for_chosen_studies(tmp_path):
    _harness_storage(tmp_path / "optuna.journal")
    page = tmp_path / "site" / "page.html"
    done = run_cli("report", "--out", str(tmp_path), "--study", "syn/d1/alpha", "--html", str(page), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert page.is_file() and "report page" in done.stdout
    text = page.read_text()
    assert "alpha" in text and "alert(1)" not in text    # only the chosen study
    assert (tmp_path / "summary.tex").is_file() and (tmp_path / "plots" / "history_d1.png").is_file()
    both = run_cli("report", "--out", str(tmp_path), cwd=tmp_path)
    assert both.returncode == 0, both.stderr
    full = (tmp_path / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in full and EVIL not in full
    assert "logistic regression" in full.lower()          # the plugin's description, from the registry
    bad = run_cli("report", "--out", str(tmp_path), "--study", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and "no harness study named 'nope'" in bad.stderr


def test_one_run_collects_the_rows_and_builds_the_summary_once(tmp_path, monkeypatch):
    import harness.report.pipeline as pipeline
    import harness.runner as runner
    from harness.cli import main

    calls = {"collect_rows": 0, "aggregate": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(runner, "collect_rows", counted("collect_rows", runner.collect_rows))
    monkeypatch.setattr(pipeline, "aggregate", counted("aggregate", pipeline.aggregate))
    assert main(["--plugin", "fixture_plugins.centroid", "run", "centroid", "--trials", "1", "--seeds", "1",
                 "--no-progress", "--out", str(tmp_path)]) == 0
    assert calls == {"collect_rows": 1, "aggregate": 1}
    assert (tmp_path / "summary.csv").is_file() and (tmp_path / "index.html").is_file()


def test_terminal_table_keeps_method_names_whole():
    table = build(_rows(datasets=("only",)), {"suite": "t"}).terminal_table()
    columns = {c.header: c for c in table.columns}
    assert columns["method"].no_wrap and columns["data set"].no_wrap
    assert table.row_count == len(METHODS)


def test_reliability_titles_show_the_tables_ece(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    titles = []
    original = Axes.set_title
    monkeypatch.setattr(Axes, "set_title", lambda ax, text, *a, **k: (titles.append(text), original(ax, text, *a, **k))[1])
    report = build(_rows(datasets=("only",)), {"suite": "t"})
    report.write(tmp_path)
    ece = report.summary.set_index("method")["ece_mean"]
    for method in METHODS:
        assert f"{method}\nECE {ece[method]:.4f}" in titles  # the summary's mean over seeds, not a pooled ECE
