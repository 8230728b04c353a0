"""Optuna studies: storage, samplers and pruners by name, and the tuning loop on the validation split.

Samplers, pruners and storages are Optuna's own, chosen by name and passed through untouched. The
loop uses Optuna's ask-and-tell interface so that every way a trial can end is recorded with its
reason: COMPLETE (validation accuracy), PRUNED, or FAIL with ``fail_reason`` and ``fail_kind``
(``method``: the plugin raised, diverged or returned bad probabilities; ``infrastructure``: the
process running it died). Method failures count against the budget and are never retried;
infrastructure failures are retried with the same configuration.
"""
from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
import torch
from optuna.trial import TrialState

from harness.context import FitContext, seed_everything
from harness.errors import ConfigError, HarnessError
from harness.metrics import classification_metrics
from harness.plugins import Method, check_probabilities
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


def make_storage(url: str | None, out_dir: Path) -> optuna.storages.BaseStorage:
    """``None`` → a journal file in ``out_dir`` (safe for several local processes); ``*.journal``
    or ``journal:PATH`` → that journal file; ``sqlite:///…``, ``postgresql://…`` → RDB storage."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if url is None or url.startswith("journal:") or url.endswith(".journal"):
        path = Path(url[len("journal:"):] if url and url.startswith("journal:") else url or out_dir / "optuna.journal")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ConfigError(f"unrecognised storage {url!r}: use a *.journal path, sqlite:///FILE or postgresql://...")
    try:
        return RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except Exception as exc:
        raise ConfigError(f"cannot open storage {redact(url)}: {_one_line(exc, url)}") from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    # Bounded pool, and a ping before each checkout so a dropped connection is replaced.
    return {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True, "pool_recycle": 600}


def _one_line(exc: BaseException, secret: str | None = None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if secret:
        text = text.replace(secret, redact(secret))
    return text


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


def reap_dead_trials(study: optuna.Study) -> int:
    """Fail RUNNING trials whose worker process on this host is gone, and queue their configuration
    again. (RDB storages do the same for other hosts through Optuna's heartbeat.)"""
    host = socket.gethostname()
    reaped = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "")
        w_host, _, pid = worker.rpartition(":")
        if w_host != host or not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        study._storage.set_trial_user_attr(t._trial_id, "fail_reason", f"worker {worker} died during the trial")
        study._storage.set_trial_user_attr(t._trial_id, "fail_kind", "infrastructure")
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        if t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        reaped += 1
    return reaped


def budget_used(study: optuna.Study) -> int:
    """Trials that count against the budget: finished ones, except infrastructure failures."""
    used = 0
    for t in study.get_trials(deepcopy=False, states=FINISHED):
        if t.state == TrialState.FAIL and t.user_attrs.get("fail_kind") == "infrastructure":
            continue
        used += 1
    return used


@dataclass
class TuneSettings:
    trials: int
    epochs: int
    device: torch.device
    amp: bool = True
    timeout: float | None = None
    seed_base: int = 0
    pinned: dict[str, Any] | None = None
    cache_dir: Path = Path(".harness-cache")


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

    ctx = FitContext(device=s.device, seed=seed, epochs=s.epochs, amp=s.amp, cache_dir=s.cache_dir,
                     phase="tune", reporter=reporter)
    seed_everything(seed)
    fitted = method.fit(task, config, ctx)
    probs = method.evaluate(fitted, task.val.without_labels(), ctx)
    probs = check_probabilities(probs, len(task.val), task.num_classes, method.name)
    metrics = classification_metrics(probs, task.val.y)
    return objective_value(metrics), metrics


def tune(
    study: optuna.Study,
    method: Method,
    task: Task,
    settings: TuneSettings,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> None:
    """Run trials until the study has ``settings.trials`` of them finished (resuming where it left
    off) or ``settings.timeout`` seconds pass."""
    if task.test is not None:
        raise ValueError("tuning must never see the test split: pass task.without_test()")
    reap_dead_trials(study)
    started = time.monotonic()
    while budget_used(study) < settings.trials:
        if settings.timeout is not None and time.monotonic() - started > settings.timeout:
            break
        trial = study.ask()
        trial.set_user_attr("worker", worker_id())
        try:
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
            trial.set_user_attr("fail_kind", "method")
            frozen = study.tell(trial, state=TrialState.FAIL)
        else:
            trial.set_user_attr("val", metrics)
            if not math.isfinite(value):
                trial.set_user_attr("fail_reason", "objective is not finite")
                trial.set_user_attr("fail_kind", "method")
                frozen = study.tell(trial, state=TrialState.FAIL)
            else:
                frozen = study.tell(trial, value)
        if on_trial is not None:
            on_trial(frozen)


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, HarnessError):
        return _one_line(exc)
    return f"{type(exc).__name__}: {_one_line(exc)}"


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    # Ties on accuracy go to the lower validation NLL, then the earlier trial.
    return max(complete, key=lambda t: (t.value, -t.user_attrs.get("val", {}).get("nll", math.inf), -t.number))


def failure_summary(study: optuna.Study) -> str:
    reasons = [t.user_attrs.get("fail_reason", "unknown") for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))]
    if not reasons:
        return "no trial completed"
    top = max(set(reasons), key=reasons.count)
    return f"all {len(reasons)} trials failed; most often: {top}"
