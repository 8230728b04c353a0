"""The continual methods' training: one recipe over the shared loop, with a penalty per method."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.context import FitContext
from harness.errors import ConfigError
from harness.task import Split, Task
from harness.toolkit.models import network_from_config
from harness.toolkit.train import TrainConfig, build_optimizer, predict_proba, train

KD_TEMPERATURE = 2.0  # Li & Hoiem's distillation temperature
FISHER_EXAMPLES = 200  # examples per experience for EWC's Fisher estimate
FISHER_KINDS = ("expected", "predicted")


@dataclass
class ContinualState:
    """What a continual method carries from one experience to the next."""

    model: nn.Module
    scenario: str
    memory_x: list[torch.Tensor] = field(default_factory=list)  # replay / joint examples
    memory_y: list[torch.Tensor] = field(default_factory=list)
    memory_mask: list[torch.Tensor] = field(default_factory=list)  # the outputs each example may use
    fisher: dict[str, torch.Tensor] | None = None  # EWC: accumulated diagonal Fisher
    anchor: dict[str, torch.Tensor] | None = None  # EWC: the weights after the previous experience
    teacher: nn.Module | None = None  # LwF: the network after the previous experience
    teacher_mask: torch.Tensor | None = None  # LwF: the outputs the teacher has learnt
    optimizer: torch.optim.Optimizer | None = None  # with ``carry_optimizer``: one Adam for the whole stream


def output_mask(task: Task, n: int) -> torch.Tensor:
    """``n × K`` boolean: the outputs a training example may use — all of them, except in the
    task-incremental scenario, where each experience trains its own head (its classes only)."""
    mask = torch.ones(n, task.num_classes, dtype=torch.bool, device=task.device)
    if task.meta.get("scenario") == "task":
        mask[:] = False
        mask[:, task.meta["classes"]] = True
    return mask


def masked(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(~mask, float("-inf"))


def fit(method: str, task: Task, config: dict[str, Any], ctx: FitContext) -> ContinualState:
    state: ContinualState | None = ctx.previous
    if state is None:
        config = {**config, "batchnorm": bool(config.get("batchnorm", False))}
        state = ContinualState(network_from_config(config, task).to(ctx.device), task.meta.get("scenario", "class"))
    model = state.model
    x, y = task.train.x, task.train.y
    mask = output_mask(task, len(x))
    if method == "joint":  # cumulative: this experience joins every earlier one
        _remember(state, x, y, mask, per_class=None)
        x, y, mask = torch.cat(state.memory_x), torch.cat(state.memory_y), torch.cat(state.memory_mask)
    memory = (torch.cat(state.memory_x), torch.cat(state.memory_y), torch.cat(state.memory_mask)) \
        if method == "replay" and state.memory_x else None
    penalty = _penalty(method, state, config)
    gen = ctx.generator(offset=17)

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        xb, yb, mb = x[idx], y[idx], mask[idx]
        logits = model(xb)
        loss = F.cross_entropy(masked(logits, mb), yb)
        if memory is not None:  # a batch of the same size from the memory
            pick = torch.randint(0, len(memory[0]), (len(idx),), device=ctx.device, generator=gen)
            loss = loss + F.cross_entropy(masked(model(memory[0][pick]), memory[2][pick]), memory[1][pick])
        if penalty is not None:
            loss = loss + penalty(xb, logits)
        return loss

    cfg = TrainConfig.from_config({"optimizer": "adam", "schedule": "constant", **config}, ctx, restore_best=False)
    if config.get("iterations"):  # a training length per experience in optimiser steps, as van de Ven et al.
        cfg.epochs = epochs_for(int(config["iterations"]), len(x), cfg.batch_size)
    # van de Ven & Tolias's code keeps one Adam for the whole stream (its moments carry over from
    # one experience to the next) unless asked to reset it; a fresh one per experience is the default here.
    if config.get("carry_optimizer") and state.optimizer is None:
        state.optimizer = build_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay, cfg.momentum)
    train(model, step, len(x), cfg, ctx, optimizer=state.optimizer)
    if method == "replay":
        _remember(state, task.train.x, task.train.y, output_mask(task, len(task.train)),
                  per_class=int(config.get("memory_per_class", 50)), gen=gen)
    elif method == "ewc":
        _consolidate(state, task, cfg, ctx, fisher=str(config.get("ewc_fisher", "expected")),
                     examples=int(config.get("fisher_examples", FISHER_EXAMPLES)))
    elif method == "lwf":
        state.teacher = copy.deepcopy(model).eval().requires_grad_(False)
        seen = output_mask(task, 1)[0] if state.scenario == "task" else _seen(task)
        state.teacher_mask = seen if state.teacher_mask is None else (state.teacher_mask | seen)
    return state


def epochs_for(iterations: int, n: int, batch_size: int) -> int:
    """The whole number of epochs over ``n`` examples that comes nearest ``iterations`` optimiser
    steps of ``batch_size`` (at least one), counted as :func:`~harness.toolkit.train.train` does."""
    bs = max(1, min(batch_size, n))
    per_epoch = n // bs if n % bs < 2 else n // bs + 1
    return max(1, round(iterations / per_epoch))


def _seen(task: Task) -> torch.Tensor:
    """The outputs that have had labels so far (class- and domain-incremental)."""
    if task.meta.get("scenario") == "domain":  # every experience uses every output
        return torch.ones(task.num_classes, dtype=torch.bool, device=task.device)
    mask = torch.zeros(task.num_classes, dtype=torch.bool, device=task.device)
    mask[torch.unique(task.train.y)] = True
    return mask


def _remember(state: ContinualState, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
              per_class: int | None, gen: torch.Generator | None = None) -> None:
    """Add ``per_class`` random examples of each class (all of them for ``None``) to the memory."""
    if per_class is None:
        keep = torch.arange(len(x), device=x.device)
    else:
        keep = torch.cat([ix[torch.randperm(len(ix), device=x.device, generator=gen)[:per_class]]
                          for ix in (torch.nonzero(y == c).squeeze(1) for c in torch.unique(y))])
    state.memory_x.append(x[keep])
    state.memory_y.append(y[keep])
    state.memory_mask.append(mask[keep])


def _penalty(method: str, state: ContinualState, config: dict[str, Any]):
    """The regulariser that protects earlier experiences: ``penalty(x_batch, logits) -> loss``."""
    if method == "ewc" and state.fisher is not None:
        lam = float(config.get("ewc_lambda", 1000.0))
        params = dict(state.model.named_parameters())

        def ewc(xb: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
            return 0.5 * lam * sum((state.fisher[n] * (params[n] - state.anchor[n]) ** 2).sum() for n in state.fisher)
        return ewc
    if method == "lwf" and state.teacher is not None:
        alpha, t, seen = float(config.get("lwf_alpha", 1.0)), KD_TEMPERATURE, state.teacher_mask

        def lwf(xb: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                target = F.softmax(state.teacher(xb)[:, seen] / t, 1)
            return alpha * t * t * F.kl_div(F.log_softmax(logits[:, seen] / t, 1), target, reduction="batchmean")
        return lwf
    return None


def _consolidate(state: ContinualState, task: Task, cfg: TrainConfig, ctx: FitContext,
                 fisher: str = "expected", examples: int | None = None) -> None:
    """Online EWC: add this experience's diagonal Fisher information, on up to ``examples`` training
    examples (default ``FISHER_EXAMPLES``; 0: all), to the running one and anchor the current weights.

    ``expected``: the expectation over the network's own predictive distribution (Kirkpatrick et
    al.), ``Σ_c p(c|x) (∇ log p(c|x))²`` over the outputs the experience trains: the empirical one
    (the label's gradient alone) vanishes quadratically once the training loss nears zero, as it
    does after long training on an experience, and EWC then protects nothing. ``predicted``: the
    arg-max class's term alone, ``(∇ log p(ĉ|x))²`` (van de Ven & Tolias's code); it shrinks like
    ``(1 − p(ĉ|x))²`` on a confident network, so it needs a far larger λ for the same pull."""
    if fisher not in FISHER_KINDS:
        raise ConfigError(f"ewc_fisher: unknown {fisher!r} (known: {', '.join(FISHER_KINDS)})")
    model = state.model
    model.eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    info = {n: torch.zeros_like(p) for n, p in params.items()}
    x = task.train.x
    mask = output_mask(task, len(x))
    examples = FISHER_EXAMPLES if examples is None else examples
    pick = torch.randperm(len(x), device=x.device, generator=ctx.generator(offset=29))[:examples or len(x)]
    for i in pick.tolist():
        log_p = F.log_softmax(masked(model(x[i:i + 1]), mask[i:i + 1]), 1)[0]
        classes = (torch.nonzero(mask[i]).squeeze(1).tolist() if fisher == "expected"
                   else [int(log_p.argmax())])
        for k, c in enumerate(classes):
            grads = torch.autograd.grad(log_p[c], list(params.values()), retain_graph=k < len(classes) - 1,
                                        allow_unused=True)
            weight = log_p[c].detach().exp() if fisher == "expected" else 1.0
            for (n, _), g in zip(params.items(), grads):
                if g is not None:
                    info[n] += weight * g.detach() ** 2
    info = {n: f / len(pick) for n, f in info.items()}
    state.fisher = info if state.fisher is None else {n: state.fisher[n] + info[n] for n in info}
    state.anchor = {n: p.detach().clone() for n, p in params.items()}


def evaluate(method: str, state: ContinualState, split: Split, ctx: FitContext) -> torch.Tensor:
    return predict_proba(state.model, split.x, ctx)
