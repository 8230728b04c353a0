"""Former home of the seed re-runs; the names stay importable from here.

The final phase is :mod:`harness.phases.final`; stored keys are :mod:`harness.records`.
"""
from harness.phases.final import FinalSettings, run_seed, run_seeds
from harness.phases.fitting import PhaseSettings
from harness.predictions import MEMBER_PROBS
from harness.records import RESULT_PREFIX, stored_results

__all__ = ["FinalSettings", "MEMBER_PROBS", "PhaseSettings", "RESULT_PREFIX", "run_seed", "run_seeds", "stored_results"]
