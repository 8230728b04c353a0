"""How the adversarial-training methods train; :mod:`harness_plugins.robustness.methods`' hooks import this on first use."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.context import FitContext
from harness.robustness import accuracy_under, pgd
from harness.task import Task
from harness.toolkit.models import network_from_config
from harness.toolkit.train import TrainConfig, logits_view, predict_proba, train

COLLAPSE = 0.2  # PGD accuracy on the validation batch this far below its best: catastrophic overfitting
VAL_BATCH = 500  # validation examples attacked after every epoch
VAL_STEPS = 10  # PGD steps of that check


def trades_adversary(model: nn.Module, x: torch.Tensor, eps: float, steps: int, step_size: float,
                     bounds: tuple[float, float] | None) -> torch.Tensor:
    """The x' in the ε-ball that maximises KL(p(x) ‖ p(x')) by signed gradient steps from x plus
    small Gaussian noise, as in Zhang et al.'s reference code."""
    with torch.no_grad():
        p_clean = model(x).float().softmax(-1)
    x_adv = x + 0.001 * torch.randn_like(x)
    for _ in range(steps):
        with torch.enable_grad():
            x_adv = x_adv.detach().requires_grad_(True)
            kl = F.kl_div(model(x_adv).float().log_softmax(-1), p_clean, reduction="sum")
            grad = torch.autograd.grad(kl, x_adv)[0]
        x_adv = torch.min(torch.max(x_adv + step_size * grad.sign(), x - eps), x + eps)
        if bounds is not None:
            x_adv = x_adv.clamp(*bounds)
    return x_adv.detach()


def fit(method: str, task: Task, config: dict[str, Any], ctx: FitContext) -> nn.Module:
    model = network_from_config(config, task).to(ctx.device)
    x, y = task.train.x, task.train.y
    bounds = task.input_range
    eps, rampup = float(config["eps"]), float(config.get("rampup", 0.0))
    steps = 1 if method == "fgsm_at" else int(config["steps"])
    ratio = 1.25 if method == "fgsm_at" else 2.5 / steps  # step size as a multiple of ε
    beta = float(config.get("beta", 0.0))
    gen = ctx.generator()
    ctx.extras.update(train_eps=eps, train_steps=steps, train_step_size=ratio * eps, rampup=rampup)
    if method == "trades":
        ctx.extras["beta"] = beta

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        xb, yb = x[idx], y[idx]
        e = eps * min(1.0, progress / rampup) if rampup > 0 else eps
        model.eval()  # the adversary sees the model as it predicts; BatchNorm statistics stay clean
        if method == "trades":
            x_adv = trades_adversary(model, xb, e, steps, ratio * e, bounds)
        else:
            x_adv = pgd(model, xb, yb, e, steps, ratio * e, bounds, generator=gen)
        model.train()
        if method == "trades":
            logits = model(torch.cat([xb, x_adv])).float()
            clean, adv = logits[:len(xb)], logits[len(xb):]
            kl = F.kl_div(adv.log_softmax(-1), clean.softmax(-1), reduction="batchmean")
            return F.cross_entropy(clean, yb) + beta * kl
        return F.cross_entropy(model(x_adv), yb)

    check_x, check_y = task.val.x[:VAL_BATCH], task.val.y[:VAL_BATCH]
    scores: list[float] = []  # PGD accuracy on the validation batch, one per epoch

    def robust_val() -> float:
        """The score that picks the weights kept; for fgsm_at also the catastrophic-overfitting watch."""
        acc = accuracy_under("pgd", logits_view(model), check_x, check_y, eps, steps=VAL_STEPS, bounds=bounds,
                             seed=ctx.seed)
        if method == "fgsm_at" and scores and acc < max(scores) - COLLAPSE:
            ctx.extras.setdefault("collapse_epoch", len(scores) + 1)
        scores.append(acc)
        return acc

    train(model, step, len(x), TrainConfig.from_config(config, ctx), ctx, val_fn=robust_val)
    ctx.extras["val_pgd_acc"] = max(scores, default=float("nan"))
    if method == "fgsm_at":
        ctx.extras.setdefault("collapse_epoch", 0)  # 0: no catastrophic overfitting seen
    return model


def evaluate(method: str, fitted: nn.Module, split, ctx: FitContext) -> torch.Tensor:
    return predict_proba(fitted, split.x, ctx)
