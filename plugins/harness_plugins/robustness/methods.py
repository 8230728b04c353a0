"""Adversarial training against an L∞ adversary of radius ε on the data's own scale.

* ``fgsm_at``: train on FGSM examples from a uniform random start in the ε-ball, step 1.25·ε
  (Wong, Rice & Kolter, ICLR 2020). Its known failure, catastrophic overfitting (robustness to PGD
  collapsing within an epoch while FGSM accuracy rises), is watched for: PGD accuracy on a fixed
  validation batch is measured after every epoch; a drop of more than ``COLLAPSE`` below the best
  so far is recorded in the row (``extra_collapse_epoch``) and the last good weights are kept.
* ``pgd_at``: train on PGD examples (``steps`` signed steps of 2.5·ε/steps from a random start;
  Madry et al., ICLR 2018).
* ``trades``: cross-entropy on clean inputs plus β·KL(p(x) ‖ p(x')), x' the PGD maximiser of that
  KL (Zhang et al., ICML 2019).

All three ramp ε up linearly over the first ``rampup`` of training, restore the weights of the
epoch with the best PGD accuracy on the validation batch (Rice et al., 2020: robust overfitting),
and record the training attack (``extra_train_eps``, ``extra_train_steps``, ``extra_train_step_size``,
``extra_beta``) with every row. ε is in the space, but clean validation accuracy alone prefers the
smallest ε: pin it, or tune with ``--objectives accuracy,robust_acc``.
"""
from __future__ import annotations

from typing import Any

from harness import hookimpl
from harness.hookspecs import lazy_hooks
from harness.info import MethodInfo
from harness.toolkit.spaces import suggest_optimizer

KINDS = ("image", "tabular")
_NETWORK = {"model": "cnn", "width": 32, "batchnorm": True, "dropout": 0.0, "optimizer": "adamw", "lr": 2e-3,
            "weight_decay": 1e-4, "batch_size": 64, "eps": 0.3, "rampup": 0.4}
_METHODS = {
    "fgsm_at": ("FGSM adversarial training from a random start, with catastrophic-overfitting detection",
                "Wong, Rice & Kolter, Fast is better than free: Revisiting adversarial training, ICLR 2020",
                {}),
    "pgd_at": ("PGD adversarial training: cross-entropy on projected-gradient-descent examples",
               "Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018",
               {"steps": 7}),
    "trades": ("TRADES: clean cross-entropy plus β·KL between clean and adversarial predictions",
               "Zhang et al., Theoretically Principled Trade-off between Robustness and Accuracy, ICML 2019",
               {"steps": 7, "beta": 6.0}),
}


@hookimpl
def harness_methods() -> list[MethodInfo]:
    return [MethodInfo(name, KINDS, description, citation, defaults=_defaults(extra))
            for name, (description, citation, extra) in _METHODS.items()]


def _defaults(extra: dict[str, Any]):
    """The method's defaults for a task: a CNN for images, an MLP for tabular features."""
    def defaults(task) -> dict[str, Any]:
        network = _NETWORK if task.kind == "image" else {**_NETWORK, "model": "mlp", "hidden": 256}
        return {**{k: v for k, v in network.items() if task.kind == "image" or k != "width"}, **extra}
    return defaults


@hookimpl
def harness_search_space(method: str, trial, task) -> dict[str, Any]:
    models = ["cnn", "mlp"] if task.kind == "image" else ["mlp"]
    cfg: dict[str, Any] = {"model": trial.suggest_categorical("model", models),
                           "batchnorm": trial.suggest_categorical("batchnorm", [True, False]),
                           "dropout": trial.suggest_float("dropout", 0.0, 0.3)}
    if cfg["model"] == "cnn":
        cfg["width"] = trial.suggest_categorical("width", [16, 32, 48])
    else:
        cfg["hidden"] = trial.suggest_categorical("hidden", [128, 256, 512])
    cfg.update(suggest_optimizer(trial, ("adamw", "adam", "momentum")))
    cfg["batch_size"] = trial.suggest_categorical("batch_size", [64, 128])
    cfg["eps"] = trial.suggest_float("eps", 0.05, 0.4)
    cfg["rampup"] = trial.suggest_float("rampup", 0.0, 0.6)
    if method in ("pgd_at", "trades"):
        cfg["steps"] = trial.suggest_int("steps", 3, 10)
    if method == "trades":
        cfg["beta"] = trial.suggest_float("beta", 1.0, 10.0, log=True)
    return cfg


@hookimpl
def harness_differentiable(method: str, fitted, ctx):
    from harness.toolkit.train import logits_view

    return logits_view(fitted)


# torch loads with the first fit, not with the listing
harness_fit, harness_evaluate = lazy_hooks("harness_plugins.robustness.training")
