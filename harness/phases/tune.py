"""The tuning phase: trials on the validation split, until the row's trial budget is spent.

The loop uses Optuna's ask-and-tell interface so that every way a trial can end is recorded with its
reason (:mod:`harness.records`): COMPLETE (validation metrics), PRUNED, or FAIL with a
:class:`~harness.records.TrialFailure` of kind ``method`` (the plugin raised, diverged or returned bad
probabilities; counts against the budget, never retried) or ``infrastructure`` (the worker died or
lost its storage; retried with the same configuration). Several processes may run the loop on one
study at once; :mod:`harness.storage` reaps the trials of dead ones.
"""
from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import optuna
from optuna.trial import TrialState

from harness import records, robustness, storage
from harness.errors import ConfigError, HarnessError, StorageUnavailableError, failure_reason
from harness.metrics import classification_metrics
from harness.multiobjective import objective_values
from harness.phases import kinds
from harness.phases.fitting import PhaseSettings, fit, predict
from harness.plugins import Method
from harness.task import Task
from harness.tasks import CLASSIFICATION, task_kind


@dataclass(frozen=True)
class TuneSettings:
    """How a row is tuned: ``trials`` count against the budget; ``phase`` is shared with the seeds."""

    trials: int
    phase: PhaseSettings
    timeout: float | None = None  # seconds of tuning in this process
    seed_base: int = 0
    pinned: dict[str, Any] | None = None
    objectives: tuple[str, ...] = ("accuracy",)
    trial_timeout: float | None = None  # seconds per trial; past it the trial is a method FAIL
    max_retries: int = 2  # re-runs of a configuration whose worker died
    max_trials: int | None = None  # trials this process runs at most (a worker's --n-trials)
    robustness: robustness.AttackSettings | None = None  # attacks val when robust_acc is an objective


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


def run_trial(trial: optuna.Trial, method: Method, task: Task, s: TuneSettings) -> dict[str, float]:
    """One tuning trial: sample, fit on train, score probabilities on val; the validation metrics.
    ``task`` has no test split."""
    pinned = PinnedTrial(trial, s.pinned or {})
    config = method.search_space(pinned, task)
    config = {**config, **{k: v for k, v in (s.pinned or {}).items() if k not in config}}
    try:
        json.dumps(config)
    except TypeError as exc:
        raise ConfigError(f"{method.name}: configuration is not JSON-serialisable ({exc})") from None
    trial.set_user_attr(records.CONFIG, config)

    def reporter(step: int, value: float) -> None:
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {step + 1}")

    # Multi-objective studies cannot prune: their trials report nothing.
    ctx = s.phase.context(s.seed_base + 10_000 + trial.number, "tune",
                          reporter=reporter if len(s.objectives) == 1 else None)
    if task_kind(task) != CLASSIFICATION:  # a stream, multi-task or episodic task: its own protocol
        return kinds.validation_metrics(method, task, config, ctx)
    fitted = fit(method, task, config, ctx)
    predictions, elapsed = predict(fitted, task.val, task.num_classes)
    metrics = classification_metrics(predictions.probs, task.val.y)
    metrics["infer_samples_per_s"] = len(task.val) / max(elapsed, 1e-9)
    if robustness.ROBUST in s.objectives and s.robustness is not None:
        metrics[robustness.ROBUST] = robustness.objective(method.differentiable(fitted.state, ctx), task.val.x,
                                                          task.val.y, s.robustness, task.input_range, ctx.seed)
    return metrics


def _fail(study: optuna.Study, trial: optuna.Trial, failure: records.TrialFailure) -> optuna.trial.FrozenTrial:
    def record() -> optuna.trial.FrozenTrial:
        for key, value in failure.attrs().items():
            trial.set_user_attr(key, value)
        return study.tell(trial, state=TrialState.FAIL)

    return _settled(study, trial, record)


