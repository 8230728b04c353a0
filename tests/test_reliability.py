"""Faults survived, against real processes: a PostgreSQL server stopped and started mid-run, a journal
cut short on disk, SIGKILL and SIGINT at the start of a trial, a recycled pid, a killed lock holder,
two runs on one folder at once."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from harness.cli import main
from harness.phases import PhaseSettings, TuneSettings, tune
from harness.plugins import load_plugins
from harness.records import collect_rows
from harness.runner import run_suite
from harness.errors import StorageUnavailableError
from harness.storage import (
    FlockLock, RetryingStorage, ask, budget_used, make_storage, process_start, reap_dead_trials, running_trials,
)
from harness.suite import from_mapping

from conftest import harness_env
from pg import started_cluster
from test_scaleout import _open

CLI = [sys.executable, "-m", "harness.cli"]


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _default_sigint():
    # A background job inherits SIGINT ignored; give the child a terminal's default (see test_scaleout).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- a database outage ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server():
    yield from started_cluster()


def _with_password(url: str) -> str:
    # The throwaway server trusts every connection: a password in the URL is accepted and must never show.
    return url.replace("harness@", "harness:s3cret-pw@")


class _Flaky:
    """A storage whose connection is lost for the first ``failures`` calls."""

    def __init__(self, failures: int):
        self.failures = failures

    def get_all_studies(self):
        from sqlalchemy.exc import OperationalError

        if self.failures:
            self.failures -= 1
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        return ["studies"]

    def get_study_id_from_name(self, name):
        raise KeyError(name)


def test_a_lost_connection_is_retried_and_given_up_in_one_line_past_the_retry_time():
    url = "postgresql://alice:s3cret-pw@db.example/h"
    said: list[str] = []
    storage = RetryingStorage(_Flaky(2), None, url, retry_s=30, say=said.append)
    assert storage.get_all_studies() == ["studies"]
    assert len(said) == 2 and "unreachable" in said[0] and "is back after" in said[1]
    with pytest.raises(KeyError):  # not a connection error: raised at once
        storage.get_study_id_from_name("x")

    storage = RetryingStorage(_Flaky(10**9), None, url, retry_s=0.5, say=said.append)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError) as first:
        storage.get_all_studies()
    assert 0.5 <= time.monotonic() - started < 5
    message = str(first.value)
    assert message.startswith("storage postgresql://alice:***@db.example/h unreachable for 0.5 s (")
    assert "\n" not in message and "s3cret" not in message + "".join(said)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError):  # a process on its way out does not wait again
        storage.get_all_studies()
    assert time.monotonic() - started < 0.1


@pytest.mark.postgres
def test_a_run_and_a_worker_ride_out_a_server_restart(server, tmp_path):
    url = _with_password(server.database())
    suite = tmp_path / "s.yaml"
    suite.write_text("name: out\ndatasets: [digits]\nmethods: [paced]\ntrials: 10\nseeds: 2\nepochs: 1\n"
                     "sampler: random\npruner: none\nheartbeat: 1\nstorage_retry: 60\n")
    fits = tmp_path / "fits.log"
    env = harness_env(HARNESS_TEST_SLEEP="0.6", HARNESS_TEST_COUNTER=str(fits))
    run = subprocess.Popen([*CLI, "--plugin", "fixture_plugins.paced", "run", "--suite", str(suite), "--storage", url,
                            "--out", str(tmp_path / "out"), "--no-progress"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = subprocess.Popen([*CLI, "worker", "--study", "out/digits/paced", "--storage", url, "--out",
                               str(tmp_path / "w")], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: len(_lines(fits)) >= 3, 120, "three fits")
        server.halt()  # pg_ctl stop -m fast: every session ends, mid-trial
        time.sleep(6)  # longer than the grace period of the heartbeats (3 s)
        server.resume()
        _, w_err = worker.communicate(timeout=240)
        _, r_err = run.communicate(timeout=240)
    finally:
        for p in (run, worker):
            if p.poll() is None:
                p.kill()
        if not server.started:
            server.resume()
    assert run.returncode == 0, r_err
    assert worker.returncode == 0, w_err
    for err in (r_err, w_err):
        assert "Traceback" not in err and "s3cret" not in err
    assert "unreachable" in r_err + w_err and "is back after" in r_err + w_err

    study = optuna.load_study(study_name="out/digits/paced", storage=make_storage(url, tmp_path))
    assert budget_used(study) >= 10
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING}
    assert all(t.user_attrs["fail_kind"] == "infrastructure" for t in study.trials if t.state == TrialState.FAIL)
    per_seed = pd.read_csv(tmp_path / "out" / "per_seed.csv")
    assert sorted(per_seed.seed) == [0, 1] and (per_seed.status == "ok").all()


@pytest.mark.postgres
def test_a_storage_away_past_the_retry_time_is_one_line(server, tmp_path):
    url = _with_password(server.database())
    fits = tmp_path / "fits.log"
    proc = subprocess.Popen([*CLI, "--plugin", "fixture_plugins.paced", "run", "paced", "--trials", "20",
                             "--seeds", "1", "--storage", url, "--storage-retry", "3", "--heartbeat", "1",
                             "--out", str(tmp_path / "o"), "--no-progress"], cwd=tmp_path,
                            env=harness_env(HARNESS_TEST_SLEEP="0.5", HARNESS_TEST_COUNTER=str(fits)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: len(_lines(fits)) >= 1, 120, "the first fit")
        server.halt()
        started = time.monotonic()
        _, err = proc.communicate(timeout=120)
        waited = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        if not server.started:
            server.resume()
    assert proc.returncode == 2, err
    assert waited < 30  # the retry time, a trial and the way out; not the retry time again per handler
    errors = [line for line in err.splitlines() if line.startswith("harness: error:")]
    assert len(errors) == 1 and "Traceback" not in err and "s3cret" not in err
    assert errors[0].startswith("harness: error: storage postgresql://harness:***@127.0.0.1:")
    assert "unreachable for 3 s" in errors[0]


# -- a torn journal -------------------------------------------------------------------------------

def _run(out: Path) -> int:
    return main(["--plugin", "fixture_plugins.centroid", "run", "centroid", "--trials", "2", "--seeds", "2",
                 "--sampler", "random", "--out", str(out), "--no-progress"])


@pytest.mark.parametrize("cut", ["final byte", "mid-record"])
def test_a_torn_last_record_is_set_aside_and_the_run_resumes(tmp_path, capsys, cut):
    out = tmp_path / "o"
    assert _run(out) == 0
    journal = out / "optuna.journal"
    data = journal.read_bytes()
    last = data[data.rindex(b"\n", 0, len(data) - 1) + 1:]
    keep = len(data) - 1 if cut == "final byte" else len(data) - len(last) // 2
    journal.write_bytes(data[:keep])  # what a crash mid-write, a full disk or a power loss leaves
    capsys.readouterr()

    assert _run(out) == 0
    err = capsys.readouterr().err
    (side,) = out.glob("optuna.journal.torn-*")
    assert side.read_bytes() == data[len(data) - len(last):keep]
    notes = [line for line in err.splitlines() if "torn record" in line]
    assert len(notes) == 1 and side.name in notes[0] and "Traceback" not in err
    assert journal.read_bytes().startswith(data[:len(data) - len(last)])
    assert all(json.loads(line) for line in journal.read_bytes().splitlines())  # whole records only
    assert sorted(pd.read_csv(out / "per_seed.csv").seed) == [0, 1]
    assert main(["report", "--out", str(out)]) == 0


def test_damage_before_the_last_record_is_one_line_naming_it(tmp_path, capsys):
    out = tmp_path / "o"
    assert _run(out) == 0
    journal = out / "optuna.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"op_code": 4, "worker_id": "x", "tri\n'
    journal.write_bytes(b"".join(lines))
    capsys.readouterr()
    for args in (["run", "centroid", "--trials", "2", "--seeds", "2", "--out", str(out), "--no-progress"],
                 ["report", "--out", str(out)]):
        assert main(["--plugin", "fixture_plugins.centroid", *args]) == 2
        err = capsys.readouterr().err
        assert err.strip() == f"harness: error: {journal}: line 3 is damaged (not a whole journal record); restore " \
                              "the file from a backup, or start afresh with another --out"
    assert not list(out.glob("optuna.journal.torn-*"))


# -- liveness -------------------------------------------------------------------------------------

def _running_as(study, pid: int, start: str, temperature: float = 2.0):
    """A RUNNING trial recorded as process ``pid``'s (started at ``start``), with its configuration."""
    trial = ask(study)
    study._storage.set_trial_param(trial._trial_id, "temperature", temperature,
                                   optuna.distributions.FloatDistribution(0.1, 10.0, log=True))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{pid}")
    trial.set_user_attr("worker_start", start)
    return trial


