"""Stored results are reused only when the settings that shaped them match; never a silent mix."""
from __future__ import annotations

import pandas as pd
import pytest

from harness.cli import main

BASE = ["--threads", "1", "run", "logreg", "--dataset", "iris", "--no-progress", "--out", "o"]


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """``harness run logreg --dataset iris … EXTRA`` in-process: (exit code, stderr + stdout)."""
    monkeypatch.chdir(tmp_path)

    def _run(*extra: str, trials: int = 2, seeds: int = 2) -> tuple[int, str]:
        code = main([*BASE, "--trials", str(trials), "--seeds", str(seeds), *extra])
        out = capsys.readouterr()
        return code, out.err + out.out

    return _run


def _journal(tmp_path) -> bytes:
    return (tmp_path / "o" / "optuna.journal").read_bytes()


def test_a_second_identical_run_says_so_and_writes_nothing(run, tmp_path):
    assert run()[0] == 0
    before = _journal(tmp_path)
    tables = (tmp_path / "o" / "summary.md").read_text()
    code, text = run()
    assert code == 0
    assert ("all 2 trials and 2 seed re-runs of run are already stored in o/optuna.journal; showing the stored "
            "tables — use --fresh or --out to recompute") in text
    assert _journal(tmp_path) == before
    assert (tmp_path / "o" / "summary.md").read_text() == tables
    assert "| logreg" in text  # the stored table is shown


@pytest.mark.parametrize("extra, said", [
    (["--epochs", "3"], "run/iris/logreg was run with epochs=20; use --recompute logreg, --fresh, or --out for a new folder"),
    (["--param", "C=1.0"], "run/iris/logreg was run with params={}"),
    (["--data-seed", "1"], "run/iris/logreg was run with data_seed=0"),
    (["--sampler", "random"], "run/iris/logreg was run with sampler=tpe"),
])
def test_changed_settings_are_refused_in_one_line(run, tmp_path, extra, said):
    assert run()[0] == 0
    before = _journal(tmp_path)
    code, text = run(*extra)
    assert code == 2
    assert f"harness: error: {said}" in text
    assert _journal(tmp_path) == before


def test_fewer_trials_are_refused(run, tmp_path):
    assert run(trials=3)[0] == 0
    code, text = run(trials=2)
    assert code == 2 and "was run with trials=3" in text


def test_more_trials_extend_the_search_and_retrain_its_best(run, tmp_path):
    assert run()[0] == 0
    code, text = run(trials=4)
    assert code == 0
    assert "run/iris/logreg: 2 more trials; the best is re-trained over the seeds if it changes" in text
    per_seed = pd.read_csv(tmp_path / "o" / "per_seed.csv")
    summary = pd.read_csv(tmp_path / "o" / "summary.csv")
    assert summary.trials_complete.item() == 4
    assert list(per_seed.seed) == [0, 1]
    assert per_seed.best_trial.nunique() == 1  # every seed row re-trains the one best configuration
    import optuna

    from harness.records import best_trial
    from harness.storage import make_storage

    study = optuna.load_study(study_name="run/iris/logreg", storage=make_storage(None, tmp_path / "o"))
    assert per_seed.best_trial.iloc[0] == best_trial(study).number  # the best of all 4 trials, not of the first 2
    changed = "is the new best (was trial" in text
    assert changed == (best_trial(study).number >= 2)  # said exactly when the extra trials found it


def test_more_seeds_run_only_the_new_seeds(run, tmp_path):
    assert run()[0] == 0
    first = pd.read_csv(tmp_path / "o" / "per_seed.csv").set_index("seed")
    code, text = run(seeds=3)
    assert code == 0 and "run/iris/logreg: 1 more seed re-run" in text
    again = pd.read_csv(tmp_path / "o" / "per_seed.csv").set_index("seed")
    assert list(again.index) == [0, 1, 2]
    assert again.loc[[0, 1], "fit_s"].tolist() == first.loc[[0, 1], "fit_s"].tolist()  # kept, not re-run


def test_fewer_seeds_show_only_the_asked_seeds(run, tmp_path):
    assert run(seeds=3)[0] == 0
    code, text = run(seeds=2)
    assert code == 0 and "run/iris/logreg: showing 2 of the 3 stored seeds" in text
    assert list(pd.read_csv(tmp_path / "o" / "per_seed.csv").seed) == [0, 1]
    assert main(["report", "--out", "o"]) == 0  # the storage alone agrees
    assert list(pd.read_csv(tmp_path / "o" / "per_seed.csv").seed) == [0, 1]


