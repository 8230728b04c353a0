"""Multi-task learning: one input, several label sets, derived from one classification data set.

Heads (the ``multitask`` option lists two or more, the first is the data set's own):

* ``digit`` (or ``label``): the data set's labels;
* ``parity``: the label modulo 2;
* ``rotation``: every image is turned by 0, 90, 180 or 270 degrees (drawn once per example from the
  data seed) and the head predicts which; the other heads see the turned images too;
* ``noisy_label``: the data set's labels, each replaced with probability ``LABEL_NOISE`` by a class
  drawn uniformly (once per example from the data seed, in every split alike): a head with
  homoscedastic noise, the case Kendall et al. (CVPR 2018) weigh heads by a learnt noise for. Its
  best possible accuracy is ``1 − LABEL_NOISE · (K − 1) / K``.

The labels of a split are an ``N × H`` int64 tensor, one column per head in the order given;
``task.meta["heads"]`` maps each head to its number of classes. ``harness_evaluate`` returns a
dict of ``N × K_h`` probabilities by head name; the core scores each head (``accuracy_<head>``) and
their mean (the row's headline ``accuracy``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError
from harness.tasks.base import KindTask

if TYPE_CHECKING:
    from harness.task import Split, Task

HEADS = ("digit", "label", "parity", "rotation", "noisy_label")
LABEL_NOISE = 0.5  # the share of a noisy_label head's labels drawn at random


@dataclass(frozen=True)
class MultiTaskSpec:
    heads: tuple[str, ...]


def parse(value: Any) -> MultiTaskSpec:
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(h, str) for h in value):
        raise ConfigError(f"multitask: expected a list of two or more heads ({', '.join(HEADS)}), got {value!r}")
    unknown = [h for h in value if h not in HEADS]
    if unknown:
        raise ConfigError(f"multitask: unknown head {unknown[0]!r} (known: {', '.join(HEADS)})")
    if len(set(value)) != len(value):
        raise ConfigError(f"multitask: a head is named twice in {value}")
    return MultiTaskSpec(tuple(value))


@dataclass(frozen=True)
class MultiTask(KindTask):
    """A task whose splits carry one label column per head; ``task`` is what ``harness_fit`` receives."""

    task: Task
    task_kind = "multitask"

    @property
    def template(self) -> Task:
        return self.task.without_test()

    @property
    def heads(self) -> dict[str, int]:
        return dict(self.task.meta["heads"])

    @property
    def has_test(self) -> bool:
        return self.task.has_test

    def without_test(self) -> MultiTask:
        return MultiTask(self.task.without_test())

    def to(self, device) -> MultiTask:
        return MultiTask(self.task.to(device))

    def sizes(self) -> dict[str, int]:
        return self.task.sizes()

    def __repr__(self) -> str:
        return f"MultiTask({self.name!r}, heads={self.heads})"


def build(task: Task, spec: MultiTaskSpec, data_seed: int = 0) -> MultiTask:
    import torch

    from harness.task import Split

    if "rotation" in spec.heads and task.kind != "image":
        raise ConfigError(f"multitask: the rotation head needs images; {task.name} is {task.kind}")
    sizes = {"digit": task.num_classes, "label": task.num_classes, "parity": 2, "rotation": 4,
             "noisy_label": task.num_classes}

    def derive(split: Split, salt: int) -> Split:
        g = torch.Generator().manual_seed(data_seed * 7919 + salt)
        turns = torch.randint(0, 4, (len(split),), generator=g).to(split.x.device)
        x = split.x
        if "rotation" in spec.heads:
            x = x.clone()
            for k in range(1, 4):
                sel = turns == k
                x[sel] = torch.rot90(x[sel], k, dims=(2, 3))
        flip = torch.rand(len(split), generator=g).to(split.y.device) < LABEL_NOISE
        noise = torch.randint(0, task.num_classes, (len(split),), generator=g).to(split.y.device)
        columns = {"digit": split.y, "label": split.y, "parity": split.y % 2, "rotation": turns,
                   "noisy_label": torch.where(flip, noise, split.y)}
        return Split(x, torch.stack([columns[h] for h in spec.heads], 1), split.index)

    heads = {h: sizes[h] for h in spec.heads}
    return MultiTask(dataclasses.replace(
        task, train=derive(task.train, 1), val=derive(task.val, 2), test=derive(task.test, 3),
        num_classes=heads[spec.heads[0]], meta={**task.meta, "stage": "multitask", "heads": heads},
    ))
