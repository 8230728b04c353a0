"""Optuna storages: every URL form, heartbeats, dead-trial reaping, the final-phase claim, budgets.

The only module of the harness that touches Optuna's private API (a study's storage, a trial's id,
the stale-trial query); everything above it goes through the functions here.

Storage URLs: ``None`` → ``optuna.journal`` in the output folder; ``*.journal`` or ``journal:PATH`` →
that journal file (safe for several local processes); ``sqlite:///…`` and ``postgresql://…`` → RDB
storage. A trial's worker is ``host:pid`` (:func:`worker_id`). Trial failures have a kind
(:mod:`harness.records`): ``method`` failures count against the budget and are never retried;
``infrastructure`` failures (the worker died or stopped sending heartbeats) are retried with the same
configuration up to ``max_retries`` times.

The final phase (seed re-runs) is run once per study: a process claims it by creating the study
``NAME#final<g>``. Creating a study of a given name succeeds in exactly one process (a unique key in
RDB storages, the ordered log of a journal file). The claimant holds a trial in that study with a
heartbeat; if it dies, the next process finds the trial reaped and claims generation ``g + 1``.
"""
from __future__ import annotations

import importlib.util
import os
import random
import socket
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.exceptions import DuplicatedStudyError
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from harness import records
from harness.errors import ConfigError
from harness.redaction import redact as redact_text

optuna.logging.set_verbosity(optuna.logging.WARNING)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
FINAL_LOCK = "{study}#final{generation}"


# -- URLs and passwords -----------------------------------------------------------------------

def redact(url: str) -> str:
    """A storage URL (or any text) with every password replaced by ``***``."""
    return redact_text(url)


def one_line(exc: BaseException, secret: str | None = None) -> str:
    """``exc`` as one line, with ``secret`` (a storage URL) and its password redacted."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if secret:
        text = text.replace(secret, redact(secret))
        password = _password(secret)
        if password:
            text = text.replace(password, "***")
    return redact_text(text)


def _password(url: str) -> str | None:
    if "://" not in url or "@" not in url:
        return None
    creds = url.split("://", 1)[1].rsplit("@", 1)[0]
    return creds.split(":", 1)[1] if ":" in creds and creds.split(":", 1)[1] else None


def is_shared(url: str | None) -> bool:
    """A storage other machines can reach (a database server, not a file)."""
    return bool(url) and "://" in url and not url.startswith("sqlite")


def make_storage(url: str | None, out_dir: Path, heartbeat: int | None = None) -> optuna.storages.BaseStorage:
    """The storage behind ``url`` (see the module docstring for the forms).

    ``heartbeat`` (seconds): RDB storages record a heartbeat per running trial at that interval, and
    a trial silent for three intervals counts as its worker's death (see :func:`reap_dead_trials`).
    """
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if url is None or url.startswith("journal:") or url.endswith(".journal"):
        path = Path(url[len("journal:"):] if url and url.startswith("journal:") else url or out_dir / "optuna.journal")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ConfigError(f"unrecognised storage {url!r}: use a *.journal path, sqlite:///FILE or postgresql://...")
    beat = {"heartbeat_interval": int(heartbeat), "grace_period": 3 * int(heartbeat)} if heartbeat else {}
    for attempt in range(4):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(_with_driver(url), engine_kwargs=engine_kwargs(url), **beat)
        except Exception as exc:
            # Workers starting at once race to create the schema (duplicate key / relation exists);
            # the loser finds it made on the next try.
            if attempt == 3 or not _is_schema_race(exc):
                raise ConfigError(f"cannot open storage {redact(url)}: {one_line(exc, url)}") from None
            time.sleep((0.25 * 2**attempt) * (1 + random.random()))
    raise AssertionError("unreachable")


def _with_driver(url: str) -> str:
    """``postgresql://`` with the PostgreSQL driver that is installed: SQLAlchemy 2.1 defaults to
    psycopg 3, while many installations (and our ``postgres`` extra) have psycopg2."""
    scheme, rest = url.split("://", 1)
    if scheme not in ("postgresql", "postgres"):
        return url
    driver = "psycopg" if importlib.util.find_spec("psycopg") else "psycopg2"
    return f"postgresql+{driver}://{rest}"


def _is_schema_race(exc: BaseException) -> bool:
    """A conflict between processes creating the schema at once, worth another try."""
    try:
        from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
    except ImportError:
        return False
    return isinstance(exc, (IntegrityError, ProgrammingError)) or (
        isinstance(exc, OperationalError) and "deadlock" in str(exc).lower())


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for an RDB storage URL."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    # Bounded pool, and a ping before each checkout so a dropped connection is replaced.
    return {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True, "pool_recycle": 600}


def lost_connection(exc: BaseException) -> bool:
    """An error of the storage's connection (raised inside a trial by its reports), not of the method."""
    if isinstance(exc, optuna.exceptions.StorageInternalError):
        return True
    try:
        from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
    except ImportError:
        return False
    return isinstance(exc, (DisconnectionError, InterfaceError, OperationalError))


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    return study._storage


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    return trial._trial_id


