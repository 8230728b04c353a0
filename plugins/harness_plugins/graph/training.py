"""The graph networks, how they train and predict; :mod:`harness_plugins.graph.methods`' hooks import this on first use."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.data.planetoid import import_pyg
from harness.toolkit.train import TrainConfig, train


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


def fit(method: str, task, config: dict[str, Any], ctx):
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


def evaluate(method: str, fitted: FittedGraphModel, split, ctx) -> torch.Tensor:
    # The split's own features replace those of its nodes, so a shifted copy of the split is honoured.
    features = fitted.features.index_copy(0, split.index, split.x.to(fitted.features.dtype))
    return fitted.logits(node_inputs(features))[split.index].softmax(-1)

