"""Continual learning: a data set as an ordered stream of experiences, and the stream metrics.

The classes of a split data set are dealt, in order (or in the order given), into ``experiences``
groups of equal size (split MNIST: five experiences of two digits). Each experience is a
:class:`~harness.task.Task` with its own train / val / test. Scenarios (van de Ven, Tuytelaars &
Tolias, Three types of incremental learning, Nature Machine Intelligence 2022):

* ``class``: one output over every class of the stream; the experience is not known at test time.
* ``task``: the same labels, but the experience is known at test time: the core scores each
  experience on its own classes only (the probabilities restricted to them and renormalised).
* ``domain``: every experience has the same labels, the position of the class within its
  experience (split MNIST: first or second digit of the pair).

After training on experience *i* the core scores every experience *j*: ``R[i][j]``. From the
accuracy matrix (Lopez-Paz & Ranzato, Gradient Episodic Memory, NeurIPS 2017; Chaudhry et al.
2018 for forgetting), with *T* experiences:

* average accuracy ``ACC = 1/T Σ_j R[T-1][j]`` (the row's headline ``accuracy``);
* backward transfer ``BWT = 1/(T-1) Σ_{j<T-1} (R[T-1][j] − R[j][j])`` (negative: forgetting);
* forgetting ``F = 1/(T-1) Σ_{j<T-1} max_{l<T-1} R[l][j] − R[T-1][j]``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from harness.errors import ConfigError
from harness.tasks.base import KindTask, class_list, positive_int

if TYPE_CHECKING:
    import torch

    from harness.task import Split, Task

SCENARIOS = ("class", "task", "domain")


@dataclass(frozen=True)
class StreamSpec:
    """``experiences`` groups of classes, in ``order`` (default: ascending), in one ``scenario``."""

    experiences: int = 5
    scenario: str = "class"
    order: tuple[int, ...] | None = None


def parse(value: Any) -> StreamSpec:
    if value is True or value is None:
        return StreamSpec()
    if not isinstance(value, dict):
        raise ConfigError(f"stream: expected a mapping such as {{experiences: 5, scenario: class}}, got {value!r}")
    unknown = sorted(set(value) - {"experiences", "scenario", "order"})
    if unknown:
        raise ConfigError(f"stream: unknown key {unknown[0]!r} (known: experiences, scenario, order)")
    experiences = positive_int(value.get("experiences", 5), "stream: experiences")
    if experiences < 2:
        raise ConfigError("stream: experiences must be at least 2")
    scenario = value.get("scenario", "class")
    if scenario not in SCENARIOS:
        raise ConfigError(f"stream: unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
    order = class_list(value["order"], "stream: order") if "order" in value else None
    return StreamSpec(experiences, scenario, order)


@dataclass(frozen=True)
class StreamTask(KindTask):
    """An ordered stream of experiences; ``classes[i]``: the (original) classes of experience *i*.

    The core holds it with every test split; a method never receives it, only one experience's task
    at a time (:mod:`harness.phases.kinds`), so no earlier experience's data can reach it.
    """

    experiences: tuple[Task, ...]
    classes: tuple[tuple[int, ...], ...]
    scenario: str
    task_kind = "stream"

    @property
    def template(self) -> Task:
        return self.experiences[0].without_test()

    @property
    def name(self) -> str:
        return self.experiences[0].name.rpartition("/")[0]

    @property
    def has_test(self) -> bool:
        return self.experiences[0].has_test

    def without_test(self) -> StreamTask:
        return dataclasses.replace(self, experiences=tuple(e.without_test() for e in self.experiences))

    def to(self, device) -> StreamTask:
        return dataclasses.replace(self, experiences=tuple(e.to(device) for e in self.experiences))

    def sizes(self) -> dict[str, int]:
        out = {"experiences": len(self.experiences)}
        for e in self.experiences:
            for key, n in e.sizes().items():
                out[key] = out.get(key, 0) + n
        return out

    def __repr__(self) -> str:
        return f"StreamTask({self.name!r}, {self.scenario}-incremental, classes={list(self.classes)})"


def build(task: Task, spec: StreamSpec, data_seed: int = 0) -> StreamTask:
    """Deal the classes of ``task`` into the stream ``spec`` asks for."""
    import torch

    from harness.task import Split, Task

    order = spec.order or tuple(range(task.num_classes))
    if sorted(order) != list(range(task.num_classes)) and spec.order is not None:
        bad = [c for c in order if c >= task.num_classes]
        if bad:
            raise ConfigError(f"stream: order names class {bad[0]}, but {task.name} has {task.num_classes} classes")
    if len(order) % spec.experiences:
        raise ConfigError(f"stream: {len(order)} classes do not split into {spec.experiences} equal experiences")
    size = len(order) // spec.experiences
    groups = tuple(tuple(order[i * size:(i + 1) * size]) for i in range(spec.experiences))
    experiences = []
    for i, group in enumerate(groups):
        members = torch.tensor(group, device=task.device)
        position = torch.full((task.num_classes,), -1, dtype=torch.long, device=task.device)
        position[members] = torch.arange(len(group), device=task.device)

        def part(split: Split) -> Split:
            keep = torch.isin(split.y, members)
            y = split.y[keep]
            if spec.scenario == "domain":
                y = position[y]
            index = split.index[keep] if split.index is not None else None
            return Split(split.x[keep], y, index)

        num_classes = size if spec.scenario == "domain" else task.num_classes
        names = (tuple(f"{i}th of the pair" for i in range(size)) if spec.scenario == "domain"
                 else task.class_names)
        experiences.append(Task(
            name=f"{task.name}/experience{i}", kind=task.kind, num_classes=num_classes,
            input_shape=task.input_shape, train=part(task.train), val=part(task.val), test=part(task.test),
            class_names=names,
            meta={**task.meta, "stage": "experience", "experience": i, "experiences": spec.experiences,
                  "scenario": spec.scenario, "classes": list(group) if spec.scenario != "domain" else list(range(size))},
        ))
    return StreamTask(experiences=tuple(experiences), classes=groups, scenario=spec.scenario)


def experience_accuracy(probs: torch.Tensor, labels: torch.Tensor, classes: Sequence[int] | None) -> float:
    """Accuracy of one experience's predictions; with ``classes`` (task-incremental) the arg-max
    runs over those classes only, as a multi-headed network given the experience would answer."""
    import torch

    if classes is not None:
        mask = torch.full_like(probs, float("-inf"))
        mask[:, list(classes)] = 0.0
        probs = probs + mask
    return (probs.argmax(1) == labels.to(probs.device)).double().mean().item()


def average_accuracy(matrix: Sequence[Sequence[float]]) -> float:
    """``ACC``: mean accuracy over every experience after the last one."""
    last = matrix[-1]
    return sum(last) / len(last)


def backward_transfer(matrix: Sequence[Sequence[float]]) -> float:
    """``BWT``: mean change of each earlier experience's accuracy from just after learning it to the end."""
    t = len(matrix)
    return sum(matrix[-1][j] - matrix[j][j] for j in range(t - 1)) / (t - 1)


def forgetting(matrix: Sequence[Sequence[float]]) -> float:
    """Mean drop of each earlier experience from its best accuracy before the end to its final accuracy."""
    t = len(matrix)
    return sum(max(matrix[l][j] for l in range(t - 1)) - matrix[-1][j] for j in range(t - 1)) / (t - 1)


def stream_metrics(matrix: Sequence[Sequence[float]]) -> dict[str, float]:
    """The headline ``accuracy`` (ACC), ``bwt`` and ``forgetting`` of an accuracy matrix."""
    return {"accuracy": average_accuracy(matrix), "bwt": backward_transfer(matrix), "forgetting": forgetting(matrix)}
