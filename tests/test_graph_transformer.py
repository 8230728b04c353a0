"""Graph transformers: Laplacian positional encodings (a relabelled graph gives the same encodings,
rows permuted, up to a sign per column) and both methods learning a tiny two-block-style graph."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.context import FitContext, seed_everything
from harness.metrics import accuracy
from harness.task import Split, Task

pytest.importorskip("torch_geometric")

from harness_plugins.graph.positional import laplacian_pe, normalised_laplacian, random_sign_flip  # noqa: E402


def _ring_with_chords(n: int, chords: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    src = list(range(n)) + rng.integers(0, n, chords).tolist()
    dst = [(i + 1) % n for i in range(n)] + rng.integers(0, n, chords).tolist()
    edges = torch.tensor([src, dst])
    return torch.cat([edges, edges.flip(0)], 1)


@pytest.mark.parametrize("dense_below", [10_000, 0], ids=["dense", "eigsh"])
def test_encodings_are_invariant_to_relabelling_up_to_sign(dense_below):
    n, k = 40, 6
    edges = _ring_with_chords(n, chords=15, seed=1)
    values = np.linalg.eigvalsh(normalised_laplacian(edges, n).toarray())
    assert np.diff(values[: k + 2]).min() > 1e-6  # distinct eigenvalues: each eigenvector unique up to sign
    perm = torch.from_numpy(np.random.default_rng(2).permutation(n))
    pe = laplacian_pe(edges, n, k, dense_below=dense_below)
    relabelled = laplacian_pe(perm[edges], n, k, dense_below=dense_below)
    moved = relabelled[perm]  # node i of the original graph is node perm[i] of the relabelled one
    signs = torch.sign((moved * pe).sum(0))
    assert torch.allclose(moved * signs, pe, atol=1e-4)
    assert not torch.allclose(pe, pe[perm], atol=1e-2)  # the encodings do tell nodes apart


def test_encodings_skip_every_components_null_space_and_pad():
    # Two rings (two zero eigenvalues) and an isolated node (a third component).
    edges = torch.cat([_ring_with_chords(6, 0, 0), _ring_with_chords(5, 0, 0) + 6], 1)
    lap = normalised_laplacian(edges, 12).toarray()
    pe = laplacian_pe(edges, 12, 12).numpy()
    rayleigh = np.einsum("nk,nm,mk->k", pe, lap, pe)
    assert (rayleigh[:9] > 1e-6).all() and np.allclose(pe[:, 9:], 0)  # 12 nodes − 3 components = 9 columns
    assert np.allclose(pe[:, :9].T @ pe[:, :9], np.eye(9), atol=1e-5)


def test_sign_flip_changes_signs_only():
    pe = torch.randn(30, 8)
    flipped = random_sign_flip(pe)
    assert torch.equal(flipped.abs(), pe.abs())
    assert all(torch.equal(flipped[:, j], pe[:, j]) or torch.equal(flipped[:, j], -pe[:, j]) for j in range(8))


def _blocks(per_class: int = 30, classes: int = 3, seed: int = 0) -> Task:
    """A stochastic block model: dense edges inside a class, few across; node features are the class
    one-hot buried in noise, so the graph carries most of the signal."""
    from torch_geometric.data import Data

    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per_class)
    same = y[:, None] == y[None, :]
    adj = np.triu(rng.random((len(y), len(y))) < np.where(same, 0.25, 0.01), 1)
    src, dst = np.nonzero(adj | adj.T)
    x = torch.tensor(np.eye(classes)[y] + rng.normal(0, 0.7, (len(y), classes)), dtype=torch.float32).abs()
    y = torch.from_numpy(y)
    order = torch.from_numpy(rng.permutation(len(y)))
    train = torch.cat([order[y[order] == c][:8] for c in range(classes)])
    rest = order[~torch.isin(order, train)]
    val, test = rest[: len(rest) // 3], rest[len(rest) // 3:]
    split = lambda idx: Split(x[idx], y[idx], idx)  # noqa: E731
    graph = Data(x=x, edge_index=torch.tensor(np.stack([src, dst])), num_nodes=len(y))
    return Task("blocks", "graph", classes, (classes,), split(train), split(val), split(test), graph=graph)


@pytest.mark.parametrize("method", ["graph_transformer", "gps"])
def test_graph_transformers_learn_a_block_graph_well_above_chance(registry, method):
    task = _blocks()
    m = registry.methods[method]
    seed_everything(0)
    ctx = FitContext(device=torch.device("cpu"), seed=0, epochs=60)
    fitted = m.fit(task.without_test(), {**m.info.defaults, "pe_k": 4, "dropout": 0.5}, ctx)
    acc = accuracy(m.evaluate(fitted, task.test.without_labels(), ctx), task.test.y)
    assert acc > 0.8, acc  # chance is 1/3


@pytest.mark.parametrize("method", ["graph_transformer", "gps"])
def test_graph_transformers_run_on_a_planetoid_folder(registry, tmp_path, method):
    from harness.data import load_task
    from test_graph import _write_planetoid

    _write_planetoid(tmp_path / "g", "tiny", n_train=9, n_all=520, test_ids=list(range(520, 560))[::-1])
    task = load_task(registry, f"planetoid:{tmp_path / 'g'}")
    m = registry.methods[method]
    ctx = FitContext(device=torch.device("cpu"), seed=0, epochs=3)
    probs = m.evaluate(m.fit(task.without_test(), m.info.defaults, ctx), task.test.without_labels(), ctx)
    assert probs.shape == (40, 3) and torch.allclose(probs.sum(1), torch.ones_like(probs[:, 0]))


def test_global_attention_matches_dense_softmax_attention_and_drops_keys_in_training():
    from harness_plugins.graph.transformer_nets import GlobalAttention

    torch.manual_seed(0)
    attention, h = GlobalAttention(hidden=12, heads=3, key_dropout=0.5), torch.randn(50, 12)
    q, k, v = attention.qkv(h).view(50, 3, 3, 4).permute(1, 2, 0, 3)
    weights = (q @ k.transpose(-1, -2) / 2.0).softmax(-1)  # scale 1/sqrt(4)
    expected = attention.out((weights @ v).transpose(0, 1).reshape(50, 12))
    assert torch.allclose(attention.eval()(h), expected, atol=1e-5)
    trained = attention.train()(h)
    assert trained.shape == h.shape and not torch.allclose(trained, expected, atol=1e-3)


def test_transformer_without_root_skip_learns_a_block_graph(registry):
    task = _blocks()
    m = registry.methods["graph_transformer"]
    seed_everything(0)
    ctx = FitContext(device=torch.device("cpu"), seed=0, epochs=60)
    fitted = m.fit(task.without_test(), {**m.info.defaults, "pe_k": 4, "dropout": 0.5, "skip": False}, ctx)
    assert accuracy(m.evaluate(fitted, task.test.without_labels(), ctx), task.test.y) > 0.8  # chance is 1/3
