"""Graph transformers for node classification: attention over each node's neighbours
(``TransformerConv``) and GPS layers (local message passing beside global attention over every
node), both fed Laplacian eigenvector positional encodings. :mod:`harness_plugins.graph.training`
trains them with the GNNs' full-batch loop and stopping rules."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.data.planetoid import import_pyg
from harness.errors import ConfigError
from harness_plugins.graph.positional import laplacian_pe, random_sign_flip
from harness_plugins.graph.training import feature_dropout


class NodeEncoder(nn.Module):
    """Dropout on the node features, a linear map to ``hidden``, plus a linear map of the ``pe_k``
    Laplacian encodings (signs flipped at random in training). The encodings are computed on the
    first call and cached, as ``GCNConv(cached=True)`` caches its normalised adjacency: the model
    is trained and scored on one graph."""

    def __init__(self, in_dim: int, hidden: int, pe_k: int, dropout: float):
        super().__init__()
        self.dropout, self.pe_k = dropout, pe_k
        self.features = import_pyg().nn.Linear(in_dim, hidden)  # takes the sparse bag-of-words too
        self.positions = nn.Linear(pe_k, hidden, bias=False) if pe_k else None
        self._pe: torch.Tensor | None = None

    def encodings(self, edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
        if self._pe is None or self._pe.shape[0] != num_nodes:
            self._pe = laplacian_pe(edge_index, num_nodes, self.pe_k).to(edge_index.device)
        return self._pe

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.features(feature_dropout(x, self.dropout, self.training))
        if self.positions is not None:
            pe = self.encodings(edge_index, x.shape[0])
            h = h + self.positions(random_sign_flip(pe) if self.training else pe)
        return h


class GraphTransformer(nn.Module):
    """Encoder → ELU → dropout → ``TransformerConv`` (``heads`` × ``hidden // heads``, concatenated)
    → ELU → dropout → ``TransformerConv`` with ``out_heads`` averaged output heads (Shi et al., IJCAI
    2021: scaled dot-product attention over each node's neighbours). With ``skip`` a node's own
    features enter through the layer's root weight, as in the paper; without it a node attends to
    itself through a self-loop, as in GAT, and its update is a convex mix of neighbours and itself."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int, heads: int, out_heads: int, pe_k: int,
                 dropout: float, attn_dropout: float, skip: bool = True):
        super().__init__()
        TransformerConv = import_pyg().nn.TransformerConv
        self.dropout, self.skip = dropout, skip
        self.encoder = NodeEncoder(in_dim, hidden, pe_k, dropout)
        self.conv1 = TransformerConv(hidden, hidden // heads, heads=heads, dropout=attn_dropout, root_weight=skip)
        self.conv2 = TransformerConv(hidden // heads * heads, num_classes, heads=out_heads, concat=False,
                                     dropout=attn_dropout, root_weight=skip)
        self._edges: tuple[torch.Tensor, torch.Tensor] | None = None

    def _attended_edges(self, edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
        if self.skip:
            return edge_index
        if self._edges is None or self._edges[0] is not edge_index:
            utils = import_pyg().utils
            looped = utils.add_self_loops(utils.remove_self_loops(edge_index)[0], num_nodes=num_nodes)[0]
            self._edges = (edge_index, looped)
        return self._edges[1]

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        edges = self._attended_edges(edge_index, x.shape[0])
        h = F.dropout(F.elu(self.encoder(x, edge_index)), self.dropout, self.training)
        h = F.dropout(F.elu(self.conv1(h, edges)), self.dropout, self.training)
        return self.conv2(h, edges)


class GlobalAttention(nn.Module):
    """Multi-head self-attention over every node as one ``scaled_dot_product_attention`` call, whose
    fused CPU kernel never holds the N × N weights. Dropout on the attention weights would force the
    unfused path (N × N masks; 8× slower forward and backward on Cora), so training regularises by
    dropping keys instead: each step every node is left out as a key and value with probability
    ``key_dropout``, and softmax renormalises over the rest (DropKey, Li et al., CVPR 2023, with one
    mask shared by all queries, which also cuts the step's attention cost by that fraction)."""

    def __init__(self, hidden: int, heads: int, key_dropout: float):
        super().__init__()
        if hidden % heads:
            raise ConfigError(f"gps: hidden={hidden} is not divisible by heads={heads}")
        self.heads, self.key_dropout = heads, key_dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n, width = h.shape
        q, k, v = self.qkv(h).view(n, 3, self.heads, width // self.heads).permute(1, 2, 0, 3)
        if self.training and self.key_dropout > 0:
            keep = torch.rand(n, device=h.device) >= self.key_dropout
            k, v = k[:, keep], v[:, keep]
        return self.out(F.scaled_dot_product_attention(q, k, v).transpose(0, 1).reshape(n, width))


class GPSLayer(nn.Module):
    """One GPS layer (Rampášek et al., NeurIPS 2022, eq. 2–4): a local message-passing update and
    global attention, each on the layer's input with dropout, a residual and a norm; their sum then
    passes a two-layer MLP block with its own residual and norm. ``norm`` is ``batch`` (the paper's),
    ``layer`` or ``none``."""

    def __init__(self, hidden: int, heads: int, local: nn.Module, dropout: float, key_dropout: float,
                 norm: str = "batch"):
        super().__init__()
        self.dropout = dropout
        self.local = local
        self.attention = GlobalAttention(hidden, heads, key_dropout)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(2 * hidden, hidden))
        self.norm_local, self.norm_attention, self.norm_mlp = (_norm(norm, hidden) for _ in range(3))

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        local = self.norm_local(h + F.dropout(self.local(h, edge_index), self.dropout, self.training))
        attended = self.norm_attention(h + F.dropout(self.attention(h), self.dropout, self.training))
        h = local + attended
        return self.norm_mlp(h + F.dropout(self.mlp(h), self.dropout, self.training))


class GPS(nn.Module):
    """Encoder → ``layers`` :class:`GPSLayer` s → dropout → linear head; the local update is GCN or
    GIN, the global one attention over all nodes of the graph."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int, heads: int, layers: int, local: str, pe_k: int,
                 dropout: float, attn_dropout: float, norm: str = "batch"):
        super().__init__()
        pyg = import_pyg()
        self.dropout = dropout
        self.encoder = NodeEncoder(in_dim, hidden, pe_k, dropout)
        self.layers = nn.ModuleList(
            GPSLayer(hidden, heads, _local_conv(pyg, local, hidden), dropout, attn_dropout, norm)
            for _ in range(layers))
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x, edge_index)
        for layer in self.layers:
            h = layer(h, edge_index)
        return self.head(F.dropout(h, self.dropout, self.training))


def _norm(kind: str, hidden: int) -> nn.Module:
    norms = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm, "none": lambda _: nn.Identity()}
    if kind not in norms:
        raise ConfigError(f"unknown norm {kind!r} for gps (known: {', '.join(norms)})")
    return norms[kind](hidden)


def _local_conv(pyg, local: str, hidden: int) -> nn.Module:
    if local == "gin":
        return pyg.nn.GINConv(nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden)))
    return pyg.nn.GCNConv(hidden, hidden, cached=True)


def build_transformer(method: str, config: dict[str, Any], in_dim: int, num_classes: int) -> nn.Module:
    """The network of a graph-transformer configuration."""
    common = {"hidden": int(config["hidden"]), "heads": int(config["heads"]), "pe_k": int(config["pe_k"]),
              "dropout": float(config["dropout"]), "attn_dropout": float(config["attn_dropout"])}
    if method == "gps":
        return GPS(in_dim, num_classes, layers=int(config["layers"]), local=config["local"],
                   norm=config.get("norm", "layer"), **common)
    return GraphTransformer(in_dim, num_classes, out_heads=int(config["out_heads"]),
                            skip=bool(config.get("skip", True)), **common)


__all__ = ["GPS", "GPSLayer", "GlobalAttention", "GraphTransformer", "NodeEncoder", "build_transformer"]
