"""The supervised recipe shared by every method that trains one classifier with cross-entropy:
a network from its configuration, optional augmentation, label smoothing or mixup."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.context import FitContext
from harness.task import Task
from harness.toolkit.augment import augment_from_config
from harness.toolkit.models import network_from_config
from harness.toolkit.train import TrainConfig, train, val_accuracy


def mixup_loss(logits_fn, x: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on a convex mix of the batch with a shuffled copy, λ ~ Beta(α, α) (Zhang et al., 2018)."""
    # λ is drawn on the device so the step never waits for the host.
    lam = torch.distributions.Beta(alpha, alpha).sample((1,)).to(x.device)
    perm = torch.randperm(x.shape[0], device=x.device)
    logits = logits_fn(lam * x + (1 - lam) * x[perm])
    return (lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])).squeeze()


def fit_supervised(task: Task, config: dict[str, Any], ctx: FitContext, smoothing: float = 0.0,
                   mixup_alpha: float | None = None, model: nn.Module | None = None,
                   params: list | None = None) -> nn.Module:
    """Train ``network_from_config(config)`` (or ``model``, e.g. a pre-trained one to fine-tune) on
    ``task.train`` with the shared loop; validation accuracy drives early stopping, best-weight
    restoring and pruning. ``params``: optimiser parameter groups in place of all the model's
    parameters (e.g. layer-wise learning rates for fine-tuning)."""
    model = (model if model is not None else network_from_config(config, task)).to(ctx.device)
    x, y = task.train.x, task.train.y
    aug = augment_from_config(config.get("augment", "none"), task.meta.get("hflip", False)) if task.kind == "image" else None
    alpha = torch.tensor(float(mixup_alpha or 0.2), device=ctx.device)

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        xb, yb = x[idx], y[idx]
        if aug is not None:
            xb = aug(xb)
        if mixup_alpha is not None:
            return mixup_loss(model, xb, yb, alpha)
        return F.cross_entropy(model(xb), yb, label_smoothing=smoothing)

    train(model, step, len(x), TrainConfig.from_config(config, ctx), ctx, params=params,
          val_fn=lambda: val_accuracy(model, task.val, ctx))
    return model
