"""Supervised training: ERM, mixup and label smoothing over the shared toolkit.

* ``erm``: empirical risk minimisation with cross-entropy; the optimiser (SGD, SGD+momentum,
  Adagrad, RMSprop, Adam, AdamW), learning rate, weight decay, batch size, BatchNorm on/off,
  gradient clipping and augmentation are all in the search space.
* ``mixup``: train on convex combinations of pairs of examples and of their labels, λ ~ Beta(α, α)
  (Zhang et al., ICLR 2018).
* ``label_smoothing``: cross-entropy against labels smoothed by α towards uniform (Szegedy et al., 2016).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from harness import hookimpl
from harness.augment import augment_from_config
from harness.info import MethodInfo
from harness.models import create_model
from harness.train import OPTIMIZERS, TrainConfig, predict_proba, suggest_optimizer, train, val_accuracy

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


def build_network(config: dict[str, Any], task):
    kwargs = {"batchnorm": config.get("batchnorm", True), "dropout": config.get("dropout", 0.0)}
    if config.get("model", "mlp") == "mlp":
        kwargs["hidden"] = config.get("hidden", 256)
    else:
        kwargs["width"] = config.get("width", 32)
    return create_model(config.get("model", "mlp"), task, **kwargs)


def _mixup_loss(logits_fn, x, y, alpha: float) -> torch.Tensor:
    # λ is drawn on the device so the step never waits for the host.
    lam = torch.distributions.Beta(alpha, alpha).sample((1,)).to(x.device)
    perm = torch.randperm(x.shape[0], device=x.device)
    logits = logits_fn(lam * x + (1 - lam) * x[perm])
    return lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])


@hookimpl
def harness_fit(method: str, task, config: dict[str, Any], ctx):
    model = build_network(config, task).to(ctx.device)
    x, y = task.train.x, task.train.y
    aug = augment_from_config(config.get("augment", "none"), task.meta.get("hflip", False)) if task.kind == "image" else None
    smoothing = config.get("smoothing", 0.0) if method == "label_smoothing" else 0.0
    alpha = torch.tensor(float(config.get("alpha", 0.2)), device=ctx.device)

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        xb, yb = x[idx], y[idx]
        if aug is not None:
            xb = aug(xb)
        if method == "mixup":
            return _mixup_loss(model, xb, yb, alpha).squeeze()
        return F.cross_entropy(model(xb), yb, label_smoothing=smoothing)

    train(model, step, len(x), TrainConfig.from_config(config, ctx), ctx,
          val_fn=lambda: val_accuracy(model, task.val, ctx))
    return model


@hookimpl
def harness_evaluate(method: str, fitted, split, ctx) -> torch.Tensor:
    return predict_proba(fitted, split.x, ctx)