def poll_interval(study: optuna.Study, default: float) -> float:
    """How often to look again at a study others work on: its heartbeat interval, if any."""
    return float(getattr(study._storage, "heartbeat_interval", None) or default)


# -- workers and heartbeats -------------------------------------------------------------------

def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_seed(sampler_seed: int) -> int:
    """Each worker samples with its own seed: identical seeds would propose identical trials."""
    return (sampler_seed * 1_000_003 + os.getpid() * 7919 + time.time_ns()) % (2**31)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _local_worker(worker: str) -> int | None:
    """The pid of ``worker`` (``host:pid``) when it runs on this host, else None."""
    w_host, _, pid = worker.rpartition(":")
    return int(pid) if w_host == socket.gethostname() and pid.isdigit() else None


def _heartbeat_enabled(storage: optuna.storages.BaseStorage) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


@contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, trial: int | optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat now and then every interval until the block ends.

    A no-op for storages without heartbeats (journal files, SQLite unless configured). The first
    beat is written before the block starts, so a worker killed at once still leaves a heartbeat
    that goes stale (a trial that never beat is never considered stale by Optuna).
    """
    tid = trial if isinstance(trial, int) else trial._trial_id
    if not _heartbeat_enabled(storage):
        yield
        return
    interval = storage.get_heartbeat_interval()
    storage.record_heartbeat(tid)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                storage.record_heartbeat(tid)
            except Exception:  # a dropped connection: the pool's pre-ping reconnects on the next beat
                pass

    thread = threading.Thread(target=beat, name=f"heartbeat-{tid}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def ask(study: optuna.Study) -> optuna.Trial:
    """``study.ask()`` marked with this worker, without Optuna's warning that heartbeats want
    ``Study.optimize``: the ask-and-tell loops here run the heartbeat themselves (:func:`heartbeat`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        trial = study.ask()
    trial.set_user_attr(records.WORKER, worker_id())
    return trial


# -- dead trials and the budget ---------------------------------------------------------------

def reap_dead_trials(study: optuna.Study, max_retries: int = 2) -> int:
    """Fail RUNNING trials whose worker is gone and queue their configuration again.

    With a heartbeat (RDB storages), a worker is gone when its trial has sent no heartbeat for the
    grace period: it died, hung or lost its database connection, on whatever machine. Without one
    (journal files), when it ran on this host and its process no longer exists. Such failures are
    ``infrastructure`` failures; the same configuration is retried at most ``max_retries`` times,
    after which the failure counts against the budget like a method failure. Safe to run from
    several processes at once: only the one whose state change wins queues the retry.

    Optuna's ``fail_stale_trials`` fails a trial before its callback runs, when the trial no longer
    takes attributes; the reason and kind must be written first, so the stale ids are read here.
    """
    storage = study._storage
    beats = _heartbeat_enabled(storage)
    stale = set(storage._get_stale_trial_ids(study._study_id)) if beats else set()
    reaped = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get(records.WORKER, "")
        pid = _local_worker(worker)
        if t._trial_id in stale:
            reason = f"worker {worker or '?'} stopped sending heartbeats (died, hung or lost its connection)"
        elif not beats and pid is not None and pid != os.getpid() and not _pid_alive(pid):
            reason = f"worker {worker} died during the trial"
        else:
            continue
        retries = int(t.user_attrs.get(records.RETRIES, 0))
        exhausted = retries >= max_retries
        failure = records.TrialFailure(reason + (f"; gave up after {retries} retries" if exhausted else ""),
                                       records.INFRASTRUCTURE, retries_exhausted=exhausted)
        try:
            # Attributes first: a finished trial is read-only, and a second reaper racing us writes
            # the same values before its state change fails.
            for key, value in failure.attrs().items():
                storage.set_trial_user_attr(t._trial_id, key, value)
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process reaped it (or the trial just finished after all)
        if t.params and not exhausted:
            retry(study, t.params, t.number, retries)
        reaped += 1
    return reaped


def retry(study: optuna.Study, params: dict[str, Any], number: int, retries: int | None) -> None:
    """Queue ``params`` again as a retry of trial ``number`` (``retries``: how many ran before;
    ``None`` for a retry that does not count, such as after Ctrl-C)."""
    attrs: dict[str, Any] = {records.RETRY_OF: number}
    if retries is not None:
        attrs[records.RETRIES] = retries + 1
    study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)


