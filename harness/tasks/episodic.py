"""Episodic few-shot learning: N-way K-shot episodes drawn from classes held out of meta-training.

The classes of a data set are split three ways: ``meta_train`` (a method meta-trains on their train
split, with their val split for early stopping), ``meta_val`` (tuning episodes; by default the
val split of the meta-train classes, when the data set has too few classes to hold out a third set)
and ``meta_test`` (test episodes, drawn from every example of those classes: none was seen in
meta-training). An episode takes ``ways`` of the pool's classes, ``shot`` labelled support examples
and ``queries`` query examples of each, labelled 0..ways-1 in a random order. A row's result is
the mean query accuracy over ``test_episodes`` episodes per shot setting, with its 95 % normal
confidence half-width ``1.96 · std / √episodes`` (the convention of the few-shot literature).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from harness.errors import ConfigError
from harness.tasks.base import KindTask, class_list, positive_int

if TYPE_CHECKING:
    import torch

    from harness.task import Split, Task

KEYS = ("ways", "shots", "queries", "meta_train", "meta_val", "meta_test", "test_episodes", "val_episodes")


@dataclass(frozen=True)
class EpisodeSpec:
    ways: int
    shots: tuple[int, ...]
    meta_train: tuple[int, ...]
    meta_test: tuple[int, ...]
    meta_val: tuple[int, ...] | None = None
    queries: int = 15
    test_episodes: int = 600
    val_episodes: int = 100


def parse(value: Any) -> EpisodeSpec:
    if not isinstance(value, dict):
        raise ConfigError(f"episodes: expected a mapping such as {{ways: 5, shots: [1, 5], meta_train: [...], "
                          f"meta_test: [...]}}, got {value!r}")
    unknown = sorted(set(value) - set(KEYS))
    if unknown:
        raise ConfigError(f"episodes: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    for key in ("meta_train", "meta_test"):
        if key not in value:
            raise ConfigError(f"episodes: {key} (a list of classes) is required")
    shots = value.get("shots", [1, 5])
    shots = [shots] if isinstance(shots, int) else shots
    if not isinstance(shots, list) or not shots:
        raise ConfigError(f"episodes: shots must be a number or a list of numbers, got {shots!r}")
    spec = EpisodeSpec(
        ways=positive_int(value.get("ways", 5), "episodes: ways"),
        shots=tuple(positive_int(s, "episodes: shots") for s in shots),
        meta_train=class_list(value["meta_train"], "episodes: meta_train"),
        meta_test=class_list(value["meta_test"], "episodes: meta_test"),
        meta_val=class_list(value["meta_val"], "episodes: meta_val") if "meta_val" in value else None,
        queries=positive_int(value.get("queries", 15), "episodes: queries"),
        test_episodes=positive_int(value.get("test_episodes", 600), "episodes: test_episodes"),
        val_episodes=positive_int(value.get("val_episodes", 100), "episodes: val_episodes"),
    )
    sets = [set(spec.meta_train), set(spec.meta_test), set(spec.meta_val or ())]
    if sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2]:
        raise ConfigError("episodes: meta_train, meta_val and meta_test must not share a class")
    if spec.ways < 2 or spec.ways > len(spec.meta_test) or (spec.meta_val and spec.ways > len(spec.meta_val)):
        raise ConfigError(f"episodes: {spec.ways}-way episodes need at least {spec.ways} classes in "
                          "meta_test (and meta_val) and at least 2 ways")
    return spec


@dataclass(frozen=True)
class EpisodicTask(KindTask):
    """Meta-training data, and the pools tuning and test episodes are drawn from.

    ``meta_train``: a Task over the meta-train classes (relabelled 0..C-1) without a test split;
    ``val_pool`` / ``test_pool``: labelled pools of held-out classes (relabelled 0..), the test pool
    ``None`` where it is withheld.
    """

    meta_train: Task
    val_pool: Split
    test_pool: Split | None
    spec: EpisodeSpec
    task_kind = "episodic"

    @property
    def template(self) -> Task:
        return self.meta_train

    @property
    def has_test(self) -> bool:
        return self.test_pool is not None

    def without_test(self) -> EpisodicTask:
        return dataclasses.replace(self, test_pool=None)

    def to(self, device) -> EpisodicTask:
        return dataclasses.replace(self, meta_train=self.meta_train.to(device), val_pool=self.val_pool.to(device),
                                   test_pool=self.test_pool.to(device) if self.test_pool is not None else None)

    def sizes(self) -> dict[str, int]:
        out = {**self.meta_train.sizes(), "n_val": len(self.val_pool)}
        if self.test_pool is not None:
            out["n_test"] = len(self.test_pool)
        return out

    def __repr__(self) -> str:
        s = self.spec
        return (f"EpisodicTask({self.name!r}, {s.ways}-way {list(s.shots)}-shot, meta-train {list(s.meta_train)}, "
                f"meta-test {list(s.meta_test)})")


def build(task: Task, spec: EpisodeSpec, data_seed: int = 0) -> EpisodicTask:
    import torch

    from harness.task import Split, Task

    named = [*spec.meta_train, *spec.meta_test, *(spec.meta_val or ())]
    if max(named) >= task.num_classes:
        raise ConfigError(f"episodes: class {max(named)} is not one of the {task.num_classes} classes of {task.name}")

    def pick(splits: list[Split], classes: tuple[int, ...]) -> Split:
        relabel = torch.full((task.num_classes,), -1, dtype=torch.long, device=task.device)
        relabel[list(classes)] = torch.arange(len(classes), device=task.device)
        xs, ys = [], []
        for s in splits:
            keep = relabel[s.y] >= 0
            xs.append(s.x[keep])
            ys.append(relabel[s.y[keep]])
        return Split(torch.cat(xs), torch.cat(ys))

    meta_train = Task(
        name=task.name, kind=task.kind, num_classes=len(spec.meta_train), input_shape=task.input_shape,
        train=pick([task.train], spec.meta_train), val=pick([task.val], spec.meta_train),
        class_names=tuple(task.class_names[c] for c in spec.meta_train),
        meta={**task.meta, "stage": "meta-train", "ways": spec.ways, "shots": list(spec.shots),
              "queries": spec.queries},
    )
    val_pool = (pick([task.train, task.val, task.test], spec.meta_val) if spec.meta_val
                else pick([task.val], spec.meta_train))
    test_pool = pick([task.train, task.val, task.test], spec.meta_test)
    need = max(spec.shots) + spec.queries
    for name, pool in (("meta-test", test_pool), ("meta-val", val_pool)):
        fewest = int(torch.bincount(pool.y).min().item())
        if fewest < need:
            raise ConfigError(f"episodes: a {name} class has {fewest} examples, fewer than "
                              f"{max(spec.shots)} shots + {spec.queries} queries")
    return EpisodicTask(meta_train=meta_train, val_pool=val_pool, test_pool=test_pool, spec=spec)


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot episode: labelled ``support`` and ``query`` splits (labels 0..ways-1)."""

    support: Split
    query: Split


