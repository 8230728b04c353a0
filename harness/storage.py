"""Optuna storages: every URL form, heartbeats, dead-trial reaping, the final-phase claim, budgets.

The only module of the harness that touches Optuna's private API (a study's storage, a trial's id,
the stale-trial query); everything above it goes through the functions here.

Storage URLs: ``None`` → ``optuna.journal`` in the output folder; ``*.journal`` or ``journal:PATH`` →
that journal file (safe for several local processes: appends hold an ``flock`` the kernel releases
when its holder dies; a torn last record is set aside on opening); ``sqlite:///…`` and
``postgresql://…`` → RDB storage, whose calls ride out an outage of the database
(:class:`RetryingStorage`). A trial's worker is ``host:pid`` (:func:`worker_id`) with the process's
start time beside it, so that a recycled pid never passes for the dead worker. Trial failures have a
kind (:mod:`harness.records`): ``method`` failures count against the budget and are never retried;
``infrastructure`` failures (the worker died or stopped sending heartbeats) are retried with the same
full configuration up to ``max_retries`` times.

The final phase (seed re-runs) is run once per study: a process claims it by creating the study
``NAME#final<g>``. Creating a study of a given name succeeds in exactly one process (a unique key in
RDB storages, the ordered log of a journal file). The claimant holds a trial in that study with a
heartbeat; if it dies, the next process finds the trial reaped and claims generation ``g + 1``.
"""
from __future__ import annotations

import abc
import datetime
import hashlib
import importlib.util
import json
import os
import random
import socket
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal._file import BaseJournalFileLock
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from harness import records
from harness.errors import ConfigError, StorageUnavailableError
from harness.redaction import redact as redact_text

optuna.logging.set_verbosity(optuna.logging.WARNING)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
FINAL_LOCK = "{study}#final{generation}"
STREAMS = "{study}#streams"
DEFAULT_STORAGE_RETRY = 120.0  # seconds a process rides out an unreachable database before giving up


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


def make_storage(url: str | None, out_dir: Path, heartbeat: int | None = None,
                 retry_s: float = DEFAULT_STORAGE_RETRY,
                 say: Callable[[str], None] | None = None) -> optuna.storages.BaseStorage:
    """The storage behind ``url`` (see the module docstring for the forms).

    ``heartbeat`` (seconds): RDB storages record a heartbeat per running trial at that interval, and
    a trial silent for three intervals counts as its worker's death (see :func:`reap_dead_trials`).
    ``retry_s``: how long a call to an RDB storage retries while the database is unreachable.
    ``say`` gets the one-line notices (a torn journal set aside, an outage and its end); stderr by default.
    """
    from optuna.storages import RDBStorage
    from optuna.storages._cached_storage import _CachedStorage

    say = say or _warn
    if url is None or url.startswith("journal:") or url.endswith(".journal"):
        path = Path(url[len("journal:"):] if url and url.startswith("journal:") else url or out_dir / "optuna.journal")
        path.parent.mkdir(parents=True, exist_ok=True)
        return open_journal(path, say)
    if "://" not in url:
        raise ConfigError(f"unrecognised storage {url!r}: use a *.journal path, sqlite:///FILE or postgresql://...")
    beat = {"heartbeat_interval": int(heartbeat), "grace_period": 3 * int(heartbeat)} if heartbeat else {}
    for attempt in range(4):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                rdb = RDBStorage(_with_driver(url), engine_kwargs=engine_kwargs(url), **beat)
            return RetryingStorage(_CachedStorage(rdb), rdb, url, retry_s, say)
        except Exception as exc:
            # Workers starting at once race to create the schema (duplicate key / relation exists);
            # the loser finds it made on the next try.
            if attempt == 3 or not _is_schema_race(exc):
                raise ConfigError(f"cannot open storage {redact(url)}: {one_line(exc, url)}") from None
            time.sleep((0.25 * 2**attempt) * (1 + random.random()))
    raise AssertionError("unreachable")


def _warn(message: str) -> None:
    print(f"harness: {message}", file=sys.stderr, flush=True)


# -- an RDB storage that rides out an outage ---------------------------------------------------

