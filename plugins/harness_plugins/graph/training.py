"""The graph networks, how they train and predict; :mod:`harness_plugins.graph.methods`' hooks import this on first use."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.data.planetoid import import_pyg
from harness.errors import DivergedError
from harness.toolkit.train import autocast
from harness_plugins.graph.stopping import stopping_rule


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
    if method in ("graph_transformer", "gps"):
        from harness_plugins.graph.transformer_nets import build_transformer

        return build_transformer(method, config, in_dim, num_classes)
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


def _val_loss_accuracy(fitted: FittedGraphModel, val) -> tuple[float, float]:
    """Validation cross-entropy and accuracy from one forward pass (one host sync)."""
    logits = fitted.logits()[val.index]
    loss = F.cross_entropy(logits, val.y)
    acc = (logits.argmax(-1) == val.y).float().mean()
    return tuple(torch.stack([loss, acc]).tolist())


def _param_groups(method: str, model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """GCN's authors decay the first layer's weights only; GAT's decay every weight."""
    if method == "gcn":
        first = list(model.conv1.parameters())
        rest = [p for p in model.parameters() if all(p is not q for q in first)]
        return [{"params": first, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return [{"params": list(model.parameters()), "weight_decay": weight_decay}]


def fit(method: str, task, config: dict[str, Any], ctx) -> FittedGraphModel:
    """Full-batch training under the configuration's stopping rule."""
    graph = task.graph.to(ctx.device)
    model = build_network(method, config, graph.num_features, task.num_classes).to(ctx.device)
    ctx.track(model)
    fitted = FittedGraphModel(model, graph.x, node_inputs(graph.x), graph.edge_index)
    train_nodes, y = task.train.index, task.train.y
    opt = torch.optim.Adam(_param_groups(method, model, config["weight_decay"]), lr=config["lr"])
    rule = stopping_rule(config["stopping"], config["patience"])
    best_state = None
    started = time.perf_counter()
    for epoch in range(int(config.get("epochs", ctx.epochs))):
        # Full batch: one step over every labelled train node, the whole graph propagated.
        model.train()
        with autocast(ctx):
            loss = F.cross_entropy(model(fitted.inputs, fitted.edge_index)[train_nodes], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ctx.samples_seen += len(train_nodes)
        val_loss, val_acc = _val_loss_accuracy(fitted, task.val)
        if not math.isfinite(val_loss):
            raise DivergedError(f"validation loss became {val_loss} in epoch {epoch + 1}")
        decision = rule.update(val_loss, val_acc)
        if decision.snapshot and rule.restores:
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        ctx.report(epoch, -val_loss)
        if decision.stop or (ctx.time_limit is not None and time.perf_counter() - started > ctx.time_limit):
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return fitted


def evaluate(method: str, fitted: FittedGraphModel, split, ctx) -> torch.Tensor:
    # The split's own features replace those of its nodes, so a shifted copy of the split is honoured.
    features = fitted.features.index_copy(0, split.index, split.x.to(fitted.features.dtype))
    return fitted.logits(node_inputs(features))[split.index].softmax(-1)
