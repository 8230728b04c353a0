"""Task kinds beyond classification: a continual stream, multi-task, episodic few-shot.

A suite turns a data set into one of these kinds by a data-set option, checked at the edge
(:func:`parse`) and applied after the data set is split (:func:`build`)::

    datasets:
      - {name: mnist5k, stream: {experiences: 5, scenario: class}}
      - {name: mnist5k, multitask: [digit, parity]}
      - {name: mnist5k, episodes: {ways: 5, shots: [1, 5], meta_train: [0,1,2,3,4], meta_test: [5,6,7,8,9]}}

Each kind lives in its own module (:mod:`.stream`, :mod:`.multitask`, :mod:`.episodic`); the
phases score a kind through :mod:`harness.phases.kinds`. A method says which kinds it supports in
``MethodInfo.tasks``; plain classification is ``"classification"``.
"""
from __future__ import annotations

import importlib
from typing import Any

from harness.errors import ConfigError

CLASSIFICATION = "classification"
TASK_KINDS: tuple[str, ...] = (CLASSIFICATION, "stream", "multitask", "episodic")
# The data-set option that asks for each kind, and the module that builds it.
OPTIONS: dict[str, str] = {"stream": "stream", "multitask": "multitask", "episodes": "episodic"}


def split_options(options: dict[str, Any]) -> tuple[str, Any, dict[str, Any]]:
    """``(task kind, the kind's option value, the data set's own options)`` of a data-set entry."""
    asked = [key for key in options if key in OPTIONS]
    if len(asked) > 1:
        raise ConfigError(f"a data set is one task kind: {' and '.join(asked)} given together")
    rest = {k: v for k, v in options.items() if k not in OPTIONS}
    if not asked:
        return CLASSIFICATION, None, rest
    return OPTIONS[asked[0]], options[asked[0]], rest


def _module(kind: str):
    return importlib.import_module(f"harness.tasks.{kind}")


def parse(options: dict[str, Any]) -> tuple[str, Any]:
    """The task kind of a data-set entry and its validated specification (``None`` for classification)."""
    kind, value, _ = split_options(options)
    return kind, None if kind == CLASSIFICATION else _module(kind).parse(value)


def build(task, options: dict[str, Any], data_seed: int = 0):
    """``task`` (a split classification :class:`~harness.task.Task`) as the kind its options ask for."""
    kind, spec = parse(options)
    return task if spec is None else _module(kind).build(task, spec, data_seed)


def task_kind(task) -> str:
    """The task kind of a task object the core holds: ``classification`` for a plain Task."""
    return getattr(task, "task_kind", CLASSIFICATION)