class RetryingStorage(BaseStorage, BaseHeartbeat):
    """Every call of a storage, retried with back-off while its database is unreachable.

    A call that fails on the connection (the server restarts, the network drops) is tried again
    for up to ``retry_s`` seconds; the pool's pre-ping replaces dead connections, so the process
    goes on where it was once the server is back. Past that time the call raises
    :class:`~harness.errors.StorageUnavailableError` (one line, password redacted), and so does every
    later call at once: a process on its way out must not wait the time again in its error handlers.
    Writes are safe to repeat: a repeated state change of a trial that the first attempt made is
    taken as done, and a trial a lost answer left behind is reaped (see :func:`reap_dead_trials`).
    """

    def __init__(self, inner: BaseStorage, backend: Any, url: str, retry_s: float,
                 say: Callable[[str], None] = _warn):
        self.inner, self.backend, self.url, self.retry_s, self._say = inner, backend, url, float(retry_s), say
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self.recovered_at: float | None = None  # time.monotonic() when the last outage ended
        self._gone: str | None = None

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, retried while the storage is unreachable."""
        if self._gone:
            raise StorageUnavailableError(self._gone)
        deadline, delay, failed = None, 0.2, False
        while True:
            try:
                result = fn(*args, **kwargs)
            except UpdateFinishedTrialError:
                if failed and fn.__name__ == "set_trial_state_values":
                    # The attempt that lost its answer made the change: the trial is in that state now.
                    state = kwargs["state"] if "state" in kwargs else args[1]
                    if self.inner.get_trial(args[0]).state == state:
                        self._back()
                        return True
                raise
            except Exception as exc:
                if not lost_connection(exc):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.retry_s
                    self._lost(exc)
                if now >= deadline:
                    self._gone = (f"storage {redact(self.url)} unreachable for {self.retry_s:g} s "
                                  f"({one_line(_root(exc), self.url)}); run the same command again when it is back "
                                  "(--storage-retry sets how long to wait)")
                    raise StorageUnavailableError(self._gone) from None
                time.sleep(min(delay * (0.5 + random.random()), max(deadline - now, 0.01)))
                delay = min(2 * delay, 5.0)
                failed = True
                continue
            if failed:
                self._back()
            return result

    def _lost(self, exc: BaseException) -> None:
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
                self._say(f"storage {redact(self.url)} unreachable ({one_line(_root(exc), self.url)}); "
                          f"retrying for up to {self.retry_s:g} s")

    def _back(self) -> None:
        with self._lock:
            if self._down_since is not None:
                self._say(f"storage {redact(self.url)} is back after {time.monotonic() - self._down_since:.1f} s")
                self._down_since = None
            self.recovered_at = time.monotonic()

    def __getattr__(self, name: str) -> Any:  # url, heartbeat_interval, grace_period, ...: the backend's
        if name in ("inner", "backend"):
            raise AttributeError(name)
        return getattr(self.backend, name)

    # Heartbeats are best effort (a missed beat is the next one's job): no retry, no waiting.
    def record_heartbeat(self, trial_id: int) -> None:
        if not self._gone:
            self.inner.record_heartbeat(trial_id)

    def get_heartbeat_interval(self) -> int | None:
        return self.inner.get_heartbeat_interval()

    def get_heartbeat_stale_trial_callback(self):
        return self.inner.get_heartbeat_stale_trial_callback()

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return self.call(self.inner._get_stale_trial_ids, study_id)

    def remove_session(self) -> None:
        self.inner.remove_session()


def _retried(name: str) -> Callable[..., Any]:
    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return self.call(getattr(self.inner, name), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


for _name in ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
              "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
              "get_study_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
              "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id", "get_trial_param",
              "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
              "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials", "get_best_trial",
              "get_trial_params", "get_trial_user_attrs", "get_trial_system_attrs", "check_trial_is_updatable"):
    setattr(RetryingStorage, _name, _retried(_name))
abc.update_abstractmethods(RetryingStorage)


def _root(exc: BaseException) -> BaseException:
    """The driver's error under SQLAlchemy's and Optuna's wrappers (it says what went wrong)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


# -- journal files: a lock the kernel releases, torn records set aside ---------------------------

class FlockLock(BaseJournalFileLock):
    """An exclusive ``flock`` on the journal file itself, for its appends.

    The kernel drops it when the holding process dies, so a SIGKILLed process never leaves a lock
    for the next one to wait out (Optuna's own file locks are broken only after a grace period).
    """

    def __init__(self, path: Path):
        self.path = str(path)
        self._mutex = threading.Lock()  # flock is per open file; threads of one process queue here
        self._fd: int | None = None

    def acquire(self) -> bool:
        import fcntl

        self._mutex.acquire()
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self._mutex.release()
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        import fcntl

        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        finally:
            self._mutex.release()


