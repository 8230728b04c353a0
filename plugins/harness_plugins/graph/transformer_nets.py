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
    """Encoder → ELU → dropout → ``TransformerConv`` (``heads`` × ``hidden // heads``, concatenated,
    with a root skip) → ELU → dropout → ``TransformerConv`` with ``out_heads`` averaged output heads
    (Shi et al., IJCAI 2021: scaled dot-product attention over each node's neighbours)."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int, heads: int, out_heads: int, pe_k: int,
                 dropout: float, attn_dropout: float):
        super().__init__()
        TransformerConv = import_pyg().nn.TransformerConv
        self.dropout = dropout
        self.encoder = NodeEncoder(in_dim, hidden, pe_k, dropout)
        self.conv1 = TransformerConv(hidden, hidden // heads, heads=heads, dropout=attn_dropout)
        self.conv2 = TransformerConv(hidden // heads * heads, num_classes, heads=out_heads, concat=False,
                                     dropout=attn_dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.elu(self.encoder(x, edge_index)), self.dropout, self.training)
        h = F.dropout(F.elu(self.conv1(h, edge_index)), self.dropout, self.training)
        return self.conv2(h, edge_index)


class GPS(nn.Module):
    """Encoder → ``layers`` GPS layers → dropout → linear head. A GPS layer (Rampášek et al., NeurIPS
    2022; PyG's ``GPSConv``) adds a local message-passing update (GCN or GIN) and multi-head
    self-attention over all nodes, each with a residual and BatchNorm, then an MLP block."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int, heads: int, layers: int, local: str, pe_k: int,
                 dropout: float, attn_dropout: float):
        super().__init__()
        pyg = import_pyg()
        self.dropout = dropout
        self.encoder = NodeEncoder(in_dim, hidden, pe_k, dropout)
        self.layers = nn.ModuleList(
            pyg.nn.GPSConv(hidden, _local_conv(pyg, local, hidden), heads=heads, dropout=dropout,
                           attn_kwargs={"dropout": attn_dropout})
            for _ in range(layers))
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x, edge_index)
        for layer in self.layers:
            h = layer(h, edge_index)
        return self.head(F.dropout(h, self.dropout, self.training))


def _local_conv(pyg, local: str, hidden: int) -> nn.Module:
    if local == "gin":
        return pyg.nn.GINConv(nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden)))
    return pyg.nn.GCNConv(hidden, hidden, cached=True)


def build_transformer(method: str, config: dict[str, Any], in_dim: int, num_classes: int) -> nn.Module:
    """The network of a graph-transformer configuration."""
    common = {"hidden": int(config["hidden"]), "heads": int(config["heads"]), "pe_k": int(config["pe_k"]),
              "dropout": float(config["dropout"]), "attn_dropout": float(config["attn_dropout"])}
    if method == "gps":
        return GPS(in_dim, num_classes, layers=int(config["layers"]), local=config["local"], **common)
    return GraphTransformer(in_dim, num_classes, out_heads=int(config["out_heads"]), **common)


__all__ = ["GPS", "GraphTransformer", "NodeEncoder", "build_transformer"]
