"""The whole protocol through the CLI: tables, resume after SIGKILL, incremental suites, rebuild."""
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from harness.storage import make_storage

from conftest import harness_env, run_cli


def _suite(path: Path, methods, trials=4, seeds=3, name="t") -> Path:
    path.write_text(f"name: {name}\ndatasets: [digits]\nmethods: {methods}\ntrials: {trials}\nseeds: {seeds}\n"
                    "epochs: 2\nsampler: tpe\npruner: none\n")
    return path


def _fits(counter: Path) -> list[str]:
    return counter.read_text().splitlines() if counter.exists() else []


def _run(tmp_path, suite, counter, kill_at=0):
    env = harness_env(HARNESS_TEST_COUNTER=str(counter), HARNESS_TEST_KILL_AT=str(kill_at))
    return run_cli("--plugin", "fixture_plugins.centroid", "run", "--suite", str(suite), "--out", str(tmp_path / "out"),
                   "--no-progress", env=env, cwd=tmp_path)


def test_killed_run_resumes_without_redoing_finished_work(tmp_path):
    suite = _suite(tmp_path / "s.yaml", "[centroid]")
    counter = tmp_path / "fits.log"
    # Killed during tuning, on the third trial's fit.
    first = _run(tmp_path, suite, counter, kill_at=3)
    assert first.returncode == -9
    assert not (tmp_path / "out" / "summary.csv").exists()  # nothing half-written
    # Killed again during the seed re-runs (fit 3 of the rerun = 1 retried trial + 2 more tuning fits... counted
    # over the whole log: 3 killed-run fits, then 1 retry + 1 new trial, then seeds; die on the second seed).
    second = _run(tmp_path, suite, counter, kill_at=7)
    assert second.returncode == -9
    log = _fits(counter)
    assert [line.split()[1] for line in log] == ["tune"] * 5 + ["final"] * 2
    third = _run(tmp_path, suite, counter)
    assert third.returncode == 0, third.stderr
    log = _fits(counter)
    # Finished trials were not redone: 4 tuning fits that finished + 1 retry of the killed trial.
    # Seeds: seed 0 finished before the second kill and was not redone; seed 1 (killed) and seed 2 ran.
    assert [line.split()[1] for line in log].count("tune") == 5
    assert [line.split()[2] for line in log if line.split()[1] == "final"] == ["0", "1", "1", "2"]
    study = optuna.load_study(study_name="t/digits/centroid", storage=make_storage(None, tmp_path / "out"))
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 4
    assert [t.user_attrs.get("fail_kind") for t in study.trials if t.state == TrialState.FAIL] == ["infrastructure"]
    per_seed = pd.read_csv(tmp_path / "out" / "per_seed.csv")
    assert sorted(per_seed.seed) == [0, 1, 2]  # no duplicate rows
    assert (per_seed.accuracy > 0.85).all()


def test_adding_a_method_computes_only_the_new_one(tmp_path):
    counter = tmp_path / "fits.log"
    assert _run(tmp_path, _suite(tmp_path / "a.yaml", "[centroid]", trials=2, seeds=2), counter).returncode == 0
    before = _fits(counter)
    assert _run(tmp_path, _suite(tmp_path / "b.yaml", "[centroid, centroid_b]", trials=2, seeds=2), counter).returncode == 0
    new = _fits(counter)[len(before):]
    assert new and all(line.startswith("centroid_b ") for line in new)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert list(summary.method) == ["centroid", "centroid_b"]
    # The row computed by the first run keeps that run's provenance, and the table says so.
    md = (tmp_path / "out" / "summary.md").read_text()
    earlier = [l for l in md.splitlines() if "rows computed by an earlier run" in l]
    assert len(earlier) == 1 and "(digits · centroid)" in earlier[0] and "a.yaml" in earlier[0]
    assert "b.yaml" in md.split("rows computed by an earlier run")[0]


def test_report_rebuilds_the_tables_from_the_storage_alone(tmp_path):
    counter = tmp_path / "fits.log"
    assert _run(tmp_path, _suite(tmp_path / "a.yaml", "[centroid, logreg]", trials=2, seeds=2), counter).returncode == 0
    out = tmp_path / "out"
    original = pd.read_csv(out / "summary.csv")
    for f in ("summary.csv", "summary.md", "per_seed.csv", "summary.html", "provenance.json"):
        (out / f).unlink()
    rebuilt = run_cli("report", "--out", str(out), cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), original)
    md = (out / "summary.md").read_text()
    assert "How this table was made" in md and "git commit" in md and "torch" in md


def test_same_seed_same_numbers_on_cpu(tmp_path):
    runs = []
    for i in range(2):
        out = tmp_path / f"o{i}"
        proc = run_cli("run", "erm", "--trials", "1", "--seeds", "1", "--epochs", "2", "--out", str(out),
                       "--no-progress", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        runs.append(pd.read_csv(out / "per_seed.csv")[["accuracy", "ece", "nll", "brier", "config"]])
    pd.testing.assert_frame_equal(runs[0], runs[1])


def test_table_carries_every_column(tmp_path):
    counter = tmp_path / "fits.log"
    assert _run(tmp_path, _suite(tmp_path / "a.yaml", "[centroid]", trials=1, seeds=2), counter).returncode == 0
    per_seed = pd.read_csv(tmp_path / "out" / "per_seed.csv")
    for col in ("accuracy", "ece", "nll", "brier", "train_samples_per_s", "infer_samples_per_s", "params_total",
                "params_trainable", "peak_mem_mb", "wall_s", "seed", "config", "n_train", "n_val", "n_test"):
        assert col in per_seed.columns, col
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    for col in ("accuracy_mean", "accuracy_std", "accuracy_ci_low", "accuracy_ci_high", "ece_mean", "nll_mean"):
        assert col in summary.columns
    assert summary.accuracy_ci_low.item() <= summary.accuracy_mean.item() <= summary.accuracy_ci_high.item()
