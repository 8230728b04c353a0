"""The multi-task methods' networks and losses over the shared loop."""
from __future__ import annotations

import dataclasses
import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.context import FitContext
from harness.task import Split, Task
from harness.toolkit.models import network_from_config
from harness.toolkit.train import TrainConfig, autocast, train


class MultiHead(nn.Module):
    """One trunk per head (``single_task``) or one shared by all, a linear head per label set, and
    the learnt log-variances of uncertainty weighting."""

    def __init__(self, config: dict[str, Any], task: Task, heads: dict[str, int], shared: bool):
        super().__init__()
        self.names = list(heads)
        nets = [network_from_config(config, dataclasses.replace(task, num_classes=k)) for k in heads.values()]
        self.trunks = nn.ModuleList([n.encoder for n in (nets[:1] if shared else nets)])
        self.heads = nn.ModuleDict({h: net.head for h, net in zip(heads, nets)})
        self.log_vars = nn.Parameter(torch.zeros(len(heads)))

    def forward(self, x: torch.Tensor, detach_trunk: bool = False) -> dict[str, torch.Tensor]:
        feats = [t(x) for t in self.trunks]
        if detach_trunk:
            feats = [f.detach() for f in feats]
        return {h: self.heads[h](feats[0 if len(feats) == 1 else i]) for i, h in enumerate(self.names)}


def _pcgrad(losses: list[torch.Tensor], shared: list[nn.Parameter], rng: random.Random) -> list[torch.Tensor]:
    """Yu et al.'s projection: for each task's gradient, remove its component along every other task's
    gradient (in random order) with which it conflicts; the projected gradients, summed."""
    grads = [torch.cat([g.flatten() for g in torch.autograd.grad(loss, shared, retain_graph=True)]) for loss in losses]
    total = torch.zeros_like(grads[0])
    for i, g in enumerate(grads):
        g = g.clone()
        others = [j for j in range(len(grads)) if j != i]
        rng.shuffle(others)
        for j in others:
            dot = g @ grads[j]
            if dot < 0:
                g -= dot / grads[j].pow(2).sum().clamp_min(1e-12) * grads[j]
        total += g
    out, start = [], 0
    for p in shared:
        out.append(total[start:start + p.numel()].view_as(p))
        start += p.numel()
    return out


def fit(method: str, task: Task, config: dict[str, Any], ctx: FitContext) -> MultiHead:
    heads = dict(task.meta["heads"])
    model = MultiHead(config, task, heads, shared=method != "single_task").to(ctx.device)
    x, y = task.train.x, task.train.y
    shared = list(model.trunks.parameters())
    rng = random.Random(ctx.seed)

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        xb, yb = x[idx], y[idx]
        if method != "pcgrad":
            out = model(xb)
            losses = torch.stack([F.cross_entropy(out[h], yb[:, t]) for t, h in enumerate(model.names)])
            if method == "uncertainty_weights":
                return (torch.exp(-model.log_vars) * losses + model.log_vars).sum()
            return losses.sum()
        # PCGrad: the trunk's gradient is the projected one (a surrogate whose gradient it is), the
        # heads train on their own losses over detached features; the value reported is the true loss.
        losses = [F.cross_entropy(o, yb[:, t]) for t, o in enumerate(model(xb).values())]
        projected = _pcgrad(losses, shared, rng)
        surrogate = sum((p * g.detach()).sum() for p, g in zip(shared, projected))
        head_loss = sum(F.cross_entropy(o, yb[:, t]) for t, o in enumerate(model(xb, detach_trunk=True).values()))
        true = sum(losses).detach()
        return surrogate - surrogate.detach() + head_loss - head_loss.detach() + true

    def val_fn() -> float:
        probs = evaluate(method, model, task.val, ctx)
        return sum((probs[h].argmax(1) == task.val.y[:, t]).float().mean().item()
                   for t, h in enumerate(model.names)) / len(model.names)

    train(model, step, len(x), TrainConfig.from_config({"optimizer": "adam", **config}, ctx), ctx, val_fn=val_fn)
    return model


def evaluate(method: str, model: MultiHead, split: Split, ctx: FitContext) -> dict[str, torch.Tensor]:
    model.eval()
    out: dict[str, list[torch.Tensor]] = {h: [] for h in model.names}
    with torch.no_grad(), autocast(ctx):
        for start in range(0, len(split), 2048):
            for h, logits in model(split.x[start:start + 2048]).items():
                out[h].append(logits.float().softmax(1))
    return {h: torch.cat(v) for h, v in out.items()}
