"""Supervised training: ERM, mixup and label smoothing over the shared toolkit.

* ``erm``: empirical risk minimisation with cross-entropy; the optimiser (SGD, SGD+momentum,
  Adagrad, RMSprop, Adam, AdamW), learning rate, weight decay, batch size, BatchNorm on/off,
  gradient clipping and augmentation are all in the search space.
* ``mixup``: train on convex combinations of pairs of examples and of their labels, λ ~ Beta(α, α)
  (Zhang et al., ICLR 2018).
* ``label_smoothing``: cross-entropy against labels smoothed by α towards uniform (Szegedy et al., 2016).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness import hookimpl
from harness.info import MethodInfo
from harness.toolkit.spaces import OPTIMIZERS, suggest_optimizer

if TYPE_CHECKING:
    import torch

KINDS = ("image", "tabular", "graph")
_COMMON_DEFAULTS = {"model": "mlp", "optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "batch_size": 64,
                    "batchnorm": True, "grad_clip": 0.0, "augment": "none", "hidden": 256, "dropout": 0.1}


@hookimpl
def harness_methods() -> list[MethodInfo]:
    return [
        MethodInfo("erm", KINDS, "empirical risk minimisation (cross-entropy) with a tuned optimiser",
                   "Vapnik, 1992", defaults=_COMMON_DEFAULTS),
        MethodInfo("mixup", ("image", "tabular"), "mixup: train on convex mixes of example pairs and their labels",
                   "Zhang et al., mixup: Beyond Empirical Risk Minimization, ICLR 2018",
                   defaults={**_COMMON_DEFAULTS, "alpha": 0.2}),
        MethodInfo("label_smoothing", ("image", "tabular"), "cross-entropy against smoothed labels",
                   "Szegedy et al., Rethinking the Inception Architecture, CVPR 2016",
                   defaults={**_COMMON_DEFAULTS, "smoothing": 0.1}),
    ]


def suggest_network(trial, task) -> dict[str, Any]:
    """The architecture part of a supervised space: model family and its width, BatchNorm, dropout."""
    models = ["cnn", "mlp"] if task.kind == "image" else ["mlp"]
    cfg: dict[str, Any] = {"model": trial.suggest_categorical("model", models)}
    cfg["batchnorm"] = trial.suggest_categorical("batchnorm", [True, False])
    cfg["dropout"] = trial.suggest_float("dropout", 0.0, 0.5)
    if cfg["model"] == "mlp":
        cfg["hidden"] = trial.suggest_categorical("hidden", [128, 256, 512])
    else:
        cfg["width"] = trial.suggest_categorical("width", [16, 32, 48])
    return cfg


@hookimpl
def harness_search_space(method: str, trial, task) -> dict[str, Any]:
    cfg = suggest_network(trial, task)
    cfg.update(suggest_optimizer(trial, OPTIMIZERS))
    cfg["batch_size"] = trial.suggest_categorical("batch_size", [32, 64, 128])
    cfg["grad_clip"] = trial.suggest_categorical("grad_clip", [0.0, 1.0, 5.0])
    if task.kind == "image":
        cfg["augment"] = trial.suggest_categorical("augment", ["none", "light", "strong"])
    if method == "mixup":
        cfg["alpha"] = trial.suggest_float("alpha", 0.05, 1.0, log=True)
    elif method == "label_smoothing":
        cfg["smoothing"] = trial.suggest_float("smoothing", 0.01, 0.3, log=True)
    return cfg


@hookimpl
def harness_fit(method: str, task, config: dict[str, Any], ctx):
    from harness.toolkit.recipes import fit_supervised  # torch loads with the first fit, not with the listing

    if method == "mixup":
        return fit_supervised(task, config, ctx, mixup_alpha=float(config.get("alpha", 0.2)))
    smoothing = config.get("smoothing", 0.0) if method == "label_smoothing" else 0.0
    return fit_supervised(task, config, ctx, smoothing=smoothing)


@hookimpl
def harness_evaluate(method: str, fitted, split, ctx) -> torch.Tensor:
    from harness.toolkit.train import predict_proba

    return predict_proba(fitted, split.x, ctx)


@hookimpl
def harness_differentiable(method: str, fitted, ctx):
    from harness.toolkit.train import logits_view

    return logits_view(fitted)
