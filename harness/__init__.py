"""harness: tune deep-learning methods with Optuna, re-train over seeds, compare them honestly.

Plugin authors need :data:`hookimpl` and the types below; the hooks are documented in
:mod:`harness.hookspecs`.
"""
from harness.context import FitContext
from harness.hookspecs import hookimpl
from harness.info import DatasetInfo, DatasetRequest, MethodInfo, RawDataset
from harness.predictions import Predictions
from harness.task import Split, Task

__version__ = "0.1.0"

__all__ = ["hookimpl", "FitContext", "MethodInfo", "DatasetInfo", "DatasetRequest", "RawDataset",
           "Predictions", "Split", "Task", "__version__"]
