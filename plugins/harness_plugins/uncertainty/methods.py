"""Methods whose point is the predictive distribution: MC dropout and deep ensembles.

* ``mc_dropout``: a network trained with dropout (the ERM recipe), evaluated with dropout kept on;
  the prediction is the mean of ``mc_samples`` stochastic passes (Gal & Ghahramani, ICML 2016).
  ``mc_samples: 0`` scores the same network deterministically (dropout off, weights as trained),
  so a suite can put both rows side by side; the inference throughput counts all passes.
* ``deep_ensemble``: ``members`` independently initialised networks, each with its own data order,
  predictions averaged (Lakshminarayanan et al., NeurIPS 2017); trained in one vectorised pass by
  :func:`harness_plugins.uncertainty.ensemble.train_members`. ``members: 1`` is the single network of the same recipe.

Both return their sampled predictions (``S × N × K``) as ``Predictions.members``, from which the
core reports the mutual information. Temperature scaling and shift/OOD scoring are the
core's (a suite's ``calibrate`` and ``shifts`` / ``ood`` keys) and apply to these and every method.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import Predictions, hookimpl
from harness.errors import ConfigError
from harness.info import MethodInfo
from harness.toolkit.augment import augment_from_config
from harness.toolkit.models import network_from_config
from harness.toolkit.recipes import fit_supervised
from harness.toolkit.train import OPTIMIZERS, TrainConfig, autocast, predict_proba, suggest_optimizer
from harness_plugins.uncertainty.ensemble import Members, train_members

KINDS = ("image", "tabular")
_NETWORK = {"model": "mlp", "hidden": 256, "batchnorm": True, "optimizer": "adamw", "lr": 2e-3,
            "weight_decay": 1e-4, "batch_size": 64}
MC_SAMPLES = 20
MEMBERS = 5


@hookimpl
def harness_methods() -> list[MethodInfo]:
    return [
        MethodInfo("mc_dropout", KINDS, "MC dropout: mean of stochastic forward passes with dropout kept on",
                   "Gal & Ghahramani, Dropout as a Bayesian Approximation, ICML 2016",
                   defaults={**_NETWORK, "dropout": 0.3, "grad_clip": 0.0, "augment": "none",
                             "mc_samples": MC_SAMPLES}),
        MethodInfo("deep_ensemble", KINDS, "deep ensemble: independently initialised networks, predictions averaged",
                   "Lakshminarayanan, Pritzel & Blundell, Simple and Scalable Predictive Uncertainty "
                   "Estimation using Deep Ensembles, NeurIPS 2017",
                   defaults={**_NETWORK, "dropout": 0.0, "augment": "none", "members": MEMBERS}),
    ]


@hookimpl
def harness_search_space(method: str, trial, task) -> dict[str, Any]:
    models = ["cnn", "mlp"] if task.kind == "image" else ["mlp"]
    cfg: dict[str, Any] = {"model": trial.suggest_categorical("model", models),
                           "batchnorm": trial.suggest_categorical("batchnorm", [True, False])}
    if cfg["model"] == "mlp":
        cfg["hidden"] = trial.suggest_categorical("hidden", [128, 256, 512])
    else:
        cfg["width"] = trial.suggest_categorical("width", [16, 32, 48])
    cfg.update(suggest_optimizer(trial, OPTIMIZERS))
    cfg["batch_size"] = trial.suggest_categorical("batch_size", [32, 64, 128])
    if task.kind == "image":
        cfg["augment"] = trial.suggest_categorical("augment", ["none", "light"])
    if method == "mc_dropout":
        # MC dropout needs dropout to sample from; the number of passes is a budget, not tuned.
        cfg["dropout"] = trial.suggest_float("dropout", 0.05, 0.5)
        cfg["grad_clip"] = trial.suggest_categorical("grad_clip", [0.0, 1.0, 5.0])
        cfg["mc_samples"] = trial.suggest_categorical("mc_samples", [MC_SAMPLES])
    else:
        cfg["dropout"] = trial.suggest_float("dropout", 0.0, 0.5)
        cfg["members"] = trial.suggest_categorical("members", [MEMBERS])
    return cfg


@dataclass
class DropoutNet:
    """A network trained with dropout and the number of stochastic passes to average at test time."""

    model: nn.Module
    samples: int


def _check_count(config: dict[str, Any], key: str, minimum: int) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key} must be an integer ≥ {minimum}, got {value!r}")
    return value


@hookimpl
def harness_fit(method: str, task, config: dict[str, Any], ctx):
    if method == "mc_dropout":
        samples = _check_count(config, "mc_samples", 0)
        if samples > 0 and not config.get("dropout", 0.0) > 0:
            raise ConfigError("mc_dropout with mc_samples > 0 needs dropout > 0")
        # The ERM recipe trains the network; only the evaluation differs.
        return DropoutNet(fit_supervised(task, config, ctx), samples)
    members = _check_count(config, "members", 1)
    x, y = task.train.x, task.train.y
    aug = augment_from_config(config.get("augment", "none"), task.meta.get("hflip", False)) if task.kind == "image" else None

    def step(forward, idx: torch.Tensor, progress: float) -> torch.Tensor:
        xb = x[idx]  # members × batch × …: each member its own examples
        if aug is not None:
            xb = aug(xb.flatten(0, 1)).view_as(xb)
        logits = forward(xb)
        # Sum over members of each member's mean loss: every member gets its own gradient.
        return F.cross_entropy(logits.flatten(0, 1), y[idx].flatten(), reduction="sum") / idx.shape[1]

    fitted = train_members(lambda: network_from_config(config, task), members, step, len(x),
                           TrainConfig.from_config(config, ctx, grad_clip=None), ctx,
                           val_x=task.val.x, val_y=task.val.y)
    ctx.extras["vectorised"] = int(fitted.vectorised)
    return fitted


@torch.no_grad()
def mc_dropout_probs(model: nn.Module, x: torch.Tensor, samples: int, ctx, batch_size: int = 4096) -> torch.Tensor:
    """``samples × N × K`` softmax outputs with only the dropout layers in training mode
    (BatchNorm keeps its running statistics). Each chunk runs all samples in one forward pass."""
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.train()
    chunk = max(1, batch_size // samples)
    outs = []
    for i in range(0, x.shape[0], chunk):
        xb = x[i:i + chunk]
        with autocast(ctx):
            logits = model(xb.repeat(samples, *([1] * (xb.ndim - 1)))).float()
        outs.append(logits.softmax(-1).view(samples, xb.shape[0], -1))
    model.eval()
    return torch.cat(outs, dim=1)


@hookimpl
def harness_evaluate(method: str, fitted, split, ctx) -> Predictions | torch.Tensor:
    if isinstance(fitted, Members):
        if len(fitted) == 1:
            return fitted.member_probs(split.x, ctx)[0]
        member_probs = fitted.member_probs(split.x, ctx)
    elif fitted.samples == 0:
        return predict_proba(fitted.model, split.x, ctx)
    else:
        member_probs = mc_dropout_probs(fitted.model, split.x, fitted.samples, ctx)
    return Predictions(member_probs.mean(0), members=member_probs)
