"""Optuna studies: storage, samplers and pruners by name, and the tuning loop on the validation split.

Samplers, pruners and storages are Optuna's own, chosen by name and passed through untouched. The
loop uses Optuna's ask-and-tell interface so that every way a trial can end is recorded with its
reason: COMPLETE (validation accuracy), PRUNED, or FAIL with ``fail_reason`` and ``fail_kind``
(``method``: the plugin raised, diverged or returned bad probabilities; ``infrastructure``: the
process running it died or stopped sending heartbeats). Method failures count against the budget
and are never retried; infrastructure failures are retried with the same configuration, up to
``max_retries`` times. Several processes may run the loop on one study at once (see ``harness.worker``).
"""
from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
import torch
from optuna.trial import TrialState

from harness.context import FitContext, seed_everything
from harness.errors import ConfigError, HarnessError
from harness.metrics import classification_metrics
from harness.plugins import Method, check_probabilities
from harness.multiobjective import objective_values
from harness.task import Task

optuna.logging.set_verbosity(optuna.logging.WARNING)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def redact(url: str) -> str:
    """A storage URL with any password replaced by ``***``."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


def make_storage(url: str | None, out_dir: Path, heartbeat: int | None = None) -> optuna.storages.BaseStorage:
    """``None`` → a journal file in ``out_dir`` (safe for several local processes); ``*.journal``
    or ``journal:PATH`` → that journal file; ``sqlite:///…``, ``postgresql://…`` → RDB storage.

    ``heartbeat`` (seconds): RDB storages record a heartbeat per running trial at that interval, and
    a trial silent for three intervals counts as its worker's death (see ``reap_dead_trials``).
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
                return RDBStorage(_with_driver(url), engine_kwargs=_engine_kwargs(url), **beat)
        except Exception as exc:
            # Workers starting at once race to create the schema (duplicate key / relation exists);
            # the loser finds it made on the next try.
            if attempt == 3 or not _is_database_error(exc):
                raise ConfigError(f"cannot open storage {redact(url)}: {_one_line(exc, url)}") from None
            time.sleep((0.25 * 2**attempt) * (1 + random.random()))
    raise AssertionError("unreachable")


def _with_driver(url: str) -> str:
    """``postgresql://`` with the PostgreSQL driver that is installed: SQLAlchemy 2.1 defaults to
    psycopg 3, while many installations (and our ``postgres`` extra) have psycopg2."""
    scheme, rest = url.split("://", 1)
    if scheme not in ("postgresql", "postgres"):
        return url
    import importlib.util

    driver = "psycopg" if importlib.util.find_spec("psycopg") else "psycopg2"
    return f"postgresql+{driver}://{rest}"


def _is_database_error(exc: BaseException) -> bool:
    """A conflict between processes creating the schema at once, worth another try."""
    try:
        from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
    except ImportError:
        return False
    return isinstance(exc, (IntegrityError, ProgrammingError)) or (
        isinstance(exc, OperationalError) and "deadlock" in str(exc).lower())


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    # Bounded pool, and a ping before each checkout so a dropped connection is replaced.
    return {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True, "pool_recycle": 600}


def _one_line(exc: BaseException, secret: str | None = None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if secret:
        text = text.replace(secret, redact(secret))
        password = _password(secret)
        if password:
            text = text.replace(password, "***")
    return text


def _password(url: str) -> str | None:
    if "://" not in url or "@" not in url:
        return None
    creds = url.split("://", 1)[1].rsplit("@", 1)[0]
    return creds.split(":", 1)[1] if ":" in creds and creds.split(":", 1)[1] else None


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ConfigError("the cmaes sampler needs the `cmaes` package: pip install cmaes") from None
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=5, warn_independent_sampling=False)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise ConfigError(f"unknown sampler {name!r}")


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, epochs // 4))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(2, epochs), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r}")


class PinnedTrial:
    """An Optuna trial whose ``suggest_*`` return pinned values for the names the user fixed.

    Everything else passes through to the real trial, so spaces stay define-by-run and conditional.
    """

    def __init__(self, trial: optuna.Trial, pinned: dict[str, Any]):
        self._trial = trial
        self._pinned = dict(pinned)
        self.used: set[str] = set()

    def __getattr__(self, name: str):
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(param: str, *args, **kwargs):
            if param in self._pinned:
                self.used.add(param)
                return self._pinned[param]
            return attr(param, *args, **kwargs)

        return suggest


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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


