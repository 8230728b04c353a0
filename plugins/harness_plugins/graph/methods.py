"""Graph neural networks for node classification, over PyG's message-passing layers.

* ``gcn``: two graph-convolution layers with symmetric-normalised propagation (Kipf & Welling,
  ICLR 2017); defaults are the paper's: 16 hidden units, dropout 0.5, Adam at lr 0.01, weight
  decay 5e-4, 200 epochs (the suite's epoch budget).
* ``gat``: two graph-attention layers (Veličković et al., ICLR 2018); defaults are the paper's Cora
  configuration: 8 heads × 8 hidden units with ELU, one averaged output head, dropout 0.6 on the
  inputs of both layers and on the attention coefficients, Adam at lr 0.005, weight decay 5e-4,
  early stopping with patience 100.

Both follow the papers' protocol: bag-of-words features are row-normalised, training is full-batch
(one optimiser step per epoch over all labelled train nodes, the whole graph propagated), and the
weights with the best validation score are restored before testing. That score (which also drives
early stopping and the pruner's reports) is the negative validation cross-entropy: GCN stops on the
validation loss, GAT on loss and accuracy, and selecting on the loss reproduces both papers' Cora
figures here, where accuracy alone (steps of 1/500) stopped GAT too early on some seeds.

Throughput: ``ctx.samples_seen`` counts the labelled train nodes whose loss each epoch computes (the
toolkit's count with ``n`` = train nodes), so the train column reads "labelled nodes per second",
matching the inference column (scored test nodes per second); each step propagates the whole graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness import hookimpl
from harness.data.planetoid import import_pyg
from harness.info import MethodInfo
from harness.toolkit.train import TrainConfig, train

GCN_DEFAULTS = {"hidden": 16, "dropout": 0.5, "lr": 0.01, "weight_decay": 5e-4, "patience": 100}
GAT_DEFAULTS = {"heads": 8, "hidden": 8, "out_heads": 1, "dropout": 0.6, "attn_dropout": 0.6,
                "lr": 0.005, "weight_decay": 5e-4, "patience": 100}


@hookimpl
def harness_methods() -> list[MethodInfo]:
    return [
        MethodInfo("gcn", ("graph",), "graph convolutional network: two layers of normalised neighbourhood averaging",
                   "Kipf & Welling, Semi-Supervised Classification with Graph Convolutional Networks, ICLR 2017",
                   defaults=GCN_DEFAULTS),
        MethodInfo("gat", ("graph",), "graph attention network: multi-head attention over each node's neighbours",
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
    cfg["patience"] = trial.suggest_categorical("patience", [100])  # the GAT paper's; pinnable
    return cfg


class GCN(nn.Module):
    """Dropout → GCNConv → ReLU → dropout → GCNConv; the normalised adjacency is cached after the first call."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int, dropout: float):
        super().__init__()
        GCNConv = import_pyg().nn.GCNConv
        self.dropout = dropout
        self.conv1 = GCNConv(in_dim, hidden, cached=True)
        self.conv2 = GCNConv(hidden, num_classes, cached=True)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = feature_dropout(x, self.dropout, self.training)
        x = F.relu(self.conv1(x, edge_index))
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)


class GAT(nn.Module):
    """Dropout → multi-head GATConv (concatenated) → ELU → dropout → GATConv with averaged output heads."""

    def __init__(self, in_dim: int, num_classes: int, heads: int, hidden: int, out_heads: int,
                 dropout: float, attn_dropout: float):
        super().__init__()
        GATConv = import_pyg().nn.GATConv
        self.dropout = dropout
        self.conv1 = GATConv(in_dim, hidden, heads=heads, dropout=attn_dropout)
        self.conv2 = GATConv(hidden * heads, num_classes, heads=out_heads, concat=False, dropout=attn_dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = feature_dropout(x, self.dropout, self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)


def build_network(method: str, config: dict[str, Any], in_dim: int, num_classes: int) -> nn.Module:
    if method == "gat":
        return GAT(in_dim, num_classes, config["heads"], config["hidden"], config["out_heads"],
                   config["dropout"], config["attn_dropout"])
    return GCN(in_dim, num_classes, config["hidden"], config["dropout"])


def node_inputs(x: torch.Tensor) -> torch.Tensor:
    """Row-normalised features (each node's divided by their sum, the papers' preprocessing), stored
    sparse on the CPU when mostly zero (bag-of-words): dense dropout masks dominate a CPU epoch, while
    on a GPU they are cheap and dense features stay clear of sparse kernels under autocast."""
    x = x.float()
    x = x / x.sum(1, keepdim=True).clamp_min(1e-12)  # all-zero rows (CiteSeer's padded nodes) stay zero
    return x.to_sparse() if x.device.type == "cpu" and (x != 0).float().mean() < 0.1 else x


def feature_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout on the input features; on a sparse matrix only the stored non-zeros are dropped, which
    is the same distribution as dense dropout (a dropped zero stays zero) at a fraction of the cost."""
    if not x.is_sparse:
        return F.dropout(x, p, training)
    return torch.sparse_coo_tensor(x.indices(), F.dropout(x.values(), p, training), x.shape,
                                   is_coalesced=True, check_invariants=False)


@dataclass
class FittedGraphModel:
    """The trained network, the graph's raw node features, their network inputs and the edges."""

    model: nn.Module
    features: torch.Tensor
    inputs: torch.Tensor
    edge_index: torch.Tensor

    @torch.no_grad()
    def logits(self, inputs: torch.Tensor | None = None) -> torch.Tensor:
        self.model.eval()
        return self.model(self.inputs if inputs is None else inputs, self.edge_index).float()


def _val_score(fitted: FittedGraphModel, val) -> float:
    """Negative validation cross-entropy: higher is better, as the toolkit expects (one host sync)."""
    return -F.cross_entropy(fitted.logits()[val.index], val.y).item()


@hookimpl
def harness_fit(method: str, task, config: dict[str, Any], ctx):
    graph = task.graph.to(ctx.device)
    model = build_network(method, config, graph.num_features, task.num_classes).to(ctx.device)
    fitted = FittedGraphModel(model, graph.x, node_inputs(graph.x), graph.edge_index)
    train_nodes, y = task.train.index, task.train.y

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        # Full batch: idx is every train position; the whole graph is propagated once per epoch.
        return F.cross_entropy(model(fitted.inputs, fitted.edge_index)[train_nodes[idx]], y[idx])

    cfg = TrainConfig.from_config({**config, "optimizer": "adam", "schedule": "constant"}, ctx,
                                  batch_size=len(train_nodes))
    train(model, step, len(train_nodes), cfg, ctx, val_fn=lambda: _val_score(fitted, task.val))
    return fitted


@hookimpl
def harness_evaluate(method: str, fitted: FittedGraphModel, split, ctx) -> torch.Tensor:
    # The split's own features replace those of its nodes, so a shifted copy of the split is honoured.
    features = fitted.features.index_copy(0, split.index, split.x.to(fitted.features.dtype))
    return fitted.logits(node_inputs(features))[split.index].softmax(-1)
