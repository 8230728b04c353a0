"""Descriptions plugins hand to the core: what methods and data sets they provide."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Union

if TYPE_CHECKING:
    import torch

    from harness.task import Task

Defaults = Union[dict[str, Any], Callable[["Task"], dict[str, Any]]]


@dataclass(frozen=True)
class MethodInfo:
    """A method a plugin provides.

    ``kinds``: the task kinds it can run on (``"image"``, ``"tabular"``, ``"graph"``).

    ``defaults``: the paper's setting, as a value for every *Optuna parameter* the search space
    suggests (the names passed to ``trial.suggest_*``), not as config keys (what the search space
    returns; the two differ where a space derives keys from parameters). The core enqueues them as
    the first trial of every study and uses them alone when tuning is switched off. Where the space
    depends on the task, give a callable ``defaults(task) -> dict``::

        defaults=lambda task: {"model": "cnn" if task.kind == "image" else "mlp", "lr": 1e-3}

    ``harness plugins --check`` validates the defaults on a task of every declared kind;
    :func:`harness.configs.defaults_for` resolves them for one task.

    ``replaces``: set to the method's own name to take over a built-in method of that name on
    purpose (``MethodInfo("erm", ..., replaces="erm")``); any other clash of method names is an
    error. ``harness plugins`` shows which built-in a method replaces.

    ``tasks``: the task kinds it can learn (:mod:`harness.tasks`): ``"classification"``, and the
    protocols ``"stream"`` (continual), ``"multitask"`` and ``"episodic"`` (few-shot). The core
    refuses to run a method on a task kind it does not list.
    """

    name: str
    kinds: tuple[str, ...]
    description: str
    citation: str = ""
    defaults: Defaults = field(default_factory=dict)
    replaces: str | None = None
    tasks: tuple[str, ...] = ("classification",)


@dataclass
class RawDataset:
    """A whole data set before the core splits it.

    ``x``: images ``N×C×H×W`` scaled to [0, 1], or tabular features ``N×F`` (standardised by the core
    on train statistics). ``splits``: fixed index tensors for ``train``/``val``/``test`` where the data
    set defines them (Planetoid); otherwise the core draws stratified splits from the data seed.
    ``graph``: for graph tasks, a PyG ``Data`` with ``x`` and ``edge_index`` of all nodes (no labels).
    """

    x: torch.Tensor
    y: torch.Tensor
    kind: str
    class_names: tuple[str, ...] = ()
    splits: dict[str, torch.Tensor] | None = None
    graph: Any = None
    hflip: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetRequest:
    """What the user asked for: ``name[:argument]`` plus options such as ``target`` for CSV files."""

    name: str
    argument: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    root: str = "~/.cache/harness/data"


@dataclass(frozen=True)
class DatasetInfo:
    """A data set a plugin provides.

    ``name`` is matched exactly, or as a prefix before ``:`` when ``takes_argument`` is set
    (``csv:path/to/file.csv``, ``tv:MNIST``, ``planetoid:path/to/dir``). ``load`` returns a
    :class:`RawDataset`; it raises :class:`harness.errors.DataError` with a one-line reason when the
    data cannot be had.
    """

    name: str
    kind: str
    description: str
    load: Callable[[DatasetRequest], RawDataset]
    takes_argument: bool = False
    source: str = ""
    # The options ``load`` reads from ``request.options`` (any other is refused before loading, so
    # a misspelt option is not ignored); None: the loader takes any option (e.g. passes them on).
    options: tuple[str, ...] | None = None
