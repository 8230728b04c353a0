"""Semi-supervised learning with a label budget: a few labelled images plus an unlabelled pool.

Every method trains one network on cross-entropy over a labelled batch plus a ramped-up
unsupervised term over an unlabelled batch (pairing, two views, the losses and the ramp come from
:mod:`harness_plugins.semi_supervised.consistency` and :mod:`harness.toolkit.train`):

* ``mean_teacher``: the softmax of the student on one augmented view is pulled towards that of an
  exponential moving average of its own weights (the teacher) on another; the teacher predicts
  (Tarvainen & Valpola, NeurIPS 2017).
* ``pi_model``: the same consistency cost, the target being a second stochastic pass of the network
  itself (Laine & Aila, ICLR 2017).
* ``temporal_ensembling``: the target is instead a per-example moving average of the network's past
  predictions, bias-corrected for its start at zero (Laine & Aila, ICLR 2017).
* ``pseudo_label``: the network's confident predictions on one view become hard labels for the
  other (Lee, 2013; confidence threshold as in Sohn et al., FixMatch, 2020).
* ``vat``: virtual adversarial training: the prediction must not change under the small
  perturbation that changes it most, found by power iteration (Miyato et al., TPAMI 2018).

One epoch is one pass over the unlabelled pool. With no label budget the pool is the training
images themselves. The parameter columns count the one network that predicts (the teacher for
``mean_teacher``, which has the student's architecture).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from harness import hookimpl
from harness.context import FitContext
from harness.info import MethodInfo
from harness.task import Task
from harness.toolkit.augment import augment_from_config
from harness.toolkit.models import create_model
from harness.toolkit.train import EMA, TrainConfig, predict_proba, sigmoid_rampup, suggest_optimizer, train, val_accuracy
from harness_plugins.semi_supervised.consistency import Batch, PairedBatches, TemporalEnsemble, pseudo_label_loss, softmax_mse, two_views, vat_loss

_COMMON = {"model": "cnn", "width": 32, "dropout": 0.0, "optimizer": "adamw", "lr": 1e-2, "weight_decay": 1e-4,
           "batch_size": 64, "labeled_batch": 32, "augment": "light", "rampup": 0.3}
_METHODS = {
    "mean_teacher": (
        "mean teacher: consistency (MSE of softmaxes) to an EMA of the student's weights under augmentation",
        "Tarvainen & Valpola, Mean teachers are better role models, NeurIPS 2017",
        {"consistency": 10.0, "ema_decay": 0.99}),
    "pi_model": (
        "Π-model: consistency (MSE of softmaxes) between two stochastic passes",
        "Laine & Aila, Temporal Ensembling for Semi-Supervised Learning, ICLR 2017",
        {"consistency": 10.0}),
    "temporal_ensembling": (
        "temporal ensembling: consistency to a bias-corrected moving average of past predictions per example",
        "Laine & Aila, Temporal Ensembling for Semi-Supervised Learning, ICLR 2017",
        {"consistency": 10.0, "ensemble_momentum": 0.6}),
    "pseudo_label": (
        "pseudo-labelling: confident predictions on one view are hard labels for another",
        "Lee, Pseudo-Label, ICML 2013 Workshop on Challenges in Representation Learning",
        {"consistency": 1.0, "threshold": 0.9}),
    "vat": (
        "virtual adversarial training: smoothness against the most sensitive input perturbation",
        "Miyato et al., Virtual Adversarial Training, IEEE TPAMI 2018",
        {"consistency": 1.0, "vat_eps": 2.0, "vat_xi": 0.1}),
}

# The unsupervised term of one step: (batch, student view of x_u, target view of x_u, student logits
# on its view) -> loss.
Term = Callable[[Batch, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@hookimpl
def harness_methods() -> list[MethodInfo]:
    return [MethodInfo(name, ("image",), description, citation, defaults={**_COMMON, **extra})
            for name, (description, citation, extra) in _METHODS.items()]


@hookimpl
def harness_search_space(method: str, trial, task: Task) -> dict[str, Any]:
    cfg: dict[str, Any] = {"model": trial.suggest_categorical("model", ["cnn", "mlp"])}
    if cfg["model"] == "cnn":
        cfg["width"] = trial.suggest_categorical("width", [16, 32, 48])
    else:
        cfg["hidden"] = trial.suggest_categorical("hidden", [256, 512])
    cfg["dropout"] = trial.suggest_float("dropout", 0.0, 0.5)
    cfg.update(suggest_optimizer(trial, ("adamw", "adam", "nesterov")))
    cfg["batch_size"] = trial.suggest_categorical("batch_size", [64, 128, 256])
    cfg["labeled_batch"] = trial.suggest_categorical("labeled_batch", [16, 32, 64])
    cfg["augment"] = trial.suggest_categorical("augment", ["light", "strong"])
    cfg["rampup"] = trial.suggest_float("rampup", 0.05, 0.5)
    if method in ("mean_teacher", "pi_model", "temporal_ensembling"):
        cfg["consistency"] = trial.suggest_float("consistency", 1.0, 50.0, log=True)
    else:
        cfg["consistency"] = trial.suggest_float("consistency", 0.3, 3.0, log=True)
    if method == "mean_teacher":
        cfg["ema_decay"] = trial.suggest_float("ema_decay", 0.95, 0.999)
    elif method == "temporal_ensembling":
        cfg["ensemble_momentum"] = trial.suggest_float("ensemble_momentum", 0.5, 0.9)
    elif method == "pseudo_label":
        cfg["threshold"] = trial.suggest_float("threshold", 0.7, 0.98)
    elif method == "vat":
        cfg["vat_eps"] = trial.suggest_float("vat_eps", 0.5, 8.0, log=True)
        cfg["vat_xi"] = trial.suggest_categorical("vat_xi", [0.1])
    return cfg


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


@hookimpl
def harness_fit(method: str, task: Task, config: dict[str, Any], ctx: FitContext) -> nn.Module:
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


@hookimpl
def harness_evaluate(method: str, fitted: nn.Module, split, ctx: FitContext) -> torch.Tensor:
    return predict_proba(fitted, split.x, ctx)
