"""Multi-task methods (:mod:`harness.tasks.multitask`): one input, one head per label set.

* ``equal_weights``: a shared trunk, the sum of the heads' cross-entropies.
* ``uncertainty_weights``: each head's loss weighted by a learnt homoscedastic uncertainty,
  ``Σ_t exp(−s_t) L_t + s_t`` (Kendall, Gal & Cipolla, CVPR 2018).
* ``pcgrad``: gradient surgery — each head's gradient on the shared trunk loses its component along
  any other head's gradient it conflicts with (negative dot product) before they are summed
  (Yu et al., Gradient Surgery for Multi-Task Learning, NeurIPS 2020).
* ``dwa``: dynamic weight average — each head's weight a softmax of how slowly its loss fell over
  the last epochs (Liu, Johns & Davison, End-to-End Multi-Task Learning with Attention, CVPR 2019).
* ``gradnorm``: learnt loss weights that balance the heads' gradient norms on the last shared layer
  by their relative training rates (Chen et al., GradNorm, ICML 2018).
* ``single_task``: the reference, one network per head with nothing shared; a head that does worse
  in a shared trunk than here shows negative transfer.
"""
from __future__ import annotations

from typing import Any

from harness import hookimpl, lazy_hooks
from harness.info import MethodInfo

KINDS = ("image", "tabular")
TASKS = ("multitask",)
DEFAULTS: dict[str, Any] = {"model": "mlp", "hidden": 256, "lr": 1e-3, "batch_size": 64}


@hookimpl
def harness_methods() -> list[MethodInfo]:
    return [
        MethodInfo("equal_weights", KINDS, "shared trunk, heads' losses summed with equal weights",
                   "Caruana, Multitask Learning, Machine Learning 1997", defaults=DEFAULTS, tasks=TASKS),
        MethodInfo("uncertainty_weights", KINDS, "shared trunk, losses weighted by learnt task uncertainty",
                   "Kendall, Gal & Cipolla, Multi-Task Learning Using Uncertainty to Weigh Losses, CVPR 2018",
                   defaults=DEFAULTS, tasks=TASKS),
        MethodInfo("pcgrad", KINDS, "shared trunk, conflicting task gradients projected apart (gradient surgery)",
                   "Yu et al., Gradient Surgery for Multi-Task Learning, NeurIPS 2020", defaults=DEFAULTS, tasks=TASKS),
        MethodInfo("dwa", KINDS, "shared trunk, loss weights from each head's recent rate of descent",
                   "Liu, Johns & Davison, End-to-End Multi-Task Learning with Attention, CVPR 2019",
                   defaults={**DEFAULTS, "dwa_temperature": 2.0}, tasks=TASKS),
        MethodInfo("gradnorm", KINDS, "shared trunk, learnt loss weights balancing the heads' gradient norms",
                   "Chen et al., GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep "
                   "Multitask Networks, ICML 2018", defaults={**DEFAULTS, "gradnorm_alpha": 1.5}, tasks=TASKS),
        MethodInfo("single_task", KINDS, "one network per head, nothing shared: the reference",
                   "single-task reference of Caruana, Machine Learning 1997", defaults=DEFAULTS, tasks=TASKS),
    ]


@hookimpl
def harness_search_space(method: str, trial, task) -> dict[str, Any]:
    models = ["mlp", "lenet"] if task.kind == "image" else ["mlp"]
    cfg: dict[str, Any] = {
        "model": trial.suggest_categorical("model", models),
        "hidden": trial.suggest_categorical("hidden", [128, 256, 512]),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
        "optimizer": "adam", "batchnorm": True,
    }
    if method == "dwa":
        cfg["dwa_temperature"] = trial.suggest_float("dwa_temperature", 0.5, 10.0, log=True)
    elif method == "gradnorm":
        cfg["gradnorm_alpha"] = trial.suggest_float("gradnorm_alpha", 0.0, 3.0)
    return cfg


harness_fit, harness_evaluate = lazy_hooks("harness_plugins.multitask.training")
