"""Several processes on one study (journal file storage): no lock errors, one study, one claimant of
the seed phase, dead workers' trials retried, Ctrl-C and time limits recorded, passwords hidden."""
from __future__ import annotations

import io
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import torch
from optuna.trial import TrialState
from rich.console import Console

from harness.cli import main
from harness.plugins import load_plugins
from harness.runner import open_study, run_suite
from harness.phases import PhaseSettings, TuneSettings, tune
from harness.storage import FinalClaim, budget_used, make_storage, reap_dead_trials, try_claim_final
from harness.suite import from_mapping, suite_from_spec, suite_spec
from harness.worker import run_worker

from conftest import harness_env

SUITE = {"name": "race", "datasets": ["digits"], "methods": ["centroid"], "trials": 3}


def _open(url: str | None, folder: Path | None):
    suite = from_mapping(SUITE)
    return open_study(suite, suite.datasets[0], suite.rows[0], make_storage(url, folder, heartbeat=1), 0)


def _create_or_load(url, folder, barrier, out):
    barrier.wait()
    out.put(_open(url, folder)._study_id)


def _claim(url, folder, barrier, all_tried, out):
    study = _open(url, folder)
    barrier.wait()
    got = try_claim_final(study)
    out.put("claim" if isinstance(got, FinalClaim) else "held")
    all_tried.wait()  # hold the claim until every process has tried
    if isinstance(got, FinalClaim):
        got.release()


