"""``harness run --workers N``: local processes tune on the run's storage; seeds and tables once."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from harness import workers
from harness.errors import ConfigError
from harness.storage import make_storage
from harness.suite import from_mapping

from conftest import REPO, harness_env, run_cli

SUITE = "name: pool\ndatasets: [digits]\nmethods: [paced]\ntrials: 4\nseeds: 1\nepochs: 1\nsampler: random\npruner: none\n"


def _run_args(tmp_path, *extra: str) -> list[str]:
    suite = tmp_path / "pool.yaml"
    suite.write_text(SUITE)
    return ["--threads", "1", "--plugin", "fixture_plugins.paced", "run", "--suite", str(suite),
            "--out", str(tmp_path / "out"), "--no-progress", "--workers", "2", *extra]


def _trials(tmp_path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="pool/digits/paced", storage=make_storage(None, tmp_path / "out")).trials


def _counted(trials) -> list[optuna.trial.FrozenTrial]:
    """Trials that ran and count: not interrupted, not given back unrun."""
    return [t for t in trials if t.state == TrialState.COMPLETE]


def test_pool_settings_split_the_cores_and_check_the_devices():
    assert workers.pool_settings(2, 3, None).threads == 3  # given: each process gets it
    cores = len(os.sched_getaffinity(0))
    assert workers.pool_settings(2, None, None).threads == max(1, cores // 2)
    pool = workers.pool_settings(3, 1, "cuda:0, cuda:1")
    assert [pool.device(i) for i in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    with pytest.raises(ConfigError, match="--workers must be a positive integer"):
        workers.pool_settings(0, 1, None)
    with pytest.raises(ConfigError, match="--devices expects"):
        workers.pool_settings(2, 1, "cuda:0,")


def test_child_command_carries_threads_device_and_storage(tmp_path):
    pool = workers.pool_settings(2, 1, "cuda:0,cuda:1", plugins=["my_plugin"])
    cmd = workers.child_command(pool, 1, tmp_path / "s.json", tmp_path, "postgresql://u:pw@db/h")
    assert cmd[cmd.index("--threads") + 1] == "1"
    assert cmd[cmd.index("--plugin") + 1] == "my_plugin"
    assert cmd[cmd.index("--device") + 1] == "cuda:1"
    assert cmd[cmd.index("--storage") + 1] == "postgresql://u:pw@db/h"


def _fake_children(monkeypatch, scripts: list[str]) -> None:
    """Children that run ``scripts`` (Python source) instead of tuning, given the storage URL as argv[1]."""
    def command(settings, index, spec, out_dir, storage):
        return [sys.executable, "-c", scripts[index], str(storage)]

    monkeypatch.setattr(workers, "child_command", command)


def test_a_crashed_process_is_reported_with_its_reason_and_passwords_are_masked(tmp_path, monkeypatch):
    url = "postgresql://alice:s3cret-pw@db.example/harness"
    _fake_children(monkeypatch, ["import sys; print('connecting to', sys.argv[1])",
                                 "import sys; print('out of memory on', sys.argv[1]); sys.exit(3)"])
    lines: list[str] = []
    suite = from_mapping({"name": "fake", "datasets": ["digits"], "methods": ["erm"], "storage": url})
    result = workers.run_pool(suite, tmp_path, workers.pool_settings(2, 1, None), lines.append)
    (crashed,) = result.crashed
    assert crashed.label == "worker 2"
    assert crashed.reason() == "exit code 3: out of memory on postgresql://alice:***@db.example/harness"
    text = "\n".join(lines)
    assert "s3cret-pw" not in text
    assert "[worker 1] connecting to postgresql://alice:***@db.example/harness" in text
    assert "harness: warning: worker 2 crashed (exit code 3" in text


def test_the_same_error_in_every_process_is_that_one_error(tmp_path, monkeypatch):
    script = "print('harness: error: unknown data set \\'nope\\''); raise SystemExit(2)"
    _fake_children(monkeypatch, [script, script])
    suite = from_mapping({"name": "fake", "datasets": ["digits"], "methods": ["erm"]})
    with pytest.raises(ConfigError, match=r"^unknown data set 'nope'$"):
        workers.run_pool(suite, tmp_path, workers.pool_settings(2, 1, None), lambda _: None)


def test_ctrl_c_stops_every_process_and_the_same_command_resumes(tmp_path):
    counter = tmp_path / "fits.log"
    parent = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *_run_args(tmp_path)], cwd=tmp_path,
        env=harness_env(HARNESS_TEST_SLEEP="60", HARNESS_TEST_COUNTER=str(counter)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A background job inherits SIGINT ignored: give the parent a terminal's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (counter.exists() and len(counter.read_text().splitlines()) >= 2):
            time.sleep(0.2)  # until both processes are inside a trial
        assert counter.exists(), "no trial started within 120 s"
        parent.send_signal(signal.SIGINT)
        out, err = parent.communicate(timeout=90)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 130, err
    assert "interrupted" in err and "stopped 2 worker processes" in out
    for pid in map(int, re.findall(r"worker \d of 2 \(pid (\d+)\)", out)):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone, not orphaned
    trials = _trials(tmp_path)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert {t.user_attrs["fail_reason"] for t in trials if t.state == TrialState.FAIL} == {"interrupted (Ctrl-C)"}

    # The same command resumes; one of its processes dies in its first trial, the other finishes the run.
    kill_at = str(len(counter.read_text().splitlines()) + 1)
    resumed = run_cli(*_run_args(tmp_path), cwd=tmp_path, timeout=240, env=harness_env(
        HARNESS_TEST_SLEEP="0.5", HARNESS_TEST_COUNTER=str(counter), HARNESS_TEST_KILL_AT=kill_at))
    assert resumed.returncode == 2, resumed.stderr
    # The reason: the signal, and the last line the process printed before it.
    assert re.search(r"harness: warning: worker \d crashed \(killed by SIGKILL.*\); the others go on", resumed.stdout)
    assert re.search(r"harness: error: worker \d crashed \(killed by SIGKILL.*\); the run finished without it",
                     resumed.stderr)
    assert len(_counted(_trials(tmp_path))) == 4  # the budget, the dead process's trial run again
    assert resumed.stdout.count("tables: ") == 1  # written once, by the parent
    assert list(pd.read_csv(tmp_path / "out" / "per_seed.csv").seed) == [0]


def test_the_scale_out_benchmark_writes_its_table_and_provenance(tmp_path):
    out = tmp_path / "results"
    ran = subprocess.run([sys.executable, str(REPO / "benchmarks" / "workers.py"), "--workers", "1", "--trials", "2",
                          "--epochs", "1", "--repeats", "1", "--out", str(out)], cwd=tmp_path, env=harness_env(OMP_NUM_THREADS="1"),
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    frame = pd.read_csv(out / "workers.csv")
    assert list(frame.workers) == [1] and list(frame.trials) == [2] and list(frame.ratio) == [1.0]
    assert (frame.trials_per_min > 0).all()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["load_average_at_start"] >= 0 and prov["command_per_count"].startswith("harness --threads 1 run erm")
    assert "--workers 1 ÷ --workers 1: 1.00×" in (out / "workers.md").read_text()


def test_bad_pool_options_are_one_line_errors(tmp_path, capsys):
    from harness.cli import main

    out = str(tmp_path / "out")
    assert main(["run", "erm", "--workers", "0", "--out", out]) == 2
    assert main(["run", "erm", "--devices", "cuda:0,cuda:1", "--device", "cpu", "--out", out]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "harness: error: --workers must be a positive integer, got 0",
        "harness: error: give --device (every process) or --devices (one each, in turn), not both"]
    assert not (tmp_path / "out").exists()