def counts_against_budget(t: FrozenTrial) -> bool:
    """Finished trials count, except infrastructure failures that are still being retried."""
    if t.state not in FINISHED:
        return False
    if t.state == TrialState.FAIL and t.user_attrs.get(records.FAIL_KIND) == records.INFRASTRUCTURE:
        return bool(t.user_attrs.get(records.RETRIES_EXHAUSTED))
    return True


def budget_used(study: optuna.Study) -> int:
    """Trials that count against the budget (see :func:`counts_against_budget`)."""
    return sum(counts_against_budget(t) for t in study.get_trials(deepcopy=False, states=FINISHED))


def pending_elsewhere(study: optuna.Study, first_seen: dict[int, float]) -> int:
    """RUNNING trials of other live workers that will finish or be reaped: every one when the
    storage has heartbeats, else those of live processes on this host.

    A trial whose worker died before its first heartbeat is never stale to Optuna; ``first_seen``
    (trial id → when this process first saw it running) lets such a trial stop counting after
    twelve heartbeat intervals, so nobody waits for it forever.
    """
    interval = getattr(study._storage, "heartbeat_interval", None) if _heartbeat_enabled(study._storage) else None
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = _local_worker(t.user_attrs.get(records.WORKER, ""))
        if pid == os.getpid():
            continue
        if interval:
            n += time.monotonic() - first_seen.setdefault(t._trial_id, time.monotonic()) < 12 * interval
        elif pid is not None and _pid_alive(pid):
            n += 1
    return n


# -- the final-phase claim --------------------------------------------------------------------

@dataclass
class FinalClaim:
    """The right to run a study's final phase, held until ``release``."""

    lock: optuna.Study
    trial: optuna.Trial
    _beat: Any

    def release(self, ok: bool = True) -> None:
        self._beat.__exit__(None, None, None)
        try:
            self.lock.tell(self.trial, 1.0 if ok else None, state=TrialState.COMPLETE if ok else TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # presumed dead and reaped meanwhile: the seed rows are written per seed all the same


def try_claim_final(study: optuna.Study, empty_is_dead: bool = False) -> FinalClaim | str:
    """Claim ``study``'s final phase; return the claim, or the worker id of the live holder.

    ``empty_is_dead``: treat a lock whose creator has not yet registered itself as abandoned (only
    for a caller that saw it empty for a while: its creator died in between).
    """
    storage = study._storage
    for generation in range(10_000):
        name = FINAL_LOCK.format(study=study.study_name, generation=generation)
        try:
            storage.create_new_study([StudyDirection.MAXIMIZE], name)
        except DuplicatedStudyError:
            lock = optuna.load_study(study_name=name, storage=storage)
            reap_dead_trials(lock, max_retries=0)
            trials = lock.get_trials(deepcopy=False)
            if not trials and not empty_is_dead:
                return "(a worker that is starting)"
            if trials and trials[0].state == TrialState.RUNNING:
                return trials[0].user_attrs.get(records.WORKER, "?")
            continue  # released (COMPLETE) or its holder died (FAIL): the next generation is free
        lock = optuna.load_study(study_name=name, storage=storage)
        trial = ask(lock)
        beat = heartbeat(storage, trial._trial_id)
        beat.__enter__()
        return FinalClaim(lock, trial, beat)
    raise RuntimeError(f"no free final-phase lock for {study.study_name}")


def claim_final(study: optuna.Study, done: Callable[[], bool], wait: bool,
                say: Callable[[str], None] = lambda _: None) -> FinalClaim | None:
    """Claim the final phase, or return None when it is done (``done()``) or, with ``wait=False``,
    held by another live process. With ``wait=True``, wait for the holder to finish or die."""
    poll = poll_interval(study, 1.0)
    empty_since: float | None = None
    told = False
    while not done():
        got = try_claim_final(study, empty_is_dead=empty_since is not None and time.monotonic() - empty_since > 10 * poll)
        if isinstance(got, FinalClaim):
            return got
        if not wait:
            say(f"the seed re-runs of {study.study_name} are being run by {got}")
            return None
        empty_since = (empty_since or time.monotonic()) if got.startswith("(") else None
        if not told:
            say(f"waiting for {got}, which runs the seed re-runs of {study.study_name}")
            told = True
        time.sleep(poll)
    return None
