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
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from harness import hookimpl
from harness.data.planetoid import import_pyg
from harness.errors import ConfigError, DivergedError
from harness.info import MethodInfo
from harness.toolkit.train import autocast

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


@dataclass(frozen=True)
class Decision:
    """What a stopping rule says after an epoch: keep these weights as the ones to test, and/or stop."""

    snapshot: bool
    stop: bool


class StoppingRule(Protocol):
    """Fed each epoch's validation loss and accuracy, in order; ``restores`` says whether the
    snapshotted weights (rather than the last ones) are tested."""

    restores: bool

    def update(self, val_loss: float, val_acc: float) -> Decision: ...


class WindowStopping:
    """Kipf & Welling's rule: once more than ``window + 1`` epochs have run, stop when the epoch's
    validation loss exceeds the mean of the ``window`` epochs before it. The last weights are tested."""

    restores = False

    def __init__(self, window: int = 10):
        self.window = window
        self.losses: list[float] = []

    def update(self, val_loss: float, val_acc: float) -> Decision:
        self.losses.append(val_loss)
        previous = self.losses[-self.window - 1:-1]
        stop = len(self.losses) > self.window + 1 and val_loss > sum(previous) / len(previous)
        return Decision(snapshot=False, stop=stop)


class LossAccuracyPatience:
    """Veličković et al.'s rule: an epoch whose validation loss is at most the lowest so far *or*
    whose accuracy is at least the highest so far resets the patience counter; one that does both
    is snapshotted; ``patience`` epochs in a row doing neither stop training. The last snapshot is
    tested (ties count as improvements, so later epochs on a plateau win)."""

    restores = True

    def __init__(self, patience: int = 100):
        self.patience = patience
        self.best_loss, self.best_acc, self.bad_epochs = math.inf, -math.inf, 0

    def update(self, val_loss: float, val_acc: float) -> Decision:
        loss_ok, acc_ok = val_loss <= self.best_loss, val_acc >= self.best_acc
        if not (loss_ok or acc_ok):
            self.bad_epochs += 1
            return Decision(snapshot=False, stop=self.bad_epochs >= self.patience)
        self.best_loss, self.best_acc = min(val_loss, self.best_loss), max(val_acc, self.best_acc)
        self.bad_epochs = 0
        return Decision(snapshot=loss_ok and acc_ok, stop=False)


STOPPING_RULES = {"window": WindowStopping, "loss_accuracy": LossAccuracyPatience}


def stopping_rule(name: str, patience: int) -> StoppingRule:
    """The stopping rule of a configuration's ``stopping`` key, with its window or patience."""
    if name not in STOPPING_RULES:
        raise ConfigError(f"unknown stopping rule {name!r} (known: {', '.join(STOPPING_RULES)})")
    return STOPPING_RULES[name](int(patience))


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


@hookimpl
def harness_fit(method: str, task, config: dict[str, Any], ctx):
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


@hookimpl
def harness_evaluate(method: str, fitted: FittedGraphModel, split, ctx) -> torch.Tensor:
    # The split's own features replace those of its nodes, so a shifted copy of the split is honoured.
    features = fitted.features.index_copy(0, split.index, split.x.to(fitted.features.dtype))
    return fitted.logits(node_inputs(features))[split.index].softmax(-1)
