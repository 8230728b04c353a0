"""A third-party continual method: nearest class mean over the classes seen so far (a real
continual learner: a class mean, once computed, is never overwritten), instrumented for the tests.

``SEEN``: for every ``harness_fit`` call, the labels in ``task.train`` and whether ``task.test`` was
withheld, so a test can check that one experience's data, and only it, reaches the method.
"""
from __future__ import annotations

import torch

from harness import MethodInfo, hookimpl

SEEN: list[dict] = []


@hookimpl
def harness_methods():
    return [MethodInfo("stream_means", ("image", "tabular"), "nearest class mean, class means kept over the stream",
                       defaults={"temperature": 1.0}, tasks=("stream",))]


@hookimpl
def harness_search_space(method, trial, task):
    return {"temperature": trial.suggest_float("temperature", 0.1, 10.0, log=True)}


@hookimpl
def harness_fit(method, task, config, ctx):
    try:
        task.test.x
        withheld = False
    except AttributeError:
        withheld = True
    SEEN.append({"labels": sorted(set(task.train.y.tolist())), "withheld": withheld,
                 "experience": task.meta["experience"], "previous": ctx.previous is not None})
    means = dict(ctx.previous or {})
    x = task.train.x.flatten(1)
    for c in task.train.y.unique().tolist():
        means[c] = x[task.train.y == c].mean(0)
    ctx.samples_seen += len(x)
    means["_k"], means["_t"] = task.num_classes, config["temperature"]
    return means


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    k, t = fitted["_k"], fitted["_t"]
    x = split.x.flatten(1)
    logits = torch.full((len(x), k), -1e9)
    for c, mean in fitted.items():
        if isinstance(c, int):
            logits[:, c] = -torch.cdist(x, mean[None]).squeeze(1) / t
    return logits.softmax(1)
