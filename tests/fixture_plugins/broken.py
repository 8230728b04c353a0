"""Methods that break the contract in each way the core must catch."""
from __future__ import annotations

import torch

from harness import MethodInfo, hookimpl
from harness.toolkit.models import create_model
from harness.toolkit.train import TrainConfig, train


@hookimpl
def harness_methods():
    return [
        MethodInfo("raises", ("image", "tabular"), "raises in fit"),
        MethodInfo("bad_shape", ("image", "tabular"), "returns probabilities of the wrong shape"),
        MethodInfo("not_normalised", ("image", "tabular"), "returns rows that do not sum to one"),
        MethodInfo("nan_loss", ("image", "tabular"), "its loss becomes NaN"),
    ]


@hookimpl
def harness_search_space(method, trial, task):
    return {"lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True)}


@hookimpl
def harness_fit(method, task, config, ctx):
    if method == "raises":
        raise RuntimeError("deliberate failure in fit")
    if method == "nan_loss":
        model = create_model("mlp", task, hidden=8, depth=1)
        train(model, lambda idx, p: model(task.train.x[idx]).sum() * float("nan"), len(task.train),
              TrainConfig(epochs=1, batch_size=256), ctx)
    return method


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    n = len(split)
    if method == "bad_shape":
        return torch.full((n, 3), 1 / 3)
    return torch.full((n, 10), 0.2)
