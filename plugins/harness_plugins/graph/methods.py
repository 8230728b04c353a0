"""Graph neural networks for node classification, over PyG's message-passing layers.

* ``gcn``: two graph-convolution layers with symmetric-normalised propagation (Kipf & Welling,
  ICLR 2017); defaults are the paper's: 16 hidden units, dropout 0.5, Adam at lr 0.01, L2 weight
  decay 5e-4 on the first layer only, 200 epochs (the suite's epoch budget), and the authors' early
  stopping: :class:`WindowStopping` over 10 epochs, testing the last weights.
* ``gat``: two graph-attention layers (Veličković et al., ICLR 2018); defaults are the paper's Cora
  configuration: 8 heads × 8 hidden units with ELU, one averaged output head, dropout 0.6 on the
  inputs of both layers and on the attention coefficients, Adam at lr 0.005, weight decay 5e-4 on
  every weight, and the authors' early stopping: :class:`LossAccuracyPatience` with patience 100,
  testing the weights of the last epoch that matched the best loss and the best accuracy at once.

Both follow the papers' data protocol: bag-of-words features are row-normalised and training is
full-batch (one optimiser step per epoch over all labelled train nodes, the whole graph propagated).
The stopping rule is the configuration's ``stopping`` key, so a tuned row keeps its paper's rule;
rules see only validation loss and accuracy, so they apply to every Planetoid data set alike. The
pruner gets the negative validation cross-entropy after each epoch.

Throughput: ``ctx.samples_seen`` counts the labelled train nodes whose loss each epoch computes (the
toolkit's count with ``n`` = train nodes), so the train column reads "labelled nodes per second",
matching the inference column (scored test nodes per second); each step propagates the whole graph.

The hooks here describe the methods and sample their spaces without importing torch; the networks
and their training are in :mod:`harness_plugins.graph.training`, the stopping rules in
:mod:`harness_plugins.graph.stopping`.
"""
from __future__ import annotations

from typing import Any

from harness import hookimpl
from harness.hookspecs import lazy_hooks
from harness.info import MethodInfo

GCN_DEFAULTS = {"hidden": 16, "dropout": 0.5, "lr": 0.01, "weight_decay": 5e-4,
                "stopping": "window", "patience": 10}
GAT_DEFAULTS = {"heads": 8, "hidden": 8, "out_heads": 1, "dropout": 0.6, "attn_dropout": 0.6,
                "lr": 0.005, "weight_decay": 5e-4, "stopping": "loss_accuracy", "patience": 100}


@hookimpl
def harness_methods() -> list[MethodInfo]:
    return [
        MethodInfo("gcn", ("graph",), "graph convolutional network: two layers of normalised neighbourhood averaging; "
                   "stops as the authors' code does (validation loss above its mean over the previous 10 epochs), "
                   "tests the last weights",
                   "Kipf & Welling, Semi-Supervised Classification with Graph Convolutional Networks, ICLR 2017",
                   defaults=GCN_DEFAULTS),
        MethodInfo("gat", ("graph",), "graph attention network: multi-head attention over each node's neighbours; "
                   "stops as the authors' code does (100 epochs with neither validation loss nor accuracy "
                   "improving), tests the last weights that matched both bests",
                   "Veličković et al., Graph Attention Networks, ICLR 2018", defaults=GAT_DEFAULTS),
    ]


@hookimpl
def harness_search_space(method: str, trial, task) -> dict[str, Any]:
    if method == "gat":
        cfg = {"heads": trial.suggest_categorical("heads", [4, 8]),
               "hidden": trial.suggest_categorical("hidden", [8, 16]),
               "out_heads": trial.suggest_categorical("out_heads", [1, 8]),
               "dropout": trial.suggest_float("dropout", 0.3, 0.8),
               "attn_dropout": trial.suggest_float("attn_dropout", 0.3, 0.8)}
    else:
        cfg = {"hidden": trial.suggest_categorical("hidden", [16, 32, 64]),
               "dropout": trial.suggest_float("dropout", 0.2, 0.8)}
    cfg["lr"] = trial.suggest_float("lr", 1e-3, 3e-2, log=True)
    cfg["weight_decay"] = trial.suggest_float("weight_decay", 1e-5, 5e-3, log=True)
    # Each method keeps its paper's stopping rule; both are pinnable from a suite row.
    stopping, patience = ("loss_accuracy", 100) if method == "gat" else ("window", 10)
    cfg["stopping"] = trial.suggest_categorical("stopping", [stopping])
    cfg["patience"] = trial.suggest_categorical("patience", [patience])
    return cfg


# torch loads with the first fit, not with the listing
harness_fit, harness_evaluate = lazy_hooks("harness_plugins.graph.training")


@hookimpl
def harness_differentiable(method: str, fitted, ctx) -> str:
    return "a graph method predicts from the whole graph, not from an input batch: no per-example attack"