def test_two_suites_in_one_folder_are_refused(run, tmp_path):
    assert run()[0] == 0
    before = _journal(tmp_path)
    code, text = run("--name", "other")
    assert code == 2
    assert "o holds the tables of suite 'run'; those of 'other' would overwrite them" in text
    assert _journal(tmp_path) == before


def test_fresh_moves_the_store_aside_and_recomputes(run, tmp_path):
    assert run()[0] == 0
    before = _journal(tmp_path)
    code, text = run("--epochs", "3", "--fresh")
    assert code == 0
    backups = list((tmp_path / "o").glob("optuna.journal.*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == before
    assert f"--fresh: moved the stored results aside to {backups[0].relative_to(tmp_path)}" in text
    assert run("--epochs", "3")[1].count("already stored") == 1


def test_fresh_with_bad_input_keeps_the_store(run, tmp_path):
    assert run()[0] == 0
    before = _journal(tmp_path)
    code, text = run("--fresh", "--param", "C=-1")
    assert code == 2 and "logreg: pinned C=-1 is not in its search space" in text
    assert _journal(tmp_path) == before and not list((tmp_path / "o").glob("*.bak"))


def test_recompute_drops_only_the_named_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ndatasets: [iris]\nmethods:\n  - {method: logreg, tune: false}\n"
                     "  - {method: knn, tune: false}\nseeds: 2\n")
    args = ["--threads", "1", "run", "--suite", str(suite), "--no-progress", "--out", "o"]
    assert main(args) == 0
    per_seed = pd.read_csv(tmp_path / "o" / "per_seed.csv")
    capsys.readouterr()

    # a changed row is refused as before, and recomputed alone when named
    changed = suite.read_text().replace("{method: knn, tune: false}", "{method: knn, tune: false, epochs: 3}")
    suite.write_text(changed)
    assert main(args) == 2 and "s/iris/knn was run with epochs=" in capsys.readouterr().err
    before = _journal(tmp_path)
    code = main([*args, "--recompute", "knn"])
    text = "".join(capsys.readouterr())
    assert code == 0, text
    assert "--recompute: iris · knn: stored results dropped" in text and "logreg" not in text.split("--recompute")[1][:80]
    backups = list((tmp_path / "o").glob("optuna.journal.*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == before
    after = pd.read_csv(tmp_path / "o" / "per_seed.csv")
    assert sorted(after["method"].unique()) == ["knn", "logreg"] and len(after) == len(per_seed)
    assert main(args) == 0 and "already stored" in "".join(capsys.readouterr())


def test_recompute_refuses_an_unknown_row_and_fresh_together(run, tmp_path):
    assert run()[0] == 0
    before = _journal(tmp_path)
    code, text = run("--recompute", "banana")
    assert code == 2 and "--recompute banana: the suite has no row of that name (rows: logreg)" in text
    code, text = run("--recompute", "logreg", "--fresh")
    assert code == 2 and "not both" in text
    assert _journal(tmp_path) == before and not list((tmp_path / "o").glob("*.bak"))


def test_search_settings_do_not_stale_an_untuned_row(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ndatasets: [iris]\nmethods:\n  - {method: logreg, tune: false}\n"
                     "  - {method: erm, trials: 2, epochs: 2}\nseeds: 1\n")
    args = ["--threads", "1", "run", "--suite", str(suite), "--no-progress", "--out", "o"]
    assert main([*args, "--pruner", "median"]) == 0
    capsys.readouterr()
    before = _journal(tmp_path)

    # the tuned row reported every epoch: another pruner could have cut its trials, so it is refused ...
    assert main([*args, "--pruner", "hyperband"]) == 2
    assert "s/iris/erm was run with pruner=median; use --recompute erm" in capsys.readouterr().err
    # ... while the untuned row ran no search and is reused as it is
    suite.write_text(suite.read_text().replace("  - {method: erm, trials: 2, epochs: 2}\n", ""))
    code = main([*args, "--pruner", "hyperband", "--sampler", "random"])
    assert code == 0 and "already stored" in "".join(capsys.readouterr())
    assert _journal(tmp_path) == before


def test_another_pruner_does_not_stale_a_search_it_could_not_act_on(run, tmp_path):
    # logreg trains in one go and reports no intermediate value, so no pruner ever acted on its trials
    assert run("--pruner", "median")[0] == 0
    before = _journal(tmp_path)
    code, text = run("--pruner", "hyperband")
    assert code == 0 and "already stored" in text
    assert _journal(tmp_path) == before
