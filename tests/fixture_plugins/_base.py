"""The nearest-centroid learner the broken fixture plugins build on, so that each breaks exactly one rule."""
from __future__ import annotations

from typing import Callable

import torch

from harness import MethodInfo, hookimpl


def fit(task, temperature: float = 1.0):
    x = task.train.x.flatten(1)
    return torch.stack([x[task.train.y == c].mean(0) for c in range(task.num_classes)]), float(temperature)


def probs(fitted, split) -> torch.Tensor:
    centroids, temperature = fitted
    return (-torch.cdist(split.x.flatten(1), centroids) / temperature).softmax(1)


def broken_hooks(name: str, description: str, spoil: Callable[[torch.Tensor, object], torch.Tensor]):
    """The four hooks of a nearest-centroid method ``name`` whose probabilities ``spoil(p, split)`` breaks."""

    @hookimpl
    def harness_methods():
        return [MethodInfo(name, ("image", "tabular"), description)]

    @hookimpl
    def harness_search_space(method, trial, task):
        return {"temperature": trial.suggest_float("temperature", 0.1, 10.0, log=True)}

    @hookimpl
    def harness_fit(method, task, config, ctx):
        return fit(task, config["temperature"])

    @hookimpl
    def harness_evaluate(method, fitted, split, ctx):
        return spoil(probs(fitted, split), split)

    return harness_methods, harness_search_space, harness_fit, harness_evaluate
