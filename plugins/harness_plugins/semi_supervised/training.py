"""How the semi-supervised methods train and predict; :mod:`harness_plugins.semi_supervised.methods`' hooks import this on first use."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from harness.context import FitContext
from harness.task import Task
from harness.toolkit.augment import augment_from_config
from harness.toolkit.models import create_model
from harness.toolkit.train import EMA, TrainConfig, predict_proba, sigmoid_rampup, train, val_accuracy
from harness_plugins.semi_supervised.consistency import Batch, PairedBatches, TemporalEnsemble, pseudo_label_loss, softmax_mse, two_views, vat_loss


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


def fit(method: str, task: Task, config: dict[str, Any], ctx: FitContext) -> nn.Module:
    model = _network(config, task).to(ctx.device)
    pairs = PairedBatches(task, config["labeled_batch"], ctx)
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
    train(model, step, len(pairs), TrainConfig.from_config(config, ctx), ctx, ema=teacher,
          val_fn=lambda: val_accuracy(predictor, task.val, ctx))
    return predictor


def evaluate(method: str, fitted: nn.Module, split, ctx: FitContext) -> torch.Tensor:
    return predict_proba(fitted, split.x, ctx)