def test_a_recycled_pid_does_not_pass_for_the_dead_worker(tmp_path):
    study = _open(None, tmp_path)
    other = subprocess.Popen(["sleep", "60"])
    try:
        true_start = process_start(other.pid)
        assert true_start
        boot = true_start.split(":")[0]
        recycled = _running_as(study, other.pid, f"{boot}:1")  # the pid lives, but it is another process now
        mine_recycled = _running_as(study, os.getpid(), f"{boot}:2")  # even our own pid
        live = _running_as(study, other.pid, true_start)
        assert reap_dead_trials(study) == 2
        states = {t.number: t.state for t in study.trials}
        assert states[recycled.number] == states[mine_recycled.number] == TrialState.FAIL
        assert states[live.number] == TrialState.RUNNING
        failed = study.trials[recycled.number]
        assert failed.user_attrs["fail_kind"] == "infrastructure" and "died" in failed.user_attrs["fail_reason"]
        # Their configuration is queued again, whole.
        waiting = [t for t in study.trials if t.state == TrialState.WAITING]
        assert sorted(t.user_attrs["retry_of"] for t in waiting) == [recycled.number, mine_recycled.number]
        assert all(t.system_attrs["fixed_params"] == {"temperature": 2.0} for t in waiting)
    finally:
        other.kill()
        other.wait()