def episodes(pool: Split, ways: int, shot: int, queries: int, count: int, seed: int) -> Iterator[Episode]:
    """``count`` episodes drawn from ``pool`` by a generator seeded with ``seed`` (the same episodes
    for every method of a table)."""
    import torch

    from harness.task import Split

    g = torch.Generator().manual_seed(seed)
    y = pool.y.cpu()
    by_class = [torch.nonzero(y == c).squeeze(1) for c in range(int(y.max()) + 1)]
    by_class = [ix for ix in by_class if len(ix) >= shot + queries]
    for _ in range(count):
        chosen = torch.randperm(len(by_class), generator=g)[:ways]
        support, query = [], []
        for c in chosen.tolist():
            ix = by_class[c][torch.randperm(len(by_class[c]), generator=g)[:shot + queries]]
            support.append(ix[:shot])
            query.append(ix[shot:])
        s = torch.cat(support).to(pool.x.device)
        q = torch.cat(query).to(pool.x.device)
        labels = torch.arange(ways, device=pool.x.device)
        yield Episode(Split(pool.x[s], labels.repeat_interleave(shot)),
                      Split(pool.x[q], labels.repeat_interleave(queries)))


def episode_task(template: Task, support: Split, ways: int, shot: int, index: int) -> Task:
    """What ``harness_fit`` receives to adapt to one episode: the support set as ``train``."""
    from harness.task import Split, Task

    empty = Split(support.x[:0], support.y[:0])
    return Task(name=f"{template.name}/episode{index}", kind=template.kind, num_classes=ways,
                input_shape=template.input_shape, train=support, val=empty,
                meta={**template.meta, "stage": "episode", "ways": ways, "shot": shot})


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the 95 % normal half-width ``1.96 · std / √n``."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, 1.96 * math.sqrt(var / n)
