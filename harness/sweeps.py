"""Training-size sweeps: a data-set entry of a suite file whose ``labels_per_class`` is a list.

``{name: mnist5k, labels_per_class: [10, 50, all]}`` becomes one data set per size
(``mnist5k@10pc``, ``mnist5k@50pc``, ``mnist5k``), each with its own studies and tuning, so every
row is measured at every size; :mod:`harness.report.sweep` draws the metrics against training size.
"""
from __future__ import annotations

from typing import Any

from harness.errors import ConfigError

ALL = "all"  # the size that keeps every labelled train example


def expand_sizes(entry: Any) -> list[Any]:
    """``entry`` as one data-set entry per label budget (the entry itself when it gives one or none)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("labels_per_class"), list):
        return [entry]
    sizes = entry["labels_per_class"]
    name = entry.get("name", "?")
    bad = [s for s in sizes if s != ALL and (isinstance(s, bool) or not isinstance(s, int) or s < 1)]
    if not sizes or bad:
        raise ConfigError(f"{name}: labels_per_class must be a positive integer or a list of them and "
                          f"{ALL!r}, got {bad[0] if bad else sizes!r}")
    if len(set(map(str, sizes))) != len(sizes):
        raise ConfigError(f"{name}: labels_per_class lists a size twice: {sizes!r}")
    if "label_fraction" in entry:
        raise ConfigError(f"{name}: give labels_per_class or label_fraction, not both")
    return [{**entry, "labels_per_class": None if size == ALL else size} for size in sizes]


__all__ = ["ALL", "expand_sizes"]
