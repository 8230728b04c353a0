"""harness: tune deep-learning methods with Optuna, re-train over seeds, compare them honestly.

Plugin authors need :data:`hookimpl` and the types below; the hooks are documented in
:mod:`harness.hookspecs`. The names resolve on first use (PEP 562), so that ``import harness``
and the command's start-up do not import torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_HOMES = {
    "hookimpl": "harness.hookspecs",
    "lazy_hooks": "harness.hookspecs",
    "FitContext": "harness.context",
    "MethodInfo": "harness.info",
    "DatasetInfo": "harness.info",
    "DatasetRequest": "harness.info",
    "RawDataset": "harness.info",
    "Predictions": "harness.predictions",
    "Split": "harness.task",
    "Task": "harness.task",
}

__all__ = ["hookimpl", "lazy_hooks", "FitContext", "MethodInfo", "DatasetInfo", "DatasetRequest", "RawDataset",
           "Predictions", "Split", "Task", "__version__"]

if TYPE_CHECKING:
    from harness.context import FitContext
    from harness.hookspecs import hookimpl, lazy_hooks
    from harness.info import DatasetInfo, DatasetRequest, MethodInfo, RawDataset
    from harness.predictions import Predictions
    from harness.task import Split, Task


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
