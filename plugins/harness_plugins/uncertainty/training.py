"""How the uncertainty methods train and predict; :mod:`harness_plugins.uncertainty.methods`' hooks import this on first use."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import Predictions
from harness.errors import ConfigError
from harness.toolkit.augment import augment_from_config
from harness.toolkit.models import network_from_config
from harness.toolkit.recipes import fit_supervised
from harness.toolkit.train import TrainConfig, autocast, logits_view, mean_probability_view, predict_proba
from harness_plugins.uncertainty.ensemble import Members, train_members


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


def fit(method: str, task, config: dict[str, Any], ctx):
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


def evaluate(method: str, fitted, split, ctx) -> Predictions | torch.Tensor:
    if isinstance(fitted, Members):
        if len(fitted) == 1:
            return fitted.member_probs(split.x, ctx)[0]
        member_probs = fitted.member_probs(split.x, ctx)
    elif fitted.samples == 0:
        return predict_proba(fitted.model, split.x, ctx)
    else:
        member_probs = mc_dropout_probs(fitted.model, split.x, fitted.samples, ctx)
    return Predictions(member_probs.mean(0), members=member_probs)



def differentiable(fitted):
    """The averaged predictor as a differentiable function: log of the mean member (or MC-sample)
    probability; with dropout sampling each call draws fresh masks, as the prediction does."""
    if isinstance(fitted, Members):
        if fitted.stacked is not None:
            fitted.stacked.eval()
            return mean_probability_view(fitted.stacked.forward_shared)
        for m in fitted.modules:
            m.eval()
        return mean_probability_view(lambda x: torch.stack([m(x) for m in fitted.modules]))
    if fitted.samples == 0:
        return logits_view(fitted.model)
    model, samples = fitted.model, fitted.samples

    def sampled(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        for m in model.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.train()
        return model(x.repeat(samples, *([1] * (x.ndim - 1)))).view(samples, x.shape[0], -1)

    return mean_probability_view(sampled)
