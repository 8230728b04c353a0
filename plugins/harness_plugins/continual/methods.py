"""Continual learning on a stream (:mod:`harness.tasks.stream`): one network, fitted experience by
experience; ``ctx.previous`` holds the state after the experience before.

* ``naive``: fine-tune on each experience in turn (the lower bound: catastrophic forgetting).
* ``ewc``: elastic weight consolidation, a quadratic penalty weighted by the (expected) diagonal Fisher
  information of earlier experiences (Kirkpatrick et al., PNAS 2017; online form, Schwarz et al. 2018).
* ``lwf``: learning without forgetting, distillation of the previous network's outputs on the
  current data (Li & Hoiem, TPAMI 2017).
* ``replay``: experience replay from a memory of a fixed number of examples per class (Chaudhry et
  al., On Tiny Episodic Memories in Continual Learning, 2019).
* ``joint``: the upper bound, trained on every experience seen so far (its memory is unbounded).
"""
from __future__ import annotations

from typing import Any

from harness import hookimpl, lazy_hooks
from harness.info import MethodInfo

KINDS = ("image", "tabular")
TASKS = ("stream",)
# ``iterations``: optimiser steps per experience (van de Ven et al. train 2,000 on split MNIST);
# 0 trains the budget's epochs per experience instead. ``carry_optimizer``: one optimiser for the whole
# stream, its state carried from one experience to the next (van de Ven & Tolias's code), instead of a
# fresh one per experience.
DEFAULTS: dict[str, Any] = {"model": "mlp", "hidden": 256, "lr": 1e-3, "batch_size": 64, "iterations": 0,
                            "carry_optimizer": False}
CITATIONS = {
    "naive": "fine-tuning baseline; van de Ven, Tuytelaars & Tolias, Three types of incremental learning, "
             "Nature Machine Intelligence 2022",
    "ewc": "Kirkpatrick et al., Overcoming catastrophic forgetting in neural networks, PNAS 2017",
    "lwf": "Li & Hoiem, Learning without Forgetting, TPAMI 2017",
    "replay": "Chaudhry et al., On Tiny Episodic Memories in Continual Learning, arXiv 1902.10486, 2019",
    "joint": "joint (cumulative) training upper bound; van de Ven et al., Nature Machine Intelligence 2022",
}
EXTRA_DEFAULTS: dict[str, dict[str, Any]] = {
    "ewc": {"ewc_lambda": 1000.0, "ewc_fisher": "expected", "fisher_examples": 200},
    "lwf": {"lwf_alpha": 1.0}, "replay": {"memory_per_class": 50},
}
# EWC's Fisher: ``expected`` under the network's own predictive distribution, or ``predicted``, the
# gradient of the arg-max class alone (van de Ven & Tolias's code); ``fisher_examples`` training
# examples per experience (0: all of them, as that code does).


@hookimpl
def harness_methods() -> list[MethodInfo]:
    descriptions = {
        "naive": "fine-tune on each experience in turn (no protection against forgetting)",
        "ewc": "elastic weight consolidation: Fisher-weighted pull towards earlier experiences' weights",
        "lwf": "learning without forgetting: distil the previous network's outputs on the new data",
        "replay": "experience replay from a fixed memory of examples per class",
        "joint": "upper bound: train on every experience seen so far",
    }
    return [MethodInfo(name, KINDS, text, CITATIONS[name], defaults={**DEFAULTS, **EXTRA_DEFAULTS.get(name, {})},
                       tasks=TASKS) for name, text in descriptions.items()]


@hookimpl
def harness_search_space(method: str, trial, task) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "model": trial.suggest_categorical("model", ["mlp"]),
        "hidden": trial.suggest_categorical("hidden", [128, 256, 400]),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
        "optimizer": "adam", "batchnorm": False, "schedule": "constant",
        "iterations": trial.suggest_categorical("iterations", [0, 500, 1000, 2000]),
        "carry_optimizer": trial.suggest_categorical("carry_optimizer", [False, True]),
    }
    if method == "ewc":
        cfg["ewc_lambda"] = trial.suggest_float("ewc_lambda", 1.0, 1e10, log=True)
        cfg["ewc_fisher"] = trial.suggest_categorical("ewc_fisher", ["expected", "predicted"])
        cfg["fisher_examples"] = trial.suggest_categorical("fisher_examples", [200, 0])
    elif method == "lwf":
        cfg["lwf_alpha"] = trial.suggest_float("lwf_alpha", 0.1, 10.0, log=True)
    elif method == "replay":
        cfg["memory_per_class"] = trial.suggest_categorical("memory_per_class", [10, 20, 50, 100])
    return cfg


harness_fit, harness_evaluate = lazy_hooks("harness_plugins.continual.training")
