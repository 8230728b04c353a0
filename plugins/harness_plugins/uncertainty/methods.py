"""Methods whose point is the predictive distribution: MC dropout and deep ensembles.

* ``mc_dropout``: a network trained with dropout (the ERM recipe), evaluated with dropout kept on;
  the prediction is the mean of ``mc_samples`` stochastic passes (Gal & Ghahramani, ICML 2016).
  ``mc_samples: 0`` scores the same network deterministically (dropout off, weights as trained),
  so a suite can put both rows side by side; the inference throughput counts all passes.
* ``deep_ensemble``: ``members`` independently initialised networks, each with its own data order,
  predictions averaged (Lakshminarayanan et al., NeurIPS 2017); trained in one vectorised pass by
  :func:`harness_plugins.uncertainty.ensemble.train_members`. ``members: 1`` is the single network of the same recipe.

Both return their sampled predictions (``S × N × K``) as ``Predictions.members``, from which the
core reports the mutual information. Temperature scaling and shift/OOD scoring are the
core's (a suite's ``calibrate`` and ``shifts`` / ``ood`` keys) and apply to these and every method.

The hooks in this module describe the methods and sample their spaces without importing torch; training
is in :mod:`harness_plugins.uncertainty.training`, imported with the first fit.
"""
from __future__ import annotations

from typing import Any

from harness import hookimpl
from harness.hookspecs import lazy_hooks
from harness.info import MethodInfo
from harness.toolkit.spaces import OPTIMIZERS, suggest_optimizer

KINDS = ("image", "tabular")
_NETWORK = {"model": "mlp", "hidden": 256, "batchnorm": True, "optimizer": "adamw", "lr": 2e-3,
            "weight_decay": 1e-4, "batch_size": 64}
MC_SAMPLES = 20
MEMBERS = 5


@hookimpl
def harness_methods() -> list[MethodInfo]:
    return [
        MethodInfo("mc_dropout", KINDS, "MC dropout: mean of stochastic forward passes with dropout kept on",
                   "Gal & Ghahramani, Dropout as a Bayesian Approximation, ICML 2016",
                   defaults={**_NETWORK, "dropout": 0.3, "grad_clip": 0.0, "augment": "none",
                             "mc_samples": MC_SAMPLES}),
        MethodInfo("deep_ensemble", KINDS, "deep ensemble: independently initialised networks, predictions averaged",
                   "Lakshminarayanan, Pritzel & Blundell, Simple and Scalable Predictive Uncertainty "
                   "Estimation using Deep Ensembles, NeurIPS 2017",
                   defaults={**_NETWORK, "dropout": 0.0, "augment": "none", "members": MEMBERS}),
    ]


@hookimpl
def harness_search_space(method: str, trial, task) -> dict[str, Any]:
    models = ["cnn", "mlp"] if task.kind == "image" else ["mlp"]
    cfg: dict[str, Any] = {"model": trial.suggest_categorical("model", models),
                           "batchnorm": trial.suggest_categorical("batchnorm", [True, False])}
    if cfg["model"] == "mlp":
        cfg["hidden"] = trial.suggest_categorical("hidden", [128, 256, 512])
    else:
        cfg["width"] = trial.suggest_categorical("width", [16, 32, 48])
    cfg.update(suggest_optimizer(trial, OPTIMIZERS))
    cfg["batch_size"] = trial.suggest_categorical("batch_size", [32, 64, 128])
    if task.kind == "image":
        cfg["augment"] = trial.suggest_categorical("augment", ["none", "light"])
    if method == "mc_dropout":
        # MC dropout needs dropout to sample from; the number of passes is a budget, not tuned.
        cfg["dropout"] = trial.suggest_float("dropout", 0.05, 0.5)
        cfg["grad_clip"] = trial.suggest_categorical("grad_clip", [0.0, 1.0, 5.0])
        cfg["mc_samples"] = trial.suggest_categorical("mc_samples", [MC_SAMPLES])
    else:
        cfg["dropout"] = trial.suggest_float("dropout", 0.0, 0.5)
        cfg["members"] = trial.suggest_categorical("members", [MEMBERS])
    return cfg


# torch loads with the first fit, not with the listing
harness_fit, harness_evaluate = lazy_hooks("harness_plugins.uncertainty.training")


@hookimpl
def harness_differentiable(method: str, fitted, ctx):
    from harness_plugins.uncertainty.training import differentiable

    return differentiable(fitted)
