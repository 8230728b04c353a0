"""Nearest-centroid methods whose results vary with the seed: each fit sees a seeded half of the
training split. ``seeded_twin`` is ``seeded`` under another name (the same result on every seed);
``seeded_other`` draws its halves from another stream (no true difference, a different result per
seed); ``seeded_blurred`` adds seeded noise to its centroids (far worse on every seed).
"""
from __future__ import annotations

import torch

from harness import MethodInfo, hookimpl

NAMES = ("seeded", "seeded_twin", "seeded_other", "seeded_blurred")


@hookimpl
def harness_methods():
    return [MethodInfo(name, ("image", "tabular"), "nearest class centroid of a seeded half of the training split",
                       defaults={"temperature": 1.0}) for name in NAMES]


@hookimpl
def harness_search_space(method, trial, task):
    return {"temperature": trial.suggest_float("temperature", 0.5, 2.0, log=True)}


@hookimpl
def harness_fit(method, task, config, ctx):
    g = torch.Generator().manual_seed(ctx.seed + (10_000 if method == "seeded_other" else 0))
    x, y = task.train.x.flatten(1), task.train.y
    keep = torch.randperm(len(x), generator=g)[: len(x) // 2]
    x, y = x[keep], y[keep]
    centroids = torch.stack([x[y == c].mean(0) for c in range(task.num_classes)])
    if method == "seeded_blurred":
        centroids = centroids + 2.5 * torch.randn(centroids.shape, generator=g)
    return centroids, config["temperature"]


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    centroids, temperature = fitted
    return (-torch.cdist(split.x.flatten(1), centroids) / temperature).softmax(1)
