"""Search-space pieces and default settings the families share, without torch: a plugin's
``harness_search_space`` and ``MethodInfo.defaults`` use them while plugins are only being listed."""
from __future__ import annotations

from typing import Any, Iterable

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")

# Default learning rates per optimiser, log-uniform ranges a search space samples from.
LR_RANGES = {
    "sgd": (1e-3, 0.5), "momentum": (1e-3, 0.3), "nesterov": (1e-3, 0.3), "adagrad": (1e-3, 0.3),
    "rmsprop": (1e-4, 1e-2), "adam": (1e-4, 3e-2), "adamw": (1e-4, 3e-2),
}

# Self-supervised and supervised pre-training (harness.toolkit.pretrain), and the linear probe after it.
PRETRAIN_DEFAULTS: dict[str, Any] = {
    "pretrain_epochs": 20, "pretrain_lr": 2e-3, "pretrain_batch_size": 256, "pretrain_weight_decay": 1e-5,
    "temperature": 0.2, "proj_dim": 64, "views": "medium", "ema_decay": 0.99,
}
PROBE_DEFAULTS: dict[str, Any] = {"probe_lr": 1e-2, "probe_weight_decay": 1e-4, "probe_epochs": 60,
                                  "probe_batch_size": 256}
VIEW_STRENGTHS = ("light", "medium", "strong")


def suggest_optimizer(trial, optimizers: Iterable[str] = ("adamw", "adam", "momentum"), prefix: str = "") -> dict[str, Any]:
    """The optimiser part of a search space: optimiser, its learning rate, weight decay."""
    name = trial.suggest_categorical(f"{prefix}optimizer", list(optimizers))
    lo, hi = LR_RANGES[name]
    return {
        "optimizer": name,
        "lr": trial.suggest_float(f"{prefix}lr", lo, hi, log=True),
        "weight_decay": trial.suggest_float(f"{prefix}weight_decay", 1e-6, 1e-2, log=True),
    }


def suggest_probe(trial) -> dict[str, Any]:
    """The linear-probe part of a search space."""
    return {
        "probe_lr": trial.suggest_float("probe_lr", 1e-3, 5e-2, log=True),
        "probe_weight_decay": trial.suggest_float("probe_weight_decay", 1e-6, 1e-1, log=True),
        "probe_epochs": trial.suggest_int("probe_epochs", 30, 120, step=30),
    }
