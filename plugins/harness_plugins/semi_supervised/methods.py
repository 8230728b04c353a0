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
* ``mixmatch``: labels guessed as the sharpened mean prediction over K weak views, MixUp across
  labelled and unlabelled examples, an L2 loss on the unlabelled part (Berthelot et al., NeurIPS 2019).
* ``fixmatch``: a confident prediction on a weak (shifted) view is the hard label for a strong
  (RandAugment + Cutout) view; the unlabelled batch is μ times the labelled one (Sohn et al.,
  NeurIPS 2020).

One epoch is one pass over the unlabelled pool. With no label budget the pool is the training
images themselves. The parameter columns count the one network that predicts (the teacher for
``mean_teacher``, which has the student's architecture).

The hooks in this module describe the methods and sample their spaces without importing torch; training
is in :mod:`harness_plugins.semi_supervised.training`, imported with the first fit.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness import hookimpl
from harness.hookspecs import lazy_hooks
from harness.info import MethodInfo
from harness.toolkit.spaces import suggest_optimizer

if TYPE_CHECKING:
    from harness.task import Task

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
# MixMatch and FixMatch bring their own (weak) views; FixMatch's unlabelled batch follows from μ and
# it has no ramp-up. μ = 2 rather than the paper's 7 keeps a CPU step small.
_OWN = {
    "mixmatch": (
        "MixMatch: sharpened label guesses over K views, MixUp of labelled and unlabelled examples, L2 loss",
        "Berthelot et al., MixMatch: A Holistic Approach to Semi-Supervised Learning, NeurIPS 2019",
        {k: v for k, v in _COMMON.items() if k != "augment"}
        | {"consistency": 75.0, "augmentations": 2, "sharpen_temperature": 0.5, "mixup_alpha": 0.75}),
    "fixmatch": (
        "FixMatch: confident predictions on weak views are hard labels for strong (RandAugment + Cutout) views",
        "Sohn et al., FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence, NeurIPS 2020",
        {k: v for k, v in _COMMON.items() if k not in ("augment", "batch_size", "rampup")}
        | {"mu": 2, "consistency": 1.0, "threshold": 0.95, "strong_ops": 2, "cutout": 0.5}),
}


@hookimpl
def harness_methods() -> list[MethodInfo]:
    return [MethodInfo(name, ("image",), description, citation, defaults={**_COMMON, **extra})
            for name, (description, citation, extra) in _METHODS.items()] + [
        MethodInfo(name, ("image",), description, citation, defaults=defaults)
        for name, (description, citation, defaults) in _OWN.items()]


@hookimpl
def harness_search_space(method: str, trial, task: Task) -> dict[str, Any]:
    cfg: dict[str, Any] = {"model": trial.suggest_categorical("model", ["cnn", "mlp"])}
    if cfg["model"] == "cnn":
        cfg["width"] = trial.suggest_categorical("width", [16, 32, 48])
    else:
        cfg["hidden"] = trial.suggest_categorical("hidden", [256, 512])
    cfg["dropout"] = trial.suggest_float("dropout", 0.0, 0.5)
    cfg.update(suggest_optimizer(trial, ("adamw", "adam", "nesterov")))
    if method == "fixmatch":
        cfg["labeled_batch"] = trial.suggest_categorical("labeled_batch", [16, 32, 64])
        cfg["mu"] = trial.suggest_categorical("mu", [1, 2, 4, 7])
        cfg["threshold"] = trial.suggest_float("threshold", 0.8, 0.98)
        cfg["consistency"] = trial.suggest_float("consistency", 0.3, 3.0, log=True)
        cfg["strong_ops"] = trial.suggest_int("strong_ops", 1, 3)
        cfg["cutout"] = trial.suggest_float("cutout", 0.25, 0.5)
        return cfg
    cfg["batch_size"] = trial.suggest_categorical("batch_size", [64, 128, 256])
    cfg["labeled_batch"] = trial.suggest_categorical("labeled_batch", [16, 32, 64])
    if method == "mixmatch":
        cfg["rampup"] = trial.suggest_float("rampup", 0.05, 0.5)
        cfg["consistency"] = trial.suggest_float("consistency", 10.0, 150.0, log=True)
        cfg["augmentations"] = trial.suggest_int("augmentations", 1, 3)
        cfg["sharpen_temperature"] = trial.suggest_float("sharpen_temperature", 0.3, 0.7)
        cfg["mixup_alpha"] = trial.suggest_float("mixup_alpha", 0.3, 1.0)
        return cfg
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


# torch loads with the first fit, not with the listing
harness_fit, harness_evaluate = lazy_hooks("harness_plugins.semi_supervised.training")


@hookimpl
def harness_differentiable(method: str, fitted, ctx):
    from harness.toolkit.train import logits_view  # the fitted object is the predicting network

    return logits_view(fitted)
