"""Multi-objective tuning: objectives by name, their directions and values.

A multi-objective study keeps every Pareto-optimal trial; the one re-trained over seeds is the
Pareto trial with the best validation accuracy (``harness.records.best_trial``), so the headline
table stays comparable with single-objective rows. The whole front is written beside it by
:mod:`harness.report.pareto`.
"""
from __future__ import annotations

from harness.errors import ConfigError
from harness.metrics import COLUMNS, Column, all_metrics
from harness.robustness import ROBUST

# Throughput is validation examples per second of ``harness_evaluate``, measured in the trial.
THROUGHPUT = "throughput"


def known_objectives() -> dict[str, Column]:
    """Objective name → the declaration of the validation metric it reads (key and direction):
    every registered metric, plugins' included, ``throughput``, and ``robust_acc`` (PGD accuracy on
    the validation split at the suite's ``robustness: objective_eps``, by default its largest ε)."""
    return {**{m.name: m for m in all_metrics()}, THROUGHPUT: COLUMNS["infer_samples_per_s"],
            ROBUST: COLUMNS[ROBUST]}


def parse_objectives(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"accuracy,ece"`` or a list → a validated tuple; None → accuracy alone."""
    if value is None:
        return ("accuracy",)
    known = known_objectives()
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()]
    if not names:
        raise ConfigError("objectives: give at least one of " + ", ".join(known))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown objective(s) {', '.join(unknown)} (known: {', '.join(known)})")
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives repeat a name: {', '.join(names)}")
    return tuple(names)


def directions(objectives: tuple[str, ...]) -> list[str]:
    known = known_objectives()
    return [known[o].direction for o in objectives]


def objective_values(metrics: dict[str, float], objectives: tuple[str, ...]) -> list[float]:
    known = known_objectives()
    missing = [o for o in objectives if known[o].name not in metrics]
    if missing:  # a plugin's metric that does not apply to this task
        raise ConfigError(f"objective(s) {', '.join(missing)} not defined for this task")
    return [float(metrics[known[o].name]) for o in objectives]
