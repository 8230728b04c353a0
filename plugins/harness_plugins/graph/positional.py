"""Laplacian eigenvector positional encodings for graph transformers (Dwivedi & Bresson, 2020;
Rampášek et al., 2022): each node's entries in the ``k`` eigenvectors of the symmetric normalised
Laplacian with the smallest non-trivial eigenvalues.

An eigenvector's sign is arbitrary, so the encodings are defined only up to a sign per column: a
network sees a random sign per column at every training step (:func:`random_sign_flip`) and learns
not to depend on it. Relabelling the nodes permutes the rows and nothing else (up to those signs,
where eigenvalues are distinct).
"""
from __future__ import annotations

import numpy as np
import torch

# Graphs up to this many nodes are decomposed densely (exact, and faster than ARPACK at this size).
DENSE_BELOW = 1000


def normalised_laplacian(edge_index: torch.Tensor, num_nodes: int):
    """L = I − D^{-1/2} A D^{-1/2} of the undirected, unweighted graph without self-loops, as a SciPy
    CSR matrix; an isolated node's diagonal entry is 0, so every connected component contributes
    exactly one zero eigenvalue."""
    import scipy.sparse as sp

    src, dst = edge_index.detach().cpu().numpy()
    off = src != dst
    adj = sp.coo_matrix((np.ones(int(off.sum())), (src[off], dst[off])), shape=(num_nodes, num_nodes)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float64)
    deg = np.asarray(adj.sum(1)).ravel()
    inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-300)), 0.0)
    scaled = sp.diags(inv_sqrt) @ adj @ sp.diags(inv_sqrt)
    return (sp.diags((deg > 0).astype(np.float64)) - scaled).tocsr()


def laplacian_pe(edge_index: torch.Tensor, num_nodes: int, k: int, dense_below: int = DENSE_BELOW) -> torch.Tensor:
    """The (num_nodes × k) encodings: eigenvectors of the ``k`` smallest eigenvalues after the
    null space (one zero eigenvalue per connected component), in ascending order of eigenvalue;
    columns past the number of non-trivial eigenvectors are zero. Dense ``eigh`` below
    ``dense_below`` nodes, else ARPACK's ``eigsh`` in shift-invert mode just below zero."""
    from scipy.sparse.csgraph import connected_components

    out = np.zeros((num_nodes, k), dtype=np.float32)
    if k == 0 or num_nodes == 0:
        return torch.from_numpy(out)
    lap = normalised_laplacian(edge_index, num_nodes)
    components, _ = connected_components(lap, directed=False)
    wanted = min(num_nodes, components + k)
    if num_nodes < dense_below or wanted >= num_nodes - 1:
        values, vectors = np.linalg.eigh(lap.toarray())
    else:
        from scipy.sparse.linalg import eigsh

        # σ just below 0 keeps L − σI positive definite, so the factorisation never meets the null space;
        # a fixed start vector makes the result the same on every call.
        v0 = np.random.default_rng(0).standard_normal(num_nodes)
        values, vectors = eigsh(lap, k=wanted, sigma=-1e-3, which="LM", v0=v0)
    order = np.argsort(values, kind="stable")[components:wanted]
    out[:, :len(order)] = vectors[:, order]
    return torch.from_numpy(out)


def random_sign_flip(pe: torch.Tensor) -> torch.Tensor:
    """``pe`` with each column multiplied by an independent random ±1 (the sign-flip augmentation)."""
    signs = torch.randint(0, 2, (1, pe.shape[1]), device=pe.device, dtype=pe.dtype) * 2 - 1
    return pe * signs


__all__ = ["DENSE_BELOW", "laplacian_pe", "normalised_laplacian", "random_sign_flip"]
