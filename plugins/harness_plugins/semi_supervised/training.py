"""How the semi-supervised methods train and predict; :mod:`harness_plugins.semi_supervised.methods`' hooks import this on first use."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from harness.context import FitContext
from harness.task import Task
from harness.toolkit.augment import RandAugment, augment_from_config, weak_augment
from harness.toolkit.models import create_model
from harness.toolkit.train import EMA, History, TrainConfig, predict_proba, sigmoid_rampup, train, val_accuracy
from harness_plugins.semi_supervised.consistency import (
    Batch, PairedBatches, TemporalEnsemble, mixmatch_l2, mixmatch_mixup, pseudo_label_loss, sharpen, soft_cross_entropy,
    softmax_mse, two_views, vat_loss,
)


# The unsupervised term of one step: (batch, student view of x_u, target view of x_u, student logits
# on its view) -> loss.
Term = Callable[[Batch, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _network(config: dict[str, Any], task: Task) -> nn.Module:
    name = config.get("model", "cnn")
    size = {"width": config.get("width", 32)} if name == "cnn" else {"hidden": config.get("hidden", 256)}
    return create_model(name, task, dropout=config.get("dropout", 0.0), batchnorm=True, **size)


def _unsupervised_term(method: str, model: nn.Module, config: dict[str, Any], task: Task, n_unlabelled: int,
                       ctx: FitContext) -> tuple[Term, EMA | None]:
    """The method's unsupervised loss, and the EMA teacher when the method has one."""
    if method == "mean_teacher":
        teacher = EMA(model, decay=float(config["ema_decay"]))

        def mean_teacher(b, x_s, x_t, logits):
            teacher.model.train()  # the teacher sees its input under the same noise as the student
            with torch.no_grad():
                target = teacher.model(x_t).float().softmax(-1)
            return softmax_mse(logits, target)
        return mean_teacher, teacher
    if method == "pi_model":
        def pi_model(b, x_s, x_t, logits):
            with torch.no_grad():
                target = model(x_t).float().softmax(-1)
            return softmax_mse(logits, target)
        return pi_model, None
    if method == "temporal_ensembling":
        ensemble = TemporalEnsemble(n_unlabelled, task.num_classes, float(config["ensemble_momentum"]), ctx.device)

        def temporal_ensembling(b, x_s, x_t, logits):
            target, has_target = ensemble.targets(b.u_idx)
            ensemble.update(b.u_idx, logits.float().softmax(-1))
            return softmax_mse(logits, target, has_target)
        return temporal_ensembling, None
    if method == "pseudo_label":
        threshold = float(config["threshold"])

        def pseudo_label(b, x_s, x_t, logits):
            with torch.no_grad():
                target_logits = model(x_t)
            return pseudo_label_loss(logits, target_logits, threshold)[0]
        return pseudo_label, None
    if method == "vat":
        eps, xi = float(config["vat_eps"]), float(config.get("vat_xi", 0.1))
        return (lambda b, x_s, x_t, logits: vat_loss(model, x_s, eps, xi)), None
    raise ValueError(f"semi_supervised plugin does not provide {method!r}")


Step = Callable[[torch.Tensor, float], torch.Tensor]


def _mixmatch_step(model: nn.Module, pairs: PairedBatches, config: dict[str, Any], task: Task, ctx: FitContext) -> Step:
    """MixMatch (Berthelot et al., 2019): guess each unlabelled image's label as the sharpened mean
    prediction over K weak views, MixUp labelled and unlabelled examples with their (guessed)
    targets together, then cross-entropy on the labelled part and the ramped L2 loss on the rest."""
    weak = weak_augment(task.meta.get("hflip", False))
    k, temperature = int(config["augmentations"]), float(config["sharpen_temperature"])
    weight, rampup = float(config["consistency"]), float(config["rampup"])
    alpha = torch.tensor(float(config["mixup_alpha"]), device=ctx.device)
    beta = torch.distributions.Beta(alpha, alpha)
    gen = ctx.generator(2)

    def step(u_idx: torch.Tensor, progress: float) -> torch.Tensor:
        b = pairs(u_idx)
        n_l, n_u = len(b.y_l), len(u_idx)
        x_l, views = weak(b.x_l), weak(b.x_u.repeat(k, *([1] * (b.x_u.ndim - 1))))
        with torch.no_grad():
            guess = sharpen(model(views).float().softmax(-1).view(k, n_u, -1).mean(0), temperature)
        x = torch.cat([x_l, views])
        p = torch.cat([F.one_hot(b.y_l, task.num_classes).float(), guess.repeat(k, 1)])
        perm = torch.randperm(x.shape[0], device=x.device, generator=gen)
        x_mix, p_mix = mixmatch_mixup(x, p, beta.sample(), perm)
        logits = model(x_mix)  # one forward over all mixed examples, as the paper's interleaving intends
        unsupervised = mixmatch_l2(logits[n_l:], p_mix[n_l:])
        return soft_cross_entropy(logits[:n_l], p_mix[:n_l]) + weight * sigmoid_rampup(progress, rampup) * unsupervised
    return step


