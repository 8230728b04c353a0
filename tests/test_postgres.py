"""Many workers on one study in a real PostgreSQL server: a worker killed with SIGKILL mid-trial loses
nothing, its trial is retried, the seed phase runs once; live slow trials survive; dropped
connections are replaced; eight processes create one study. The server is a throwaway cluster."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from harness.plugins import load_plugins
from harness.runner import run_suite
from harness.phases import PhaseSettings, TuneSettings, tune
from harness.storage import ask, heartbeat, make_storage, reap_dead_trials
from harness.suite import from_mapping, load_suite

from conftest import harness_env
from pg import started_cluster
from test_scaleout import _claim, _create_or_load, _open, race

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def postgres():
    yield from started_cluster()


SUITE = ("name: pg\ndatasets: [digits]\nmethods: [paced]\ntrials: 8\nseeds: 2\nepochs: 1\nsampler: random\n"
         "pruner: none\nheartbeat: 1\n")


def _lines(path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_a_worker_killed_mid_trial_loses_nothing(postgres, tmp_path):
    url = postgres.database()
    suite = tmp_path / "pg.yaml"
    suite.write_text(SUITE)
    a_log, b_log = tmp_path / "a.log", tmp_path / "b.log"
    cmd = [sys.executable, "-m", "harness.cli"]
    run = subprocess.Popen([*cmd, "--plugin", "fixture_plugins.paced", "run", "--suite", str(suite), "--storage", url,
                            "--out", str(tmp_path / "out"), "--no-progress"], cwd=tmp_path,
                           env=harness_env(HARNESS_TEST_SLEEP="0.8", HARNESS_TEST_COUNTER=str(a_log)),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The worker is given nothing but the study and the storage; it dies during its second fit.
    worker = subprocess.Popen([*cmd, "worker", "--study", "pg/digits/paced", "--storage", url, "--out",
                               str(tmp_path / "w")], cwd=tmp_path,
                              env=harness_env(HARNESS_TEST_SLEEP="0.8", HARNESS_TEST_COUNTER=str(b_log),
                                              HARNESS_TEST_KILL_AT="2"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, w_err = worker.communicate(timeout=240)
        _, r_err = run.communicate(timeout=240)
    finally:
        for p in (run, worker):
            if p.poll() is None:
                p.kill()
    assert worker.returncode == -9, w_err
    assert run.returncode == 0, r_err
    assert "password" not in r_err

    trials = optuna.load_study(study_name="pg/digits/paced", storage=make_storage(url, tmp_path)).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 8  # the study reached its count (a trial asked at once by two is given back)
    (killed,) = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs["fail_kind"] != "surplus"]
    assert killed.user_attrs["worker"].endswith(f":{worker.pid}")
    assert killed.user_attrs["fail_kind"] == "infrastructure"
    # On this host the process itself is looked at: found dead at once, before its heartbeats go stale.
    assert "died during the trial" in killed.user_attrs["fail_reason"]
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    # No finished trial lost: every fit that finished is a COMPLETE trial; the worker's first one too.
    tune_fits = [f for f in _lines(a_log) + _lines(b_log) if f[1] == "tune"]
    assert len(tune_fits) == len(complete) + 1
    assert any(t.user_attrs["worker"].endswith(f":{worker.pid}") for t in complete)
    # The seed phase ran once, in the surviving process.
    assert sorted(f[2] for f in _lines(a_log) if f[1] == "final") == ["0", "1"]
    assert not [f for f in _lines(b_log) if f[1] == "final"]

    # The final table has the shape of a single-process run of the same suite.
    run_suite(load_suite(suite), load_plugins(modules=["fixture_plugins.paced"]), tmp_path / "one", progress=False)
    for table in ("summary.csv", "per_seed.csv"):
        shared, alone = pd.read_csv(tmp_path / "out" / table), pd.read_csv(tmp_path / "one" / table)
        assert list(shared.columns) == list(alone.columns) and shared.shape == alone.shape
    assert (pd.read_csv(tmp_path / "out" / "per_seed.csv").accuracy > 0.8).all()


def test_eight_processes_create_or_load_one_study(postgres):
    url = postgres.database()  # empty: the eight also race to create the schema
    assert len(set(race(_create_or_load, 8, url, None))) == 1
    assert len(optuna.get_all_study_summaries(make_storage(url, None))) == 1


def test_exactly_one_process_claims_the_seed_phase(postgres):
    assert sorted(race(_claim, 8, postgres.database(), None)) == ["claim"] + ["held"] * 7


def test_a_live_slow_trial_is_not_failed_but_a_silent_one_is(postgres):
    study = _open(postgres.database(), None)  # heartbeat every second, grace three
    slow, silent = ask(study), ask(study)
    for trial, worker in ((slow, "elsewhere:4242"), (silent, "elsewhere:4243")):  # workers on another machine:
        trial.set_user_attr("worker", worker)  # judged by their heartbeats alone
    study._storage.record_heartbeat(silent._trial_id)  # beat once, then nothing: a dead worker
    with heartbeat(study._storage, slow._trial_id):
        time.sleep(4.5)  # longer than the interval and the grace period
        assert reap_dead_trials(study) == 1
    assert study._storage.get_trial(slow._trial_id).state == TrialState.RUNNING
    assert study._storage.get_trial(silent._trial_id).state == TrialState.FAIL
    study.tell(slow, 1.0)


def test_a_worker_survives_dropped_connections(postgres, digits):
    url = postgres.database()
    database = url.rsplit("/", 1)[1]
    study = _open(url, None)
    method = load_plugins(modules=["fixture_plugins.centroid"]).method("centroid")
    drops = []

    def drop(trial) -> None:  # the server ends every connection of this database after each trial
        postgres.drop_connections(database)
        drops.append(trial.number)

    tune(study, method, digits.without_test(), TuneSettings(trials=4, phase=PhaseSettings(epochs=1, device=torch.device("cpu"))), on_trial=drop)
    states = [t.state for t in study.trials]
    assert len(drops) == 4 and states == [TrialState.COMPLETE] * 4
    # The pool stays bounded (pool_size 2 + max_overflow 2).
    assert int(postgres.sql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'")) <= 4


def test_a_cash_study_stores_what_a_worker_needs_but_no_password(postgres, tmp_path):
    url = postgres.database()
    suite = from_mapping({"name": "c", "datasets": ["digits"], "methods": [], "cash": ["centroid", "logreg"],
                          "trials": 3, "seeds": 1, "epochs": 1, "device": "cpu", "storage": url})
    run_suite(suite, load_plugins(modules=["fixture_plugins.centroid"]), tmp_path / "o", progress=False)
    meta = optuna.load_study(study_name="c/digits/cash", storage=make_storage(url, None)).user_attrs["harness"]
    assert meta["cash"] == ["centroid", "logreg"] and meta["spec"]["storage"] is None
    assert meta["plugin_modules"] == ["fixture_plugins.centroid"]
    assert json.loads(pd.read_csv(tmp_path / "o" / "per_seed.csv").config[0])["method"] in ("centroid", "logreg")
    assert (tmp_path / "o" / "cash_digits.csv").exists()
