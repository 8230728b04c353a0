"""Supervised training: ERM, mixup and label smoothing over the shared toolkit.

* ``erm``: empirical risk minimisation with cross-entropy; the optimiser (SGD, SGD+momentum,
  Adagrad, RMSprop, Adam, AdamW), learning rate, weight decay, batch size, BatchNorm on/off,
  gradient clipping and augmentation are all in the search space.
* ``mixup``: train on convex combinations of pairs of examples and of their labels, λ ~ Beta(α, α)
  (Zhang et al., ICLR 2018).
* ``label_smoothing``: cross-entropy against labels smoothed by α towards uniform (Szegedy et al., 2016).
* ``vit``: a small vision transformer (timm's ``VisionTransformer``) trained from scratch on the
  image task (Dosovitskiy et al., ICLR 2021). Patch size, depth, width and heads are in the space;
  with no convolutional prior it is given what the ViT recipes give it instead: random shifts
  (``augment: shift``), optional mixup, AdamW with weight decay, warm-up and a cosine schedule.
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

# timm's ViT-Tiny definition rebuilt at the task's image size; the keys below replace its shape.
VIT_DEFAULTS = {"model": "timm:vit_tiny_patch16_224", "patch_size": 7, "depth": 4, "embed_dim": 96, "num_heads": 4,
                "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "batch_size": 64, "grad_clip": 1.0,
                "warmup_epochs": 2, "augment": "shift", "mixup": 0.0}


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
        MethodInfo("vit", ("image",), "a small vision transformer trained from scratch: patch embedding, "
                   "transformer blocks, class token; random shifts and optional mixup",
                   "Dosovitskiy et al., An Image is Worth 16x16 Words: Transformers for Image Recognition "
                   "at Scale, ICLR 2021", defaults=VIT_DEFAULTS),
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


def suggest_vit(trial) -> dict[str, Any]:
    """A ViT's space: patch size (28 = 4·7, so 49 or 16 tokens), depth, width, heads, the AdamW
    recipe, shifts and mixup (``mixup`` 0 is off)."""
    return {
        "model": VIT_DEFAULTS["model"],
        "patch_size": trial.suggest_categorical("patch_size", [4, 7]),
        "depth": trial.suggest_int("depth", 2, 6, step=2),
        "embed_dim": trial.suggest_categorical("embed_dim", [64, 96, 128]),
        "num_heads": trial.suggest_categorical("num_heads", [2, 4]),
        "optimizer": "adamw",
        "lr": trial.suggest_float("lr", 2e-4, 3e-3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-3, 0.1, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
        "grad_clip": 1.0,
        "warmup_epochs": trial.suggest_categorical("warmup_epochs", [0, 2, 5]),
        "augment": trial.suggest_categorical("augment", ["shift", "light"]),
        "mixup": trial.suggest_categorical("mixup", [0.0, 0.2]),
    }


@hookimpl
def harness_search_space(method: str, trial, task) -> dict[str, Any]:
    if method == "vit":
        return suggest_vit(trial)
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
    if method == "vit":
        return fit_supervised(task, config, ctx, mixup_alpha=float(config.get("mixup", 0.0)) or None)
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
