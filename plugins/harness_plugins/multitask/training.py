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
        self.task_weights = nn.Parameter(torch.ones(len(heads)))  # GradNorm's learnt loss weights

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


class DynamicWeightAverage:
    """Liu et al.'s weights: ``K softmax(r / T)`` of each task's rate of descent ``r_k`` = its mean
    loss over the last epoch / the one before; equal weights for the first two epochs."""

    def __init__(self, tasks: int, epochs: int, temperature: float):
        self.epochs, self.temperature = epochs, temperature
        self.sums = torch.zeros(tasks, dtype=torch.float64)
        self.means: list[torch.Tensor] = []
        self.epoch, self.steps = 0, 0

    def weights(self, progress: float) -> torch.Tensor:
        epoch = int(progress * self.epochs + 1e-9)  # the loop's epoch, from its progress
        if epoch != self.epoch and self.steps:
            self.means.append(self.sums / self.steps)
            self.sums, self.steps, self.epoch = torch.zeros_like(self.sums), 0, epoch
        if len(self.means) < 2:
            return torch.ones_like(self.sums)
        rate = self.means[-1] / self.means[-2].clamp_min(1e-12)
        return len(rate) * torch.softmax(rate / self.temperature, 0)

    def record(self, losses: torch.Tensor) -> None:
        # summed where the losses live: moving them to the host would sync the device every step
        self.sums = self.sums.to(losses.device) + losses.detach().double()
        self.steps += 1


def _gradnorm(model: MultiHead, losses: torch.Tensor, initial: torch.Tensor, alpha: float) -> torch.Tensor:
    """Chen et al.'s GradNorm: the loss ``Σ w_k L_k`` for the network, and for the weights ``w`` the
    gradient of ``Σ |w_k G_k − mean(G) r_k^α|`` (``G_k``: the norm of ``∇ L_k`` on the last shared
    layer's weight; ``r_k``: ``L_k / L_k(0)`` over its mean, the target held constant)."""
    weights = model.task_weights
    last = [p for p in model.trunks[0].parameters() if p.dim() > 1][-1]
    norms = torch.stack([torch.autograd.grad(loss, last, retain_graph=True)[0].norm() for loss in losses])
    with torch.no_grad():
        scaled = weights * norms
        rates = losses.detach() / initial
        target = scaled.mean() * (rates / rates.mean()) ** alpha
        grad = torch.sign(scaled - target) * norms
    surrogate = (weights * grad).sum()  # its gradient on ``w`` is GradNorm's; its value is removed
    return (weights.detach() * losses).sum() + surrogate - surrogate.detach()


def fit(method: str, task: Task, config: dict[str, Any], ctx: FitContext) -> MultiHead:
    heads = dict(task.meta["heads"])
    model = MultiHead(config, task, heads, shared=method != "single_task").to(ctx.device)
    x, y = task.train.x, task.train.y
    shared = list(model.trunks.parameters())
    rng = random.Random(ctx.seed)
    cfg = TrainConfig.from_config({"optimizer": "adam", **config}, ctx)
    dwa = DynamicWeightAverage(len(heads), cfg.epochs, float(config.get("dwa_temperature", 2.0)))
    initial: list[torch.Tensor] = []  # GradNorm: the first batch's losses

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        xb, yb = x[idx], y[idx]
        if method != "pcgrad":
            out = model(xb)
            losses = torch.stack([F.cross_entropy(out[h], yb[:, t]) for t, h in enumerate(model.names)])
            if method == "uncertainty_weights":
                return (torch.exp(-model.log_vars) * losses + model.log_vars).sum()
            if method == "dwa":
                weights = dwa.weights(progress).to(losses)
                dwa.record(losses)
                return (weights * losses).sum()
            if method == "gradnorm":
                with torch.no_grad():  # the weights stay positive and sum to the number of tasks
                    model.task_weights.clamp_(min=1e-3)
                    model.task_weights.mul_(len(heads) / model.task_weights.sum())
                if not initial:
                    initial.append(losses.detach())
                return _gradnorm(model, losses, initial[0], float(config.get("gradnorm_alpha", 1.5)))
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

    train(model, step, len(x), cfg, ctx, val_fn=val_fn)
    return model


def evaluate(method: str, model: MultiHead, split: Split, ctx: FitContext) -> dict[str, torch.Tensor]:
    model.eval()
    out: dict[str, list[torch.Tensor]] = {h: [] for h in model.names}
    with torch.no_grad(), autocast(ctx):
        for start in range(0, len(split), 2048):
            for h, logits in model(split.x[start:start + 2048]).items():
                out[h].append(logits.float().softmax(1))
    return {h: torch.cat(v) for h, v in out.items()}
