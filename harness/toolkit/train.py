"""The shared training toolkit: one loop, optimisers and schedules by name, AMP, EMA, ramp-ups.

A method's ``harness_fit`` is a short recipe over these pieces::

    model = create_model(config["model"], task)
    def step(idx, progress):                     # idx: a batch of train positions (on the device)
        return F.cross_entropy(model(x[idx]), y[idx])
    train(model, step, len(x), TrainConfig.from_config(config, ctx), ctx,
          val_fn=lambda: val_accuracy(model, task.val, ctx))

The loop keeps everything on the device: batches are index slices of resident tensors, the epoch
loss is summed on the device and read once per epoch (the only host sync), and validation runs
once per epoch, feeding early stopping, best-weight restoring and the Optuna pruner.
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterable

import torch
from torch import nn

from harness.context import FitContext
from harness.errors import ConfigError, DivergedError
from harness.task import Split
from harness.toolkit.spaces import LR_RANGES, OPTIMIZERS, suggest_optimizer  # noqa: F401  (public here too)

SCHEDULES = ("constant", "cosine", "step")


def build_optimizer(
    name: str, params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """An optimiser by name. ``momentum`` is heavy-ball SGD, ``nesterov`` Nesterov SGD; AdamW's
    weight decay is decoupled, every other optimiser's is L2 added to the gradient."""
    params = list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=name == "nesterov",
                               weight_decay=weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, momentum=0.0, alpha=0.99)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r} (known: {', '.join(OPTIMIZERS)})")


def build_schedule(name: str, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0):
    """Per-step LR multiplier: linear warm-up, then constant, cosine to zero, or ×0.1 at 50 % and 75 %."""
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r} (known: {', '.join(SCHEDULES)})")
    total = max(1, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if name == "cosine":
            t = (step - warmup_steps) / max(1, total - warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        if name == "step":
            return 0.1 ** sum(step >= total * m for m in (0.5, 0.75))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class TrainConfig:
    """How to train, read from a method's configuration (unknown keys are ignored)."""

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size: int = 64
    epochs: int = 20
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    grad_clip: float | None = None
    patience: int | None = None
    restore_best: bool = True

    @classmethod
    def from_config(cls, config: dict[str, Any], ctx: FitContext | None = None, **overrides) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in config.items() if k in names}
        if ctx is not None and "epochs" not in config:
            values["epochs"] = ctx.epochs
        values.update(overrides)
        cfg = cls(**values)
        if cfg.grad_clip is not None and cfg.grad_clip <= 0:
            cfg.grad_clip = None
        return cfg


@dataclass
class History:
    """Per-epoch mean train loss and validation score; ``best_epoch`` is the restored one."""

    loss: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    seconds: float = 0.0
    steps_per_epoch: int = 0


def autocast(ctx: FitContext):
    """bf16 autocast on CUDA when AMP is on; nothing on the CPU."""
    if ctx.amp and ctx.device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def train(
    model: nn.Module,
    step: Callable[[torch.Tensor, float], torch.Tensor],
    n: int,
    cfg: TrainConfig,
    ctx: FitContext,
    *,
    val_fn: Callable[[], float] | None = None,
    params: Iterable[nn.Parameter] | Iterable[dict[str, Any]] | None = None,
    ema: EMA | None = None,
    extra_modules: Iterable[nn.Module] = (),
    optimizer: torch.optim.Optimizer | None = None,
) -> History:
    """Run ``cfg.epochs`` epochs of ``step(batch_indices, progress)`` over ``n`` training examples.

    ``step`` returns the scalar loss of one batch (``progress`` runs from 0 to 1 over training, for
    ramp-ups). Only ``params`` (default: the model's parameters that require grad) are optimised;
    ``params`` may also be torch's parameter-group dicts, each with its own ``lr`` or ``weight_decay``
    (the schedule scales every group's rate alike).
    ``val_fn`` is called after every epoch; its score drives ``ctx.report`` (pruning), early stopping
    after ``cfg.patience`` epochs without improvement, and restoring the best weights at the end
    (``ema``'s average too, when given). ``optimizer``: one to continue, its state kept (a continual
    learner's across experiences), instead of a fresh ``cfg.optimizer`` over ``params``.
    Raises :class:`DivergedError` when an epoch's loss is not finite.
    """
    model.to(ctx.device)
    if ctx.device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)  # NHWC convolutions run on the tensor cores
    ctx.track(model, *extra_modules)
    if ctx.compile:
        step = torch.compile(step)
    groups = _trainable_groups(params if params is not None else model.parameters())
    params = [p for g in groups for p in g["params"]]
    if not params:
        raise ConfigError("nothing to train: no parameter requires grad")
    opt = optimizer if optimizer is not None else build_optimizer(cfg.optimizer, groups, cfg.lr, cfg.weight_decay,
                                                                  cfg.momentum)
    bs = max(1, min(int(cfg.batch_size), n))
    steps_per_epoch = n // bs if n % bs < 2 else n // bs + 1  # a batch of one breaks BatchNorm
    total_steps = steps_per_epoch * cfg.epochs
    sched = build_schedule(cfg.schedule, opt, total_steps, int(cfg.warmup_epochs * steps_per_epoch))
    gen = ctx.generator()
    history = History(steps_per_epoch=steps_per_epoch)
    best_score, best_state, bad_epochs = -math.inf, None, 0
    best_ema = None
    started = time.perf_counter()
    done = 0
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, device=ctx.device, generator=gen)
        total = torch.zeros((), device=ctx.device)
        for i in range(steps_per_epoch):
            idx = perm[i * bs:(i + 1) * bs]
            with autocast(ctx):
                loss = step(idx, done / total_steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update(model)
            total += loss.detach().float()
            ctx.samples_seen += idx.numel()
            done += 1
        epoch_loss = (total / steps_per_epoch).item()  # the one host sync of the epoch
        if not math.isfinite(epoch_loss):
            raise DivergedError(f"loss became {epoch_loss} in epoch {epoch + 1}")
        history.loss.append(epoch_loss)
        if val_fn is not None:
            score = float(val_fn())
            history.val.append(score)
            if score > best_score:
                best_score, bad_epochs, history.best_epoch = score, 0, epoch
                if cfg.restore_best:
                    best_state = _snapshot(model)
                    if ema is not None:  # the average belongs to the same best epoch as the weights
                        best_ema = _snapshot(ema.model)
            else:
                bad_epochs += 1
            ctx.report(epoch, score)
            if cfg.patience is not None and bad_epochs >= cfg.patience:
                break
        if ctx.time_limit is not None and time.perf_counter() - started > ctx.time_limit:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    if best_ema is not None:
        ema.model.load_state_dict(best_ema)
    history.seconds = time.perf_counter() - started
    return history


def _trainable_groups(params: Iterable) -> list[dict[str, Any]]:
    """Optimiser parameter groups of the parameters that require grad: ``params`` is a plain
    iterable of parameters (one group) or of torch's group dicts (own ``lr``, ``weight_decay``...)."""
    items = list(params)
    groups = [dict(g) for g in items if isinstance(g, dict)] if items and isinstance(items[0], dict) \
        else [{"params": items}]
    for g in groups:
        g["params"] = [p for p in g["params"] if p.requires_grad]
    return [g for g in groups if g["params"]]


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights and buffers on their device (cheaper than deepcopy of a state dict)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, ctx: FitContext, batch_size: int = 2048) -> torch.Tensor:
    model.eval()
    outs = []
    for i in range(0, x.shape[0], batch_size):
        with autocast(ctx):
            outs.append(model(x[i:i + batch_size]).float())
    return torch.cat(outs) if outs else torch.zeros(0, 0, device=x.device)


