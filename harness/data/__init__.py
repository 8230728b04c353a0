"""Data sets, splits and label budgets. :func:`load_task` turns a data-set name into a :class:`Task`."""
from __future__ import annotations

import importlib
from typing import Any

# Resolved on first use (PEP 562): the data-set plugins load this package, and listing them must
# not import torch and scikit-learn.
_HOMES = {"load_task": "harness.data.tasks", "stratified_split": "harness.data.splits",
          "label_budget": "harness.data.splits"}

__all__ = ["load_task", "stratified_split", "label_budget"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