def _settled(study: optuna.Study, trial: optuna.Trial,
             record: Callable[[], optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial:
    """Record how a trial ended, unless another process ended it first: it took this worker for
    dead (its heartbeats were lost in a storage outage) and queued the configuration again."""
    try:
        return record()
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        stored = storage.frozen(study, trial)
        if not stored.state.is_finished():
            raise
        return stored


def tune(
    study: optuna.Study,
    method: Method,
    task: Task,
    settings: TuneSettings,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> None:
    """Run trials until the study has ``settings.trials`` of them finished (resuming where it left
    off), ``settings.timeout`` seconds pass, or this process ran ``settings.max_trials``.

    Other processes may work on the same study: the loop reaps trials of dead workers, and when
    live trials elsewhere will fill the budget it waits for them instead of starting more (and
    ``say``s so, once). Once the budget is reached, no trial of a dead worker is left RUNNING.
    A storage that stays unreachable past its retry time ends the loop with
    :class:`~harness.errors.StorageUnavailableError`, before any further call to it.
    """
    if task.has_test:
        raise ValueError("tuning must never see the test split: pass task.without_test()")
    started = time.monotonic()
    poll = storage.poll_interval(study, 0.5)
    ran = 0
    told: set[str] = set()
    while True:
        used = storage.budget_used(study)
        if used < settings.trials and storage.reap_dead_trials(study, settings.max_retries):
            used = storage.budget_used(study)  # a configuration out of retries counts
        if used >= settings.trials:
            storage.settle(study)
            break
        if settings.timeout is not None and time.monotonic() - started > settings.timeout:
            break
        if settings.max_trials is not None and ran >= settings.max_trials:
            break
        elsewhere = storage.running_elsewhere(study)
        if used + sum(elsewhere.values()) >= settings.trials:
            note = ", ".join(f"{n} trial{'s' * (n > 1)} of worker {w}" for w, n in sorted(elsewhere.items()))
            if note not in told:
                told.add(note)
                say(f"{study.study_name}: waiting for {note}, which would fill the budget of {settings.trials}")
            time.sleep(poll)  # bounded: those trials finish, or their workers are found dead and reaped above
            continue
        trial = storage.ask(study)
        if storage.over_budget(study, trial, settings.trials):  # another process asked at the same instant
            storage.give_back(study, trial)
            continue
        ran += 1
        try:
            with storage.heartbeat(storage.storage_of(study), trial), time_limit(settings.trial_timeout):
                metrics = run_trial(trial, method, task, settings)
        except optuna.TrialPruned:
            frozen = _settled(study, trial, lambda: study.tell(trial, state=TrialState.PRUNED))
        except KeyboardInterrupt:
            ended = _fail(study, trial, records.TrialFailure("interrupted (Ctrl-C)", records.INFRASTRUCTURE))
            if ended.user_attrs.get(records.FAIL_REASON) == "interrupted (Ctrl-C)":  # not reaped meanwhile
                storage.retry(study, ended, None)
            raise
        except StorageUnavailableError:
            raise  # the storage is gone: recording the trial would only wait for it again
        except Exception as exc:  # a plugin is third-party code: any failure is its trial's FAIL
            if storage.lost_connection(exc):  # the storage went away mid-trial: not the method's fault
                retries = int(trial.user_attrs.get(records.RETRIES, 0))
                frozen = _fail(study, trial, records.TrialFailure(
                    failure_reason(exc), records.INFRASTRUCTURE, retries_exhausted=retries >= settings.max_retries))
                ours = frozen.user_attrs.get(records.FAIL_REASON) == failure_reason(exc)  # not reaped meanwhile
                if retries < settings.max_retries and ours:
                    storage.retry(study, frozen, retries)
            else:
                frozen = _fail(study, trial, records.TrialFailure(failure_reason(exc), records.METHOD))
        else:
            def record() -> optuna.trial.FrozenTrial:
                trial.set_user_attr(records.VAL, metrics)
                values = objective_values(metrics, settings.objectives)
                if not all(math.isfinite(v) for v in values):
                    for key, value in records.TrialFailure("objective is not finite", records.METHOD).attrs().items():
                        trial.set_user_attr(key, value)
                    return study.tell(trial, state=TrialState.FAIL)
                return study.tell(trial, values if len(values) > 1 else values[0])

            frozen = _settled(study, trial, record)
        if on_trial is not None:
            on_trial(frozen)