def predict_proba(model: nn.Module, x: torch.Tensor, ctx: FitContext, batch_size: int = 2048) -> torch.Tensor:
    """Softmax of the model's logits, in eval mode, batched."""
    return predict_logits(model, x, ctx, batch_size).softmax(-1)


def logits_view(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's eval-mode float32 logits as a function of an input batch, differentiable with
    respect to it: what ``harness_differentiable`` hands the core for a single network."""
    def logits(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        return model(x).float()

    return logits


def mean_probability_view(member_logits: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Log of the mean softmax of ``member_logits(x)`` (``S × B × K``: ensemble members or MC samples),
    differentiable: an averaged predictor's logits up to a constant per example."""
    def logits(x: torch.Tensor) -> torch.Tensor:
        z = member_logits(x).float().log_softmax(-1)
        return torch.logsumexp(z, 0) - math.log(z.shape[0])

    return logits


def val_accuracy(model: nn.Module, split: Split, ctx: FitContext) -> float:
    """Validation accuracy for early stopping and pruning (computed on the device, one sync)."""
    logits = predict_logits(model, split.x, ctx)
    return (logits.argmax(1) == split.y).float().mean().item()


class EMA:
    """Exponential moving average of a model's weights (Polyak averaging; the mean teacher).

    ``decay`` may ramp from ``warmup`` steps: the effective decay is ``min(decay, (t+1)/(t+10))``
    so early averages are not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        self.model = copy.deepcopy(model)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (self.updates + 1) / (self.updates + 10)) if self.warmup else self.decay
        ema_p = [p for p in self.model.parameters()]
        src_p = [p.detach() for p in model.parameters()]
        torch._foreach_mul_(ema_p, d)
        torch._foreach_add_(ema_p, src_p, alpha=1 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)
        self.updates += 1


def sigmoid_rampup(progress: float, length: float = 0.3) -> float:
    """exp(-5 (1 - t)²) ramp from 0 to 1 over the first ``length`` of training (Laine & Aila, 2017)."""
    if length <= 0:
        return 1.0
    t = min(1.0, max(0.0, progress / length))
    return math.exp(-5.0 * (1.0 - t) ** 2)
