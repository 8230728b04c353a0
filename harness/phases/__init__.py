"""The two phases of a row: tune on the validation split (:mod:`.tune`), then re-train the best
configuration over seeds and score the test split once (:mod:`.final`). Both fit, predict, check
and time a method through the one routine in :mod:`.fitting`."""
from harness.configs import default_config
from harness.phases.final import FinalSettings, run_seed, run_seeds
from harness.phases.fitting import Fitted, PhaseSettings, fit, predict
from harness.phases.tune import PinnedTrial, TrialTimeout, TuneSettings, run_trial, tune

__all__ = ["FinalSettings", "Fitted", "PhaseSettings", "PinnedTrial", "TrialTimeout", "TuneSettings",
           "default_config", "fit", "predict", "run_seed", "run_seeds", "run_trial", "tune"]