def race(target, n: int, *args) -> list:
    """Start ``n`` forked processes that run ``target(*args, barrier, [barrier2,] queue)`` at the same
    instant; their results. Forked, so that they start in milliseconds rather than importing torch."""
    ctx = mp.get_context("fork")
    barrier, second, out = ctx.Barrier(n), ctx.Barrier(n), ctx.Queue()
    extra = (second,) if target is _claim else ()
    procs = [ctx.Process(target=target, args=(*args, barrier, *extra, out)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def test_eight_processes_create_or_load_one_study(tmp_path):
    ids = race(_create_or_load, 8, None, tmp_path)
    assert len(set(ids)) == 1
    assert len(optuna.get_all_study_summaries(make_storage(None, tmp_path))) == 1


def test_exactly_one_process_claims_the_seed_phase(tmp_path):
    assert sorted(race(_claim, 8, None, tmp_path)) == ["claim"] + ["held"] * 7


def test_a_dead_claimant_is_superseded_and_a_released_claim_frees_the_phase(tmp_path):
    study = _open(None, tmp_path)
    first = try_claim_final(study)
    assert isinstance(first, FinalClaim)
    assert try_claim_final(study) == f"{socket.gethostname()}:{os.getpid()}"  # held by a live process
    first.release()
    second = try_claim_final(study)
    assert isinstance(second, FinalClaim) and second.lock.study_name.endswith("#final1")
    # A claimant that died: its pid no longer exists.
    second.trial.set_user_attr("worker", f"{socket.gethostname()}:999999999")
    third = try_claim_final(study)
    assert isinstance(third, FinalClaim) and third.lock.study_name.endswith("#final2")
    third.release()


def test_two_workers_on_the_journal_file_at_once(tmp_path):
    """The default storage shared by two processes: both do trials, none fails, no lock errors."""
    suite = tmp_path / "s.yaml"
    suite.write_text("name: two\ndatasets: [digits]\nmethods: [paced]\ntrials: 8\nseeds: 2\nepochs: 1\n"
                     "sampler: random\npruner: none\n")
    out = tmp_path / "out"
    env = harness_env(HARNESS_TEST_SLEEP="0.8")
    run = subprocess.Popen([sys.executable, "-m", "harness.cli", "--plugin", "fixture_plugins.paced", "run", "--suite",
                            str(suite), "--out", str(out), "--no-progress"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = subprocess.Popen([sys.executable, "-m", "harness.cli", "worker", "--study", "two/digits/paced",
                               "--storage", str(out / "optuna.journal"), "--out", str(tmp_path / "w")], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        w_out, w_err = worker.communicate(timeout=240)
        r_out, r_err = run.communicate(timeout=240)
    finally:
        for p in (run, worker):
            if p.poll() is None:
                p.kill()
    assert worker.returncode == 0 and run.returncode == 0, (w_err, r_err)
    for text in (w_out, w_err, r_out, r_err):
        assert "locked" not in text and "Traceback" not in text
    study = optuna.load_study(study_name="two/digits/paced", storage=make_storage(None, out))
    run_trials = [t for t in study.trials if t.user_attrs.get("fail_kind") != "surplus"]  # given back unrun
    assert {t.state for t in run_trials} == {TrialState.COMPLETE}
    assert len(run_trials) == 8
    assert len({t.user_attrs["worker"] for t in run_trials}) == 2  # both processes did trials
    per_seed = pd.read_csv(out / "per_seed.csv")
    assert sorted(per_seed.seed) == [0, 1]


def test_trial_of_a_dead_worker_is_retried_at_most_max_retries(tmp_path):
    study = _open(None, tmp_path)
    for _ in range(3):
        trial = study.ask()  # the first samples; the next ones are the queued retries
        trial.suggest_float("temperature", 0.1, 10, log=True)
        trial.set_user_attr("worker", f"{socket.gethostname()}:999999999")
        assert reap_dead_trials(study, max_retries=2) == 1
    fails = [t for t in study.trials if t.state == TrialState.FAIL]
    assert [t.user_attrs.get("retries", 0) for t in fails] == [0, 1, 2]
    assert len({t.params["temperature"] for t in fails}) == 1  # the same configuration each time
    assert fails[-1].user_attrs["retries_exhausted"] and "gave up after 2 retries" in fails[-1].user_attrs["fail_reason"]
    assert not [t for t in study.trials if t.state == TrialState.WAITING]  # no fourth try queued
    assert budget_used(study) == 1  # only the exhausted one counts against the budget


def test_a_trial_past_its_time_limit_fails_with_the_reason(tmp_path, monkeypatch, digits):
    monkeypatch.setenv("HARNESS_TEST_SLEEP", "3")
    reg = load_plugins(modules=["fixture_plugins.paced"])
    study = _open(None, tmp_path)
    started = time.monotonic()
    tune(study, reg.method("paced"), digits.without_test(),
         TuneSettings(trials=1, phase=PhaseSettings(epochs=1, device=torch.device("cpu")), trial_timeout=0.5))
    assert time.monotonic() - started < 2.5
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_kind"] == "method"
    assert trial.user_attrs["fail_reason"] == "exceeded the per-trial time limit of 0.5 s"


def test_interrupting_a_worker_leaves_its_trial_failed_and_queued(tmp_path):
    out = tmp_path / "out"
    suite = from_mapping({"name": "int", "datasets": ["digits"], "methods": ["paced"], "trials": 1, "seeds": 1,
                          "epochs": 1, "device": "cpu"})
    run_suite(suite, load_plugins(modules=["fixture_plugins.paced"]), out, progress=False)
    # More trials wanted now: a worker starts one, and is interrupted in the middle of it.
    storage = make_storage(None, out)
    study = optuna.load_study(study_name="int/digits/paced", storage=storage)
    meta = dict(study.user_attrs["harness"])
    meta["spec"] = suite_spec(suite.replace(trials=3))
    study.set_user_attr("harness", meta)
    counter = tmp_path / "fits.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "worker", "--study", "int/digits/paced", "--storage",
         str(out / "optuna.journal")], cwd=tmp_path, env=harness_env(HARNESS_TEST_SLEEP="60", HARNESS_TEST_COUNTER=str(counter)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A background job (`cmd &` in a script, as CI may run us) inherits SIGINT ignored, and
        # Python then never turns Ctrl-C into KeyboardInterrupt: give the worker a terminal's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not counter.exists() and time.monotonic() < deadline:  # until the trial is running
            time.sleep(0.2)
        worker.send_signal(signal.SIGINT)
        _, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 130, err
    assert "interrupted" in err
    trials = optuna.load_study(study_name="int/digits/paced", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs["fail_reason"] == "interrupted (Ctrl-C)"
    assert trials[1].user_attrs["fail_kind"] == "infrastructure"
    assert trials[2].user_attrs["retry_of"] == 1

    # A worker given one trial takes the queued retry, and leaves the seed phase to whoever ends the search.
    console = Console(file=io.StringIO(), width=200)
    assert run_worker(str(out / "optuna.journal"), "int/digits/paced", [], console, n_trials=1) == 0
    assert "2 of 3 trials done" in console.file.getvalue()
    trials = optuna.load_study(study_name="int/digits/paced", storage=storage).trials
    assert trials[2].state == TrialState.COMPLETE and trials[2].params == trials[1].params


def test_passwords_never_reach_the_output(tmp_path, capsys):
    url = "postgresql://alice:s3cret-pw@127.0.0.1:1/harness"
    for args in (["run", "centroid", "--storage", url, "--out", str(tmp_path / "o"), "--no-progress"],
                 ["worker", "--study", "x/y/z", "--storage", url, "--wait", "0"]):
        assert main(["--plugin", "fixture_plugins.centroid", *args]) == 2
        captured = capsys.readouterr()
        assert "s3cret" not in captured.out + captured.err
        assert len(captured.err.strip().splitlines()) == 1
        assert captured.err.startswith("harness: error: cannot open storage postgresql://alice:***@127.0.0.1:1/harness: ")


def test_the_suite_spec_round_trips_without_the_storage_url():
    suite = from_mapping({**SUITE, "storage": "postgresql://a:pw@h/db", "cash": ["centroid", "logreg"],
                          "objectives": "accuracy,ece", "trial_timeout": 5})
    spec = suite_spec(suite)
    assert spec["storage"] is None and "pw" not in repr(spec)
    again = suite_from_spec(spec)
    assert again.replace(storage=suite.storage) == suite
    assert again.pruner == "none"  # several objectives and no pruner named: pruning is off
