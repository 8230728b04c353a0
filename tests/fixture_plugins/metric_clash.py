"""Metrics whose names are taken: a built-in's, and one another fixture plugin already provides."""
from __future__ import annotations

from harness import hookimpl
from harness.metrics import Metric


@hookimpl
def harness_metrics():
    return [
        Metric(name="ece", fn=lambda p, y: 0.0, higher_is_better=False, label="my ECE"),
        Metric(name="auroc", fn=lambda p, y: 0.5, higher_is_better=True, label="AUROC again"),
        "not a metric",
    ]