def _fixmatch_step(model: nn.Module, pairs: PairedBatches, config: dict[str, Any], task: Task, ctx: FitContext) -> Step:
    """FixMatch (Sohn et al., 2020): the prediction on a weak view of an unlabelled image becomes a
    hard label for its strong view where its confidence reaches τ; no ramp-up, the mask is the
    curriculum."""
    weak = weak_augment(task.meta.get("hflip", False))
    strong = RandAugment(ops=int(config["strong_ops"]), cutout=float(config["cutout"]))
    threshold, weight = float(config["threshold"]), float(config["consistency"])
    gen = ctx.generator(3)

    def step(u_idx: torch.Tensor, progress: float) -> torch.Tensor:
        b = pairs(u_idx)
        n_l = len(b.y_l)
        logits = model(torch.cat([weak(b.x_l), weak(b.x_u), strong(b.x_u, gen)]))
        logits_weak, logits_strong = logits[n_l:].chunk(2)
        unsupervised, _ = pseudo_label_loss(logits_strong, logits_weak, threshold)
        return F.cross_entropy(logits[:n_l], b.y_l) + weight * unsupervised
    return step


_OWN_STEPS = {"mixmatch": _mixmatch_step, "fixmatch": _fixmatch_step}


def record_budget(history: History, ctx: FitContext) -> None:
    """Put the budget and the shape of the validation curve among the row's extras: optimiser
    ``steps`` taken, ``best_step`` (the end of the epoch whose weights were kept) and
    ``late_val_gain``, the points of validation accuracy the last quarter of the epochs added
    to the best before it. A gain near zero says the budget let validation accuracy plateau."""
    epochs = len(history.val)
    ctx.extras["steps"] = epochs * history.steps_per_epoch
    if epochs < 4:
        return
    ctx.extras["best_step"] = (history.best_epoch + 1) * history.steps_per_epoch
    early = epochs - epochs // 4
    ctx.extras["late_val_gain"] = 100 * (max(history.val[early:]) - max(history.val[:early]))


def fit(method: str, task: Task, config: dict[str, Any], ctx: FitContext) -> nn.Module:
    model = _network(config, task).to(ctx.device)
    pairs = PairedBatches(task, config["labeled_batch"], ctx)
    if method in _OWN_STEPS:
        step = _OWN_STEPS[method](model, pairs, config, task, ctx)
        # FixMatch's unlabelled batch is μ times the labelled one
        overrides = {"batch_size": int(config["mu"]) * pairs.batch} if method == "fixmatch" else {}
        history = train(model, step, len(pairs), TrainConfig.from_config(config, ctx, **overrides), ctx,
                        val_fn=lambda: val_accuracy(model, task.val, ctx))
        record_budget(history, ctx)
        return model
    augment = augment_from_config(config["augment"], task.meta.get("hflip", False))
    term, teacher = _unsupervised_term(method, model, config, task, len(pairs), ctx)
    weight, rampup = float(config["consistency"]), float(config["rampup"])

    def step(u_idx: torch.Tensor, progress: float) -> torch.Tensor:
        b = pairs(u_idx)
        x_l = augment(b.x_l) if augment is not None else b.x_l
        x_s, x_t = two_views(b.x_u, augment)
        # One forward over labelled and unlabelled images, so BatchNorm normalises them together.
        logits = model(torch.cat([x_l, x_s]))
        supervised = F.cross_entropy(logits[:len(b.y_l)], b.y_l)
        return supervised + weight * sigmoid_rampup(progress, rampup) * term(b, x_s, x_t, logits[len(b.y_l):])

    predictor = teacher.model if teacher is not None else model
    history = train(model, step, len(pairs), TrainConfig.from_config(config, ctx), ctx, ema=teacher,
                    val_fn=lambda: val_accuracy(predictor, task.val, ctx))
    record_budget(history, ctx)
    return predictor


def evaluate(method: str, fitted: nn.Module, split, ctx: FitContext) -> torch.Tensor:
    return predict_proba(fitted, split.x, ctx)

