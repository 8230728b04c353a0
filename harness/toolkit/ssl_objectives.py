"""Objectives of the siamese self-supervised methods beyond SimCLR and BYOL: SimSiam's negative
cosine with a stop-gradient, and MoCo's queue of negatives with its InfoNCE loss; and the collapse
check they all share (:func:`projection_spread`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """−cos(p, z) averaged over the batch, with ``z`` detached: the stop-gradient that keeps SimSiam
    from collapsing (Chen & He, CVPR 2021, eq. 1)."""
    return -F.cosine_similarity(p.float(), z.detach().float(), dim=-1).mean()


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The symmetrised SimSiam loss ½ D(p1, sg(z2)) + ½ D(p2, sg(z1)); −1 at its minimum."""
    return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)


@torch.no_grad()
def projection_spread(z: torch.Tensor) -> float:
    """√d times the per-dimension standard deviation over a batch of the L2-normalised projections
    ``z`` (N × d), averaged over dimensions: about 1 for projections spread over the sphere, 0 when
    every input maps to one point, the collapse a siamese method without negatives can fall into
    (Chen & He, CVPR 2021, sec. 4.1 and fig. 2)."""
    z = F.normalize(z.float(), dim=1)
    return (z.std(0).mean() * z.shape[1] ** 0.5).item()


class MoCoQueue:
    """A first-in first-out queue of ``size`` L2-normalised keys of dimension ``dim``: the negatives
    of MoCo (He et al., CVPR 2020). It starts with random unit vectors; each push overwrites the
    oldest keys. A push builds a new tensor rather than writing in place, so a loss that read the
    queue before the push can still back-propagate."""

    def __init__(self, dim: int, size: int, device: torch.device | str = "cpu"):
        self.keys = F.normalize(torch.randn(int(size), int(dim), device=device), dim=1)
        self.ptr = 0

    def __len__(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def push(self, k: torch.Tensor) -> None:
        """Enqueue a batch of keys (normalised here), dropping as many of the oldest."""
        k = F.normalize(k.detach().float(), dim=1)
        if k.shape[0] >= len(self):
            k = k[-len(self):]
        n = k.shape[0]
        idx = (self.ptr + torch.arange(n, device=self.keys.device)) % len(self)
        self.keys = self.keys.index_copy(0, idx, k)
        self.ptr = (self.ptr + n) % len(self)


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE with one positive per query (its key ``k``, held fixed) against the queue's keys:
    cross-entropy over [q·k, q·queue] / τ with the positive at index 0 (MoCo, eq. 1)."""
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.detach().float(), dim=1)
    pos = (q * k).sum(1, keepdim=True)
    neg = q @ queue.T
    logits = torch.cat([pos, neg], 1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