def open_journal(path: Path, say: Callable[[str], None] = _warn) -> optuna.storages.BaseStorage:
    """The journal storage in ``path``: a torn last record is set aside first (:func:`recover_torn_tail`),
    damage before it is a one-line :class:`ConfigError` naming the line."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path.touch(exist_ok=True)
    try:
        import fcntl  # noqa: F401
    except ImportError:  # no flock (Windows): Optuna's own lock file
        lock = None
    else:
        lock = FlockLock(path)
    if lock is not None:
        lock.acquire()
    try:
        note = recover_torn_tail(path)
    finally:
        if lock is not None:
            lock.release()
    if note:
        say(note)
    try:
        return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    except ValueError:  # a line that is not a JSON record (Optuna's JSONDecodeError or "Invalid log format")
        line = first_bad_line(path)
        raise ConfigError(f"{path}: line {line} is damaged (not a whole journal record); restore the file from a "
                          "backup, or start afresh with another --out") from None


def recover_torn_tail(path: Path) -> str | None:
    """Cut a torn last record (no final newline, or not JSON: a write cut short by a crash, a full
    disk, a power loss) off the journal ``path`` into ``<path>.torn-<UTC time>``; the notice, or None.
    The caller holds the journal's lock, so no live writer is mid-record."""
    size = path.stat().st_size
    if size == 0:
        return None
    with open(path, "rb") as fh:
        start, tail = size, b""
        while start > 0:  # read back until the newline before the last line
            step = min(1 << 16, start)
            start -= step
            fh.seek(start)
            tail = fh.read(step) + tail
            cut = tail.rfind(b"\n", 0, len(tail) - 1)
            if cut >= 0:
                start, tail = start + cut + 1, tail[cut + 1:]
                break
    if tail.endswith(b"\n") and _is_record(tail):
        return None
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    side = path.with_name(f"{path.name}.torn-{stamp}")
    side.write_bytes(tail)
    os.truncate(path, start)
    why = "no final newline" if not tail.endswith(b"\n") else "not a JSON record"
    return (f"warning: {path} ended in a torn record ({len(tail)} bytes, {why}); moved it to {side.name} and "
            "resumed from the last whole record")


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def first_bad_line(path: Path) -> int:
    """The 1-based number of the first line of journal ``path`` that is not a whole record (0: none)."""
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.endswith(b"\n") or not _is_record(line):
                return number
    return 0


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
    """An error of the storage's connection (the database went away), not of the call or the method:
    SQLAlchemy's connection errors, also wrapped in Optuna's ``StorageInternalError``."""
    try:
        from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, PendingRollbackError
    except ImportError:
        return False
    kinds = (DisconnectionError, InterfaceError, OperationalError, PendingRollbackError)
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; bounded all the same
        if seen is None:
            return False
        if isinstance(seen, kinds):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    return study._storage


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    return trial._trial_id


def poll_interval(study: optuna.Study, default: float) -> float:
    """How often to look again at a study others work on: its heartbeat interval, if any."""
    return float(_interval(study._storage) or default)


def _interval(storage: optuna.storages.BaseStorage) -> float | None:
    return float(storage.get_heartbeat_interval()) if _heartbeat_enabled(storage) else None


# -- workers and their liveness ---------------------------------------------------------------

def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_seed(sampler_seed: int) -> int:
    """A seed of this process's own (pid and clock): identical seeds would propose identical trials."""
    return (sampler_seed * 1_000_003 + os.getpid() * 7919 + time.time_ns()) % (2**31)


