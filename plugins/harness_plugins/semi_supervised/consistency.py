"""Pieces shared by the semi-supervised methods: batch pairing, two views, consistency losses.

The loop of :func:`harness.toolkit.train.train` walks the *unlabelled* pool; :class:`PairedBatches` adds a
labelled batch to every unlabelled one, so an epoch is one pass over the unlabelled data however
few labels there are. Everything stays on the device: the labelled stream is a precomputed run of
shuffled permutations, and confidence masks and ensemble counts are tensors, never host values.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from harness.context import FitContext
from harness.task import Task


@dataclass(frozen=True)
class Batch:
    """One training step's data: a labelled batch and an unlabelled batch (``u_idx``: positions in
    the unlabelled pool, for methods that keep per-example state)."""

    x_l: torch.Tensor
    y_l: torch.Tensor
    x_u: torch.Tensor
    u_idx: torch.Tensor


class PairedBatches:
    """Pairs each unlabelled batch with a labelled one.

    The unlabelled pool is ``task.unlabeled`` or, when the task has no label budget (or the budget
    left nothing unlabelled), the training images themselves with their labels ignored. Labelled
    batches cycle through fresh permutations of the labelled set, so every label is seen equally
    often. ``ctx.samples_seen`` is credited with the labelled examples (the loop counts the
    unlabelled ones), so the throughput column counts every image a step trains on.
    """

    def __init__(self, task: Task, labeled_batch: int, ctx: FitContext, *, offset: int = 1):
        pool = task.unlabeled if task.unlabeled is not None and len(task.unlabeled) > 0 else task.train
        self.x_u = pool.x
        self.x_l, self.y_l = task.train.x, task.train.y
        self.batch = max(1, min(int(labeled_batch), len(self.y_l)))
        self.ctx = ctx
        self._gen = ctx.generator(offset)
        self._stream = torch.empty(0, dtype=torch.long, device=self.x_l.device)
        self._pos = 0

    def __len__(self) -> int:
        """Size of the unlabelled pool: the ``n`` the training loop iterates over."""
        return int(self.x_u.shape[0])

    def _labelled_indices(self) -> torch.Tensor:
        if self._pos + self.batch > self._stream.numel():
            n = self.y_l.numel()
            # Many permutations drawn at once: one device call refills the stream for many steps.
            perms = torch.rand(max(1, 4096 // n), n, device=self.x_l.device, generator=self._gen).argsort(1)
            self._stream = torch.cat([self._stream[self._pos:], perms.flatten()])
            self._pos = 0
        idx = self._stream[self._pos:self._pos + self.batch]
        self._pos += self.batch
        return idx

    def __call__(self, u_idx: torch.Tensor) -> Batch:
        l_idx = self._labelled_indices()
        self.ctx.samples_seen += l_idx.numel()
        return Batch(self.x_l[l_idx], self.y_l[l_idx], self.x_u[u_idx], u_idx)


def two_views(x: torch.Tensor, augment: Callable[[torch.Tensor], torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent stochastic augmentations of ``x``, drawn in one batched call."""
    if augment is None:
        return x, x
    return augment(torch.cat([x, x])).chunk(2)


@contextmanager
def frozen_batchnorm(model: nn.Module) -> Iterator[None]:
    """Forward passes inside keep using batch statistics but leave the running statistics alone:
    the extra passes of VAT's power iteration must not count as data the model saw."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


def softmax_mse(logits: torch.Tensor, target_probs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Squared distance between the softmax of ``logits`` and fixed target probabilities, summed over
    classes and averaged over the batch (the Π-model / mean-teacher consistency cost). ``mask``
    (0/1 per example) drops examples that have no target yet; the mean is still over the batch."""
    per_example = (logits.float().softmax(-1) - target_probs.detach().float()).pow(2).sum(-1)
    if mask is not None:
        per_example = per_example * mask
    return per_example.mean()