def test_a_run_waiting_on_a_live_worker_says_so_and_goes_on_when_it_dies(tmp_path, digits):
    study = _open(None, tmp_path)
    other = subprocess.Popen(["sleep", "2"])
    _running_as(study, other.pid, process_start(other.pid), temperature=3.0)
    said: list[str] = []
    method = load_plugins(modules=["fixture_plugins.centroid"]).method("centroid")
    try:
        tune(study, method, digits.without_test(),
             TuneSettings(trials=1, phase=PhaseSettings(epochs=1, device=torch.device("cpu"))), say=said.append)
    finally:
        other.kill()
        other.wait()
    worker = f"{socket.gethostname()}:{other.pid}"
    assert len(said) == 1 and f"waiting for 1 trial of worker {worker}" in said[0]
    (complete,) = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete.params == {"temperature": 3.0} and complete.user_attrs["retry_of"] == 0


# -- kills and Ctrl-C at the start of a trial -------------------------------------------------------

def _start_run(tmp_path: Path, out: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "--plugin", "fixture_plugins.centroid", "run", "centroid", "--trials", "3",
                           "--seeds", "1", "--sampler", "random", "--out", str(out), "--no-progress"],
                          cwd=tmp_path, env=harness_env(**env), capture_output=True, text=True, timeout=300,
                          preexec_fn=_default_sigint)


@pytest.mark.parametrize("sig, code", [("KILL", -9), ("INT", 130)])
def test_a_signal_at_the_start_of_the_default_trial_keeps_its_configuration(tmp_path, sig, code):
    out = tmp_path / "o"
    first = _start_run(tmp_path, out, HARNESS_TEST_SIGNAL_IN_SPACE=sig)
    assert first.returncode == code, first.stderr
    storage = make_storage(None, out)
    (hit,) = optuna.load_study(study_name="run/digits/centroid", storage=storage).trials[:1]
    assert hit.params == {}  # nothing of the trial was recorded but the configuration it was queued with

    again = _start_run(tmp_path, out)
    assert again.returncode == 0, again.stderr
    trials = optuna.load_study(study_name="run/digits/centroid", storage=storage).trials
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["fail_kind"] == "infrastructure"
    (retried,) = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert retried.state == TrialState.COMPLETE and retried.params == {"temperature": 1.0}  # the default
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    row = pd.read_csv(out / "per_seed.csv").iloc[0]
    assert (row.trials_complete, row.trials_failed, row.trials_infra) == (3, 0, 1)