def stream_seed(sampler_seed: int, stream: int) -> int:
    """The sampler seed of the ``stream``-th process on a study: stream 0 samples with the suite's
    seed itself, so a single run stays reproducible; every later one with a seed of its own."""
    if stream == 0:
        return sampler_seed
    digest = hashlib.sha256(f"{sampler_seed}/{stream}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31)


def stream_index(storage: optuna.storages.BaseStorage, study_name: str) -> int:
    """How many processes joined study ``study_name`` before this one: 0 for the first.

    Each process takes a trial of the study ``NAME#streams``; trial numbers are handed out once
    each, atomically, by every storage, so two processes starting at the same instant never get
    the same number (and so never the same sampler seed, see :func:`stream_seed`).
    """
    name = STREAMS.format(study=study_name)
    try:
        storage.create_new_study([StudyDirection.MAXIMIZE], name)
    except DuplicatedStudyError:
        pass
    streams = optuna.load_study(study_name=name, storage=storage)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        trial = streams.ask()
    streams.tell(trial, float(trial.number))
    return trial.number


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as a token no later process with the same pid can share (the
    kernel's boot id and the start time in clock ticks; psutil's creation time where there is no
    /proc); None when the process does not exist, has exited (a zombie) or its start cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        # The command name (field 2) may hold spaces and parentheses: count fields after its ')'.
        fields = stat[stat.rindex(b")") + 2:].split()
        if fields[0] in (b"Z", b"X"):  # exited, waiting for its parent to collect it
            return None
        return f"{_boot_id()}:{int(fields[19])}"  # field 22, starttime
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"t{proc.create_time():.2f}"
    except Exception:  # psutil missing, or no such process
        return None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


_own_start: tuple[int, str | None] | None = None


def own_start() -> str | None:
    """This process's start time, read once per process (a forked child is a new process)."""
    global _own_start
    if _own_start is None or _own_start[0] != os.getpid():
        _own_start = (os.getpid(), process_start(os.getpid()))
    return _own_start[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_alive(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` exists and is the one that started at ``start`` (its token from
    :func:`process_start`; ``None`` when the record has none: then the pid alone decides)."""
    if not _pid_alive(pid):
        return False
    now = process_start(pid)
    if now is None:  # an exited process not yet collected, or nothing to compare with
        return not _exited(pid)
    return not start or now == start


def _exited(pid: int) -> bool:
    """Whether ``pid`` is a zombie (only where /proc tells)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] in (b"Z", b"X")


def _local_pid(worker: str, start: str | None) -> int | None:
    """The pid of ``worker`` (``host:pid``) when it ran on this host (same name and, when the
    record has it, the same kernel boot), else None."""
    w_host, _, pid = worker.rpartition(":")
    if w_host != socket.gethostname() or not pid.isdigit():
        return None
    if start and ":" in start and start.split(":", 1)[0] != _boot_id():
        return None  # the same host name, another machine or another boot: the pid says nothing here
    return int(pid)


def _heartbeat_enabled(storage: optuna.storages.BaseStorage) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


@contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, trial: int | optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat now and then every interval until the block ends.

    A no-op for storages without heartbeats (journal files, SQLite unless configured). The first
    beat is written before the block starts, so a worker killed at once still leaves a heartbeat
    that goes stale. Beats are best effort: one lost to an outage is made up by the next.
    """
    tid = trial if isinstance(trial, int) else trial._trial_id
    if not _heartbeat_enabled(storage):
        yield
        return
    interval = storage.get_heartbeat_interval()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                storage.record_heartbeat(tid)
            except Exception:  # a dropped connection: the pool's pre-ping reconnects on the next beat
                pass

    try:
        storage.record_heartbeat(tid)
    except Exception:
        pass
    thread = threading.Thread(target=beat, name=f"heartbeat-{tid}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def ask(study: optuna.Study) -> optuna.Trial:
    """``study.ask()`` marked with this worker and its start time, without Optuna's warning that
    heartbeats want ``Study.optimize``: the ask-and-tell loops here run the heartbeat themselves
    (:func:`heartbeat`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        trial = study.ask()
    trial.set_user_attr(records.WORKER, worker_id())
    if own_start():
        trial.set_user_attr(records.WORKER_START, own_start())
    return trial


# -- running trials: whose, and whether their worker lives --------------------------------------

LIVE, UNSURE, DEAD, OWN, FOREIGN = "live", "unsure", "dead", "own", "foreign"
UNREGISTERED_AFTER_S = 60.0  # a trial this old whose worker never wrote its name was made by a process that died


@dataclass(frozen=True)
class Running:
    """A RUNNING trial and what is known of its worker: ``LIVE`` (its process exists, or it beat
    lately), ``UNSURE`` (no beat for a while, not yet past the grace period; or a worker still
    registering), ``DEAD`` (with ``reason``), ``OWN`` (this process's) or ``FOREIGN`` (a journal file
    shared with another host: nothing to go by)."""

    trial: FrozenTrial
    verdict: str
    reason: str = ""

    @property
    def worker(self) -> str:
        return self.trial.user_attrs.get(records.WORKER, "?")


def running_trials(study: optuna.Study) -> list[Running]:
    """Every RUNNING trial of ``study`` with the verdict on its worker.

    A worker on this host is judged by its process (pid and start time: a recycled pid does not
    pass). Elsewhere, with heartbeats (RDB storages), by its last beat: silent past the grace period
    (three intervals) is dead, and so is a trial that never beat in twelve intervals. Right after
    this process's own storage came back from an outage, heartbeats are not trusted for one grace
    period: every worker missed beats during it.
    """
    storage = study._storage
    interval = _interval(storage)
    beats: dict[int, float] = {}
    trust = True
    if interval:
        grace = 3 * interval
        beats = _seconds_since_beat(storage, study._study_id)
        recovered = getattr(storage, "recovered_at", None)
        trust = recovered is None or time.monotonic() - recovered > grace + interval
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        out.append(Running(t, *_verdict(t, interval, beats, trust)))
    return out


def _verdict(t: FrozenTrial, interval: float | None, beats: dict[int, float], trust: bool) -> tuple[str, str]:
    worker = t.user_attrs.get(records.WORKER)
    age = (datetime.datetime.now() - t.datetime_start).total_seconds() if t.datetime_start else 0.0
    if not worker:
        limit = max(UNREGISTERED_AFTER_S, 12 * (interval or 0))
        return (DEAD, "its worker died before registering") if age > limit else (UNSURE, "")
    start = t.user_attrs.get(records.WORKER_START)
    pid = _local_pid(worker, start)
    if pid is not None:
        if pid == os.getpid() and (not start or start == own_start()):
            return OWN, ""
        return (LIVE, "") if process_alive(pid, start) else (DEAD, f"worker {worker} died during the trial")
    if not interval:
        return FOREIGN, ""
    silent = beats.get(t._trial_id)
    if silent is None:
        if trust and age > 12 * interval:
            return DEAD, f"worker {worker} never sent a heartbeat"
        return UNSURE, ""
    if silent > 3 * interval:
        return (DEAD, f"worker {worker} stopped sending heartbeats (died, hung or lost its connection)") if trust \
            else (UNSURE, "")
    return (LIVE, "") if silent <= 1.5 * interval + 1 else (UNSURE, "")


def _seconds_since_beat(storage: optuna.storages.BaseStorage, study_id: int) -> dict[int, float]:
    """Trial id → seconds since its last heartbeat, by the database's clock, for the RUNNING trials
    of a study that have beaten at all."""
    backend = getattr(storage, "backend", None) or getattr(storage, "_backend", None) or storage
    if not hasattr(backend, "scoped_session"):
        return {}

    def query() -> dict[int, float]:
        import sqlalchemy
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(backend.scoped_session, True) as session:
            now = session.execute(sqlalchemy.func.now()).scalar().replace(tzinfo=None)
            rows = (session.query(models.TrialHeartbeatModel.trial_id, models.TrialHeartbeatModel.heartbeat)
                    .join(models.TrialModel, models.TrialModel.trial_id == models.TrialHeartbeatModel.trial_id)
                    .filter(models.TrialModel.study_id == study_id, models.TrialModel.state == TrialState.RUNNING)
                    .all())
        return {tid: (now - beat.replace(tzinfo=None)).total_seconds() for tid, beat in rows}

    return storage.call(query) if isinstance(storage, RetryingStorage) else query()


def running_elsewhere(study: optuna.Study) -> dict[str, int]:
    """Worker → how many RUNNING trials it has that will finish or be reaped (live or not yet
    decided), other than this process's own."""
    out: dict[str, int] = {}
    for r in running_trials(study):
        if r.verdict in (LIVE, UNSURE):
            out[r.worker] = out.get(r.worker, 0) + 1
    return out


def pending_elsewhere(study: optuna.Study, first_seen: dict[int, float] | None = None) -> int:
    """How many RUNNING trials of other workers will finish or be reaped (see :func:`running_elsewhere`)."""
    return sum(running_elsewhere(study).values())


# -- dead trials and the budget ---------------------------------------------------------------

def reap_dead_trials(study: optuna.Study, max_retries: int = 2, requeue: bool = True) -> int:
    """Fail RUNNING trials whose worker is gone (:func:`running_trials`) and queue their full
    configuration again (:func:`full_params`).

    Such failures are ``infrastructure`` failures; the same configuration is retried at most
    ``max_retries`` times, after which the failure counts against the budget like a method failure.
    ``requeue=False`` (the budget is already reached) fails them without a retry and without
    counting them. Safe to run from several processes at once: only the one whose state change wins
    queues the retry.
    """
    storage = study._storage
    reaped = 0
    for r in running_trials(study):
        if r.verdict != DEAD:
            continue
        t = r.trial
        retries = int(t.user_attrs.get(records.RETRIES, 0))
        exhausted = requeue and retries >= max_retries
        reason = r.reason + (f"; gave up after {retries} retries" if exhausted else "")
        if not requeue:
            reason += "; not retried: the budget was already reached"
        failure = records.TrialFailure(reason, records.INFRASTRUCTURE, retries_exhausted=exhausted)
        try:
            # Attributes first: a finished trial is read-only, and a second reaper racing us writes
            # the same values before its state change fails.
            for key, value in failure.attrs().items():
                storage.set_trial_user_attr(t._trial_id, key, value)
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # another process reaped it (or the trial just finished after all)
        if requeue and not exhausted:
            retry(study, t, retries)
        reaped += 1
    return reaped


def settle(study: optuna.Study, requeue: bool = False) -> None:
    """Once the budget is reached: fail the trials of dead workers, waiting (at most one grace period
    and an interval) for those whose worker fell silent only lately, so that none stays RUNNING."""
    interval = _interval(study._storage)
    deadline = time.monotonic() + (4 * interval if interval else 0.0)
    while True:
        reap_dead_trials(study, requeue=requeue)
        if time.monotonic() >= deadline or not any(r.verdict == UNSURE for r in running_trials(study)):
            return
        time.sleep(interval or 0.5)


def full_params(t: FrozenTrial) -> dict[str, Any]:
    """Everything known of a trial's configuration: the parameters it was queued with (a default
    configuration, a retry) under those it sampled before it ended."""
    fixed = t.system_attrs.get("fixed_params") or {}
    return {**fixed, **t.params}


def retry(study: optuna.Study, t: FrozenTrial, retries: int | None) -> bool:
    """Queue trial ``t``'s full configuration again (``retries``: how many ran before; ``None`` for a
    retry that does not count, such as after Ctrl-C). Nothing to queue, and False, when the trial
    ended before any of its configuration was decided: a new trial samples afresh."""
    params = full_params(t)
    if not params:
        return False
    attrs: dict[str, Any] = {records.RETRY_OF: t.number}
    if retries is not None:
        attrs[records.RETRIES] = retries + 1
    study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)
    return True


def frozen(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> FrozenTrial:
    """The stored state of ``trial``."""
    return study._storage.get_trial(trial._trial_id)


def over_budget(study: optuna.Study, trial: optuna.Trial, budget: int) -> bool:
    """Whether ``trial``, just asked, is one too many: another process asked one at the same instant
    and the trials running (live or undecided, this one included) overfill the budget; the trials
    asked last are the ones too many."""
    room = budget - budget_used(study)
    running = sorted(r.trial.number for r in running_trials(study) if r.verdict in (LIVE, UNSURE, OWN))
    return trial.number in running[max(room, 0):]


def give_back(study: optuna.Study, trial: optuna.Trial) -> None:
    """End ``trial`` unrun (a ``surplus`` failure, which never counts) and queue again the
    configuration it was queued with, if any, as it was."""
    failure = records.TrialFailure("not run: trials running elsewhere fill the budget", records.SURPLUS)
    for key, value in failure.attrs().items():
        trial.set_user_attr(key, value)
    study.tell(trial, state=TrialState.FAIL)
    t = frozen(study, trial)
    fixed = t.system_attrs.get("fixed_params")
    if fixed:
        attrs = {k: t.user_attrs[k] for k in (records.RETRY_OF, records.RETRIES) if k in t.user_attrs}
        study.enqueue_trial(fixed, user_attrs=attrs, skip_if_exists=False)


def counts_against_budget(t: FrozenTrial) -> bool:
    """Finished trials count, except infrastructure failures that are still being retried and
    trials given back unrun."""
    if t.state not in FINISHED:
        return False
    if t.state == TrialState.FAIL and t.user_attrs.get(records.FAIL_KIND) == records.SURPLUS:
        return False
    if t.state == TrialState.FAIL and t.user_attrs.get(records.FAIL_KIND) == records.INFRASTRUCTURE:
        return bool(t.user_attrs.get(records.RETRIES_EXHAUSTED))
    return True


def budget_used(study: optuna.Study) -> int:
    """Trials that count against the budget (see :func:`counts_against_budget`)."""
    return sum(counts_against_budget(t) for t in study.get_trials(deepcopy=False, states=FINISHED))


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