def kl_to_target(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_target ‖ p) averaged over the batch, with the target held fixed (VAT's divergence)."""
    target = target_logits.detach().float().log_softmax(-1)
    return F.kl_div(logits.float().log_softmax(-1), target, log_target=True, reduction="batchmean")


def pseudo_label_loss(logits: torch.Tensor, target_logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy against the hard pseudo-labels ``argmax(target_logits)`` where the target's
    confidence reaches ``threshold`` (Lee, 2013, with FixMatch's confidence mask). Returns the loss,
    averaged over the whole batch so masked examples dilute it, and the 0/1 mask."""
    probs = target_logits.detach().float().softmax(-1)
    confidence, labels = probs.max(-1)
    mask = (confidence >= threshold).float()
    return (F.cross_entropy(logits.float(), labels, reduction="none") * mask).mean(), mask


def _unit(d: torch.Tensor) -> torch.Tensor:
    norm = d.flatten(1).norm(dim=1).clamp_min(1e-12)
    return d / norm.view(-1, *([1] * (d.ndim - 1)))


def vat_loss(model: nn.Module, x: torch.Tensor, eps: float, xi: float = 0.1, power_iterations: int = 1) -> torch.Tensor:
    """Local distributional smoothness (Miyato et al., 2018): KL between the prediction at ``x``
    (held fixed) and at ``x + r_adv``, where ``r_adv`` of L2 norm ``eps`` per example is the direction
    that changes the prediction most, found by power iteration on the Hessian of the KL using finite
    differences of size ``xi``. Every pass sees the same batch, so BatchNorm's batch statistics do not
    differ between the clean and the perturbed prediction."""
    with frozen_batchnorm(model):
        with torch.no_grad():
            target = model(x)
        d = _unit(torch.randn_like(x))
        for _ in range(power_iterations):
            d.requires_grad_(True)
            dist = kl_to_target(model(x + xi * d), target)
            (grad,) = torch.autograd.grad(dist, d)
            d = _unit(grad.detach())
        return kl_to_target(model(x + eps * d), target)


class TemporalEnsemble:
    """Per-example exponential moving average of past predictions (Laine & Aila, 2017).

    ``targets(idx)`` gives the bias-corrected ensemble ``Z / (1 - α^t)``, where ``t`` counts this
    example's updates, and a 0/1 mask that is 0 for examples never predicted yet; ``update`` folds
    the current predictions in. Because the loop visits each example once per epoch, this is the
    paper's once-per-epoch accumulation, done at the visit.
    """

    def __init__(self, n: int, num_classes: int, momentum: float, device: torch.device):
        self.momentum = float(momentum)
        self.z = torch.zeros(n, num_classes, device=device)
        self.updates = torch.zeros(n, device=device)

    def targets(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.updates[idx]
        correction = (1 - self.momentum ** t).clamp_min(1e-8).unsqueeze(1)
        return self.z[idx] / correction, (t > 0).float()

    @torch.no_grad()
    def update(self, idx: torch.Tensor, probs: torch.Tensor) -> None:
        self.z[idx] = self.momentum * self.z[idx] + (1 - self.momentum) * probs.detach().float()
        self.updates[idx] += 1


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^(1/T) renormalised over classes: lowers the entropy of a guessed label distribution
    (MixMatch, Berthelot et al., 2019, eq. 7); T → 0 approaches the one-hot arg-max."""
    p = p.float().clamp_min(1e-12).pow(1.0 / temperature)
    return p / p.sum(-1, keepdim=True)


def mixmatch_mixup(x: torch.Tensor, p: torch.Tensor, lam: torch.Tensor,
                   perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp of the inputs and their target distributions with the shuffled batch ``perm``, at
    λ' = max(λ, 1 − λ) so that each mixed example stays closer to its own input (MixMatch, eq. 8–11).
    Targets that sum to one still do."""
    lam = torch.maximum(lam, 1 - lam).to(x.dtype)
    lam_x = lam.view(-1, *([1] * (x.ndim - 1))) if lam.ndim else lam
    lam_p = lam.view(-1, 1) if lam.ndim else lam
    return lam_x * x + (1 - lam_x) * x[perm], lam_p * p + (1 - lam_p) * p[perm]


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against target distributions, averaged over the batch."""
    return -(target.float() * logits.float().log_softmax(-1)).sum(-1).mean()


def mixmatch_l2(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MixMatch's unlabelled loss: squared distance between the softmax and the mixed guess,
    averaged over classes and examples (Berthelot et al., 2019, eq. 5)."""
    return (logits.float().softmax(-1) - target.detach().float()).pow(2).mean()
