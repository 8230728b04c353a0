"""Few-shot methods for episodic tasks (:mod:`harness.tasks.episodic`).

``harness_fit`` is called first on the meta-train task (``task.meta["stage"] == "meta-train"``),
then once per episode with the support set as ``task.train`` and the meta-trained state as
``ctx.previous`` (``"episode"``); ``harness_evaluate`` then predicts the episode's query set.

* ``protonet``: episodic training of an embedding; a query's class is its nearest class prototype
  (mean support embedding) in squared Euclidean distance (Snell et al., NeurIPS 2017).
* ``maml``: first-order MAML — an initialisation that a few SGD steps on the support set adapt;
  meta-gradients taken at the adapted weights (Finn et al., ICML 2017).
* ``baseline_pp``: a network pre-trained on all meta-train classes with a cosine-similarity head,
  then a cosine nearest-centroid head on the support embeddings (Chen et al., A Closer Look at
  Few-shot Classification, ICLR 2019).
* ``nc_random``: the reference row — the same encoder, randomly initialised and never trained,
  with a nearest-centroid head: what the architecture gives without learning.
"""
from __future__ import annotations

from typing import Any

from harness import hookimpl, lazy_hooks
from harness.info import MethodInfo

KINDS = ("image",)
TASKS = ("episodic",)
ENCODER = {"model": "conv4"}
DEFAULTS: dict[str, dict[str, Any]] = {
    "protonet": {"width": 16, "lr": 1e-3, "episodes_per_epoch": 50, "train_shot": 5},
    "maml": {"width": 16, "lr": 1e-3, "episodes_per_epoch": 50, "train_shot": 5, "inner_lr": 0.1, "inner_steps": 3,
             "test_inner_steps": 3},
    "baseline_pp": {"width": 16, "lr": 2e-3, "batch_size": 64, "cosine_scale": 10.0},
    "nc_random": {"width": 16},
}


@hookimpl
def harness_methods() -> list[MethodInfo]:
    return [
        MethodInfo("protonet", KINDS, "prototypical networks: nearest class prototype in a meta-learnt embedding",
                   "Snell, Swersky & Zemel, Prototypical Networks for Few-shot Learning, NeurIPS 2017",
                   defaults=DEFAULTS["protonet"], tasks=TASKS),
        MethodInfo("maml", KINDS, "first-order MAML: an initialisation adapted by a few SGD steps per episode",
                   "Finn, Abbeel & Levine, Model-Agnostic Meta-Learning, ICML 2017 (first-order variant)",
                   defaults=DEFAULTS["maml"], tasks=TASKS),
        MethodInfo("baseline_pp", KINDS, "baseline++: pre-trained cosine classifier, cosine nearest-centroid head",
                   "Chen et al., A Closer Look at Few-shot Classification, ICLR 2019",
                   defaults=DEFAULTS["baseline_pp"], tasks=TASKS),
        MethodInfo("nc_random", KINDS, "random (untrained) encoder with a nearest-centroid head: the reference",
                   "reference baseline; nearest class mean as in Snell et al., NeurIPS 2017",
                   defaults=DEFAULTS["nc_random"], tasks=TASKS),
    ]


@hookimpl
def harness_search_space(method: str, trial, task) -> dict[str, Any]:
    cfg: dict[str, Any] = {**ENCODER, "width": trial.suggest_categorical("width", [16, 32])}
    if method == "nc_random":
        return cfg
    cfg["lr"] = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    if method == "baseline_pp":
        cfg["batch_size"] = trial.suggest_categorical("batch_size", [32, 64, 128])
        cfg["cosine_scale"] = trial.suggest_float("cosine_scale", 2.0, 30.0, log=True)
        return cfg
    cfg["episodes_per_epoch"] = trial.suggest_categorical("episodes_per_epoch", [25, 50, 100])
    cfg["train_shot"] = trial.suggest_categorical("train_shot", [1, 5])
    if method == "maml":
        cfg["inner_lr"] = trial.suggest_float("inner_lr", 0.01, 0.5, log=True)
        cfg["inner_steps"] = trial.suggest_int("inner_steps", 1, 5)
        cfg["test_inner_steps"] = trial.suggest_int("test_inner_steps", 1, 10)
    return cfg


harness_fit, harness_evaluate = lazy_hooks("harness_plugins.fewshot.training")
