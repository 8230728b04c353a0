"""Former home of the tuning loop and the storage helpers; the names stay importable from here.

The tuning phase is :mod:`harness.phases.tune`, storages and heartbeats are :mod:`harness.storage`,
samplers and pruners :mod:`harness.samplers`, queries on stored trials :mod:`harness.records`.
"""
from harness.errors import failure_reason
from harness.phases.fitting import PhaseSettings
from harness.phases.tune import PinnedTrial, TrialTimeout, TuneSettings, run_trial, time_limit, tune
from harness.records import best_trial, failure_summary, val_accuracy
from harness.samplers import make_pruner, make_sampler
from harness.storage import (
    budget_used, counts_against_budget, make_storage, reap_dead_trials, redact, worker_id,
)

__all__ = ["PhaseSettings", "PinnedTrial", "TrialTimeout", "TuneSettings", "best_trial", "budget_used",
           "counts_against_budget", "failure_reason", "failure_summary", "make_pruner", "make_sampler",
           "make_storage", "reap_dead_trials", "redact", "run_trial", "time_limit", "tune", "val_accuracy",
           "worker_id"]