def reap_dead_trials(study: optuna.Study, max_retries: int = 2) -> int:
    """Fail RUNNING trials whose worker is gone and queue their configuration again.

    With a heartbeat (RDB storages), a worker is gone when its trial has sent no heartbeat for the
    grace period: it died, hung or lost its database connection, on whatever machine. Without one
    (journal files), when it ran on this host and its process no longer exists. Such failures are ``infrastructure`` failures; the same
    configuration is retried at most ``max_retries`` times, after which the failure counts
    against the budget like a method failure. Safe to run from several processes at once: only the
    one whose state change wins queues the retry.
    """
    storage = study._storage
    beats = _heartbeat_enabled(storage)
    stale = set(storage._get_stale_trial_ids(study._study_id)) if beats else set()
    reaped = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "")
        pid = _local_worker(worker)
        if t._trial_id in stale:
            reason = f"worker {worker or '?'} stopped sending heartbeats (died, hung or lost its connection)"
        elif not beats and pid is not None and pid != os.getpid() and not _pid_alive(pid):
            reason = f"worker {worker} died during the trial"
        else:
            continue
        retries = int(t.user_attrs.get("retries", 0))
        exhausted = retries >= max_retries
        try:
            # Attributes first: a finished trial is read-only, and a second reaper racing us writes
            # the same values before its state change fails.
            storage.set_trial_user_attr(t._trial_id, "fail_reason",
                                        reason + (f"; gave up after {retries} retries" if exhausted else ""))
            storage.set_trial_user_attr(t._trial_id, "fail_kind", "infrastructure")
            if exhausted:
                storage.set_trial_user_attr(t._trial_id, "retries_exhausted", True)
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process reaped it (or the trial just finished after all)
        if t.params and not exhausted:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "retries": retries + 1},
                                skip_if_exists=False)
        reaped += 1
    return reaped


def counts_against_budget(t: optuna.trial.FrozenTrial) -> bool:
    """Finished trials count, except infrastructure failures that are still being retried."""
    if t.state not in FINISHED:
        return False
    if t.state == TrialState.FAIL and t.user_attrs.get("fail_kind") == "infrastructure":
        return bool(t.user_attrs.get("retries_exhausted"))
    return True


def budget_used(study: optuna.Study) -> int:
    """Trials that count against the budget (see ``counts_against_budget``)."""
    return sum(counts_against_budget(t) for t in study.get_trials(deepcopy=False, states=FINISHED))


def _pending_elsewhere(study: optuna.Study, first_seen: dict[int, float]) -> int:
    """RUNNING trials of other live workers that will finish or be reaped: every one when the
    storage has heartbeats, else those of live processes on this host.

    A trial whose worker died before its first heartbeat is never stale to Optuna; ``first_seen``
    (trial id → when this process first saw it running) lets such a trial stop counting after
    twelve heartbeat intervals, so nobody waits for it forever.
    """
    interval = getattr(study._storage, "heartbeat_interval", None) if _heartbeat_enabled(study._storage) else None
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = _local_worker(t.user_attrs.get("worker", ""))
        if pid == os.getpid():
            continue
        if interval:
            n += time.monotonic() - first_seen.setdefault(t._trial_id, time.monotonic()) < 12 * interval
        elif pid is not None and _pid_alive(pid):
            n += 1
    return n


