"""What crosses the hook boundary about data: a :class:`Task` made of :class:`Split` objects.

Tensors of small data sets live on the training device for the whole run; batches are index
slices into them, never DataLoader workers.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

from harness.errors import PluginError

TaskKind = Literal["image", "tabular", "graph"]
TASK_KINDS: tuple[str, ...] = ("image", "tabular", "graph")


def _move(t: torch.Tensor | None, device: torch.device | str) -> torch.Tensor | None:
    """Copy to ``device``; host tensors bound for a GPU go through pinned memory (an asynchronous DMA)."""
    if t is None:
        return None
    import torch

    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


@dataclass(frozen=True)
class Split:
    """One split of a task.

    ``x``: inputs (images ``N×C×H×W`` in [0, 1], standardised tabular features ``N×F``, or the
    features of the split's nodes for graph tasks); ``y``: int64 labels, ``None`` where the core hides
    them (unlabelled data, and every split handed to ``harness_evaluate``); ``index``: positions of
    these examples in the full data set (node ids for graph tasks).
    """

    x: torch.Tensor
    y: torch.Tensor | None
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        labels = "hidden" if self.y is None else "labelled"
        return f"Split(n={len(self)}, x={tuple(self.x.shape)}, {labels}, device={self.x.device})"

    def to(self, device: torch.device | str) -> Split:
        return Split(_move(self.x, device), _move(self.y, device), _move(self.index, device))

    def without_labels(self) -> Split:
        return Split(self.x, None, self.index)


WITHHELD_MESSAGE = ("the test split is withheld from harness_fit and harness_search_space by design; "
                    "train on task.train, tune on task.val")


class WithheldSplitError(PluginError, AttributeError):
    """A plugin touched ``task.test`` where the core withholds it. An ``AttributeError`` too, so
    ``getattr(task.test, name, default)`` and ``hasattr`` keep their usual meaning."""


class WithheldSplit:
    """What ``task.test`` is in every task handed to a plugin's ``harness_fit`` and
    ``harness_search_space``: any use of it raises :class:`WithheldSplitError`, which says why."""

    __slots__ = ()

    def __getattr__(self, name: str):
        if name.startswith("__"):  # protocol probes (pickle, copy) get the ordinary answer
            raise AttributeError(name)
        raise WithheldSplitError(WITHHELD_MESSAGE)

    def __len__(self) -> int:
        raise WithheldSplitError(WITHHELD_MESSAGE)

    def __iter__(self):
        raise WithheldSplitError(WITHHELD_MESSAGE)

    def __repr__(self) -> str:
        return "WithheldSplit()"

    def __reduce__(self):
        return (WithheldSplit, ())


WITHHELD = WithheldSplit()


@dataclass(frozen=True)
class Task:
    """A classification task with fixed train / val / test splits.

    In every task handed to ``harness_fit`` and ``harness_search_space`` the test split is withheld
    (:meth:`without_test`): ``task.has_test`` is ``False`` and any use of ``task.test`` raises an
    error that says so, because no method ever trains or tunes on the test split. ``unlabeled`` holds the rest of train when a label budget is set (labels hidden).
    ``graph`` holds the PyG ``Data`` object (all nodes, ``edge_index``) for graph tasks.
    """

    name: str
    kind: TaskKind
    num_classes: int
    input_shape: tuple[int, ...]
    train: Split
    val: Split
    test: Split | WithheldSplit | None = None
    unlabeled: Split | None = None
    graph: Any = None
    class_names: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"Task({self.name!r}, kind={self.kind}, classes={self.num_classes}, "
                f"input={self.input_shape}, sizes={self.sizes()})")

    @property
    def device(self) -> torch.device:
        return self.train.x.device

    @property
    def has_test(self) -> bool:
        """Whether this task carries its test split (the core's view), not a withheld one (a plugin's)."""
        return isinstance(self.test, Split)

    @property
    def input_range(self) -> tuple[float, float] | None:
        """The valid range of every input value: ``meta["input_range"]`` where the data set states
        one, else [0, 1] for images (the scale :class:`harness.info.RawDataset` promises) and
        None (unbounded: standardised features) for the other kinds."""
        if "input_range" in self.meta:
            low, high = self.meta["input_range"]
            return float(low), float(high)
        return (0.0, 1.0) if self.kind == "image" else None

    def without_test(self) -> Task:
        """This task with the test split withheld, as plugins receive it."""
        return dataclasses.replace(self, test=WITHHELD)

    def to(self, device: torch.device | str) -> Task:
        graph = self.graph.to(device) if self.graph is not None else None
        return dataclasses.replace(
            self,
            train=self.train.to(device),
            val=self.val.to(device),
            test=self.test.to(device) if self.has_test else self.test,
            unlabeled=self.unlabeled.to(device) if self.unlabeled is not None else None,
            graph=graph,
        )

    def sizes(self) -> dict[str, int]:
        out = {"n_train": len(self.train), "n_val": len(self.val)}
        if self.has_test:
            out["n_test"] = len(self.test)
        if self.unlabeled is not None:
            out["n_unlabeled"] = len(self.unlabeled)
        return out