# -- the budget reached while a killed worker's trial runs; the journal lock ------------------------

def test_a_dead_workers_trial_never_stays_running_once_the_budget_is_reached(tmp_path, digits):
    suite = from_mapping({"name": "b", "datasets": ["digits"], "methods": ["centroid"], "trials": 2, "seeds": 1,
                          "epochs": 1, "device": "cpu", "sampler": "random"})
    registry = load_plugins(modules=["fixture_plugins.centroid"])
    out = tmp_path / "o"
    run_suite(suite, registry, out, progress=False)
    study = optuna.load_study(study_name="b/digits/centroid", storage=make_storage(None, out))
    victim = subprocess.Popen(["sleep", "60"])
    start = process_start(victim.pid)
    _running_as(study, victim.pid, start)  # a worker that took a third trial as the budget filled
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    tune(study, registry.method("centroid"), digits.without_test(),
         TuneSettings(trials=2, phase=PhaseSettings(epochs=1, device=torch.device("cpu"))))
    assert not running_trials(study)
    (dead,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert "not retried: the budget was already reached" in dead.user_attrs["fail_reason"]
    assert not [t for t in study.trials if t.state == TrialState.WAITING]
    assert budget_used(study) == 2
    (row,) = collect_rows(make_storage(None, out), "b")
    assert (row["trials_complete"], row["trials_failed"], row["trials_infra"]) == (2, 0, 1)


def test_a_killed_lock_holder_costs_the_next_process_nothing(tmp_path):
    journal = tmp_path / "optuna.journal"
    journal.touch()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from harness.storage import FlockLock; FlockLock(Path(sys.argv[1])).acquire(); "
                               "print('held', flush=True); time.sleep(60)", str(journal)],
                              stdout=subprocess.PIPE, text=True, env=harness_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        import fcntl

        fd = os.open(journal, os.O_RDONLY)
        with pytest.raises(BlockingIOError):  # held while its holder lives
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        started = time.monotonic()
        lock = FlockLock(journal)
        lock.acquire()
        lock.release()
        assert time.monotonic() - started < 1.0
    finally:
        if holder.poll() is None:
            holder.kill()
    assert not list(tmp_path.glob("*.lock"))


# -- two runs on one folder at once -----------------------------------------------------------------

def test_two_runs_on_one_folder_at_once_propose_different_configurations(tmp_path):
    out = tmp_path / "o"
    cmd = [*CLI, "--plugin", "fixture_plugins.paced", "run", "paced", "--trials", "8", "--seeds", "1",
           "--sampler", "random", "--pruner", "none", "--out", str(out), "--no-progress"]
    env = harness_env(HARNESS_TEST_SLEEP="0.4")
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    trials = optuna.load_study(study_name="run/digits/paced", storage=make_storage(None, out)).trials
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both sampled
    temperatures = [t.params["temperature"] for t in trials]
    assert len(set(temperatures)) == len(temperatures)
    assert temperatures.count(1.0) == 1  # the default configuration queued once


def test_a_single_run_with_a_fixed_seed_stays_reproducible(tmp_path):
    registry = load_plugins(modules=["fixture_plugins.centroid"])
    suite = from_mapping({"name": "r", "datasets": ["digits"], "methods": ["centroid"], "trials": 4, "seeds": 1,
                          "epochs": 1, "device": "cpu", "sampler": "random", "sampler_seed": 7})
    params = []
    for folder in ("a", "b"):
        run_suite(suite, registry, tmp_path / folder, progress=False)
        study = optuna.load_study(study_name="r/digits/centroid", storage=make_storage(None, tmp_path / folder))
        params.append([t.params for t in study.trials])
    assert params[0] == params[1] and len({p["temperature"] for p in params[0]}) == 4