class TrialTimeout(HarnessError):
    """A trial ran past its time limit."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ``TrialTimeout`` inside the block after ``seconds`` (main thread only: SIGALRM)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise TrialTimeout(f"exceeded the per-trial time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class TuneSettings:
    trials: int
    epochs: int
    device: torch.device
    amp: bool = True
    compile: bool = False
    timeout: float | None = None
    seed_base: int = 0
    pinned: dict[str, Any] | None = None
    cache_dir: Path = Path(".harness-cache")
    objectives: tuple[str, ...] = ("accuracy",)
    trial_timeout: float | None = None  # seconds per trial; past it the trial is a method FAIL
    max_retries: int = 2  # re-runs of a configuration whose worker died
    max_trials: int | None = None  # trials this process runs at most (a worker's --n-trials)


def objective_value(metrics: dict[str, float]) -> float:
    return metrics["accuracy"]


def run_trial(trial: optuna.Trial, method: Method, task: Task, s: TuneSettings) -> tuple[float, dict]:
    """One tuning trial: sample, fit on train, score probabilities on val. ``task`` has no test."""
    pinned = PinnedTrial(trial, s.pinned or {})
    config = method.search_space(pinned, task)
    config = {**config, **{k: v for k, v in (s.pinned or {}).items() if k not in config}}
    try:
        json.dumps(config)
    except TypeError as exc:
        raise ConfigError(f"{method.name}: configuration is not JSON-serialisable ({exc})") from None
    trial.set_user_attr("config", config)
    seed = s.seed_base + 10_000 + trial.number

    def reporter(step: int, value: float) -> None:
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {step + 1}")

    # Multi-objective studies cannot prune: their trials report nothing.
    ctx = FitContext(device=s.device, seed=seed, epochs=s.epochs, amp=s.amp, compile=s.compile,
                     cache_dir=s.cache_dir,
                     phase="tune", reporter=reporter if len(s.objectives) == 1 else None)
    seed_everything(seed)
    fitted = method.fit(task, config, ctx)
    started = time.perf_counter()
    probs = method.evaluate(fitted, task.val.without_labels(), ctx)
    elapsed = time.perf_counter() - started
    probs = check_probabilities(probs, len(task.val), task.num_classes, method.name)
    metrics = classification_metrics(probs, task.val.y)
    metrics["infer_samples_per_s"] = len(task.val) / max(elapsed, 1e-9)
    return objective_value(metrics), metrics


def tune(
    study: optuna.Study,
    method: Method,
    task: Task,
    settings: TuneSettings,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> None:
    """Run trials until the study has ``settings.trials`` of them finished (resuming where it left
    off), ``settings.timeout`` seconds pass, or this process ran ``settings.max_trials``.

    Other processes may work on the same study: the loop reaps trials of dead workers, and when
    live trials elsewhere will fill the budget it waits for them instead of starting more.
    """
    from harness.worker import ask, heartbeat

    if task.has_test:
        raise ValueError("tuning must never see the test split: pass task.without_test()")
    started = time.monotonic()
    poll = float(getattr(study._storage, "heartbeat_interval", None) or 0.5)
    ran = 0
    first_seen: dict[int, float] = {}
    while True:
        reap_dead_trials(study, settings.max_retries)
        used = budget_used(study)
        if used >= settings.trials:
            break
        if settings.timeout is not None and time.monotonic() - started > settings.timeout:
            break
        if settings.max_trials is not None and ran >= settings.max_trials:
            break
        if used + _pending_elsewhere(study, first_seen) >= settings.trials:
            time.sleep(poll)  # bounded: those trials finish, or stop beating and are reaped above
            continue
        trial = ask(study)
        trial.set_user_attr("worker", worker_id())
        ran += 1
        try:
            with heartbeat(study._storage, trial._trial_id), time_limit(settings.trial_timeout):
                value, metrics = run_trial(trial, method, task, settings)
        except optuna.TrialPruned:
            frozen = study.tell(trial, state=TrialState.PRUNED)
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            trial.set_user_attr("fail_kind", "infrastructure")
            study.tell(trial, state=TrialState.FAIL)
            if trial.params:
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise
        except Exception as exc:  # a plugin is third-party code: any failure is its trial's FAIL
            trial.set_user_attr("fail_reason", failure_reason(exc))
            if _lost_connection(exc):  # the storage went away mid-trial: not the method's fault
                retries = int(trial.user_attrs.get("retries", 0))
                trial.set_user_attr("fail_kind", "infrastructure")
                trial.set_user_attr("retries_exhausted", retries >= settings.max_retries)
                frozen = study.tell(trial, state=TrialState.FAIL)
                if trial.params and retries < settings.max_retries:
                    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "retries": retries + 1})
            else:
                trial.set_user_attr("fail_kind", "method")
                frozen = study.tell(trial, state=TrialState.FAIL)
        else:
            trial.set_user_attr("val", metrics)
            values = objective_values(metrics, settings.objectives)
            if not all(math.isfinite(v) for v in values):
                trial.set_user_attr("fail_reason", "objective is not finite")
                trial.set_user_attr("fail_kind", "method")
                frozen = study.tell(trial, state=TrialState.FAIL)
            else:
                frozen = study.tell(trial, values if len(values) > 1 else values[0])
        if on_trial is not None:
            on_trial(frozen)


def _lost_connection(exc: BaseException) -> bool:
    """An error of the storage's connection (raised inside a trial by its reports), not of the method."""
    if isinstance(exc, optuna.exceptions.StorageInternalError):
        return True
    try:
        from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
    except ImportError:
        return False
    return isinstance(exc, (DisconnectionError, InterfaceError, OperationalError))


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, HarnessError):
        return _one_line(exc)
    return f"{type(exc).__name__}: {_one_line(exc)}"


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The trial re-trained over seeds: the best validation accuracy; in a multi-objective study
    the Pareto-optimal trial with the best validation accuracy."""
    if len(study.directions) > 1:
        complete = study.best_trials
    else:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    # Ties on accuracy go to the lower validation NLL, then the earlier trial.
    return max(complete, key=lambda t: (val_accuracy(t), -t.user_attrs.get("val", {}).get("nll", math.inf), -t.number))


def val_accuracy(t: optuna.trial.FrozenTrial) -> float:
    """A finished trial's validation accuracy, whatever its objectives were."""
    val = t.user_attrs.get("val", {})
    return val["accuracy"] if "accuracy" in val else t.values[0]


def failure_summary(study: optuna.Study) -> str:
    reasons = [t.user_attrs.get("fail_reason", "unknown") for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))]
    if not reasons:
        return "no trial completed"
    top = max(set(reasons), key=reasons.count)
    return f"all {len(reasons)} trials failed; most often: {top}"
