"""Every metric the tables show, computed by the core from predicted probabilities.

Definitions, written once and recorded beside every figure:

* **accuracy**: share of examples whose arg-max class is the label.
* **ECE**: expected calibration error, top-label, ``ECE_BINS`` = 15 equal-width bins over (0, 1];
  bin *b* holds confidences in ``((b-1)/15, b/15]`` — a confidence of exactly 1.0 falls in the last
  bin and 0.0 in the first. ``ECE = Σ_b (n_b/N)·|acc_b − conf_b|``.
* **NLL**: mean negative log-probability of the label (natural log), probabilities clamped at
  float64's machine epsilon so that a confident mistake costs a large but finite amount.
* **Brier**: mean over examples of ``Σ_k (p_k − 1[y = k])²`` (the multiclass form, range 0–2).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

ECE_BINS = 15
ECE_DEFINITION = f"top-label ECE, {ECE_BINS} equal-width bins over (0,1], confidence 1.0 in the last bin"
_EPS = torch.finfo(torch.float64).eps


def _as64(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return probs.detach().to("cpu", torch.float64), labels.detach().to("cpu", torch.long)


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    probs, labels = _as64(probs, labels)
    return (probs.argmax(1) == labels).double().mean().item()


def nll(probs: torch.Tensor, labels: torch.Tensor) -> float:
    probs, labels = _as64(probs, labels)
    p = probs.gather(1, labels[:, None]).squeeze(1).clamp_min(_EPS)
    return (-p.log()).mean().item()


def brier(probs: torch.Tensor, labels: torch.Tensor) -> float:
    probs, labels = _as64(probs, labels)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    return ((probs - onehot) ** 2).sum(1).mean().item()


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin counts, mean confidence and accuracy (``nan`` where a bin is empty)."""

    lower: torch.Tensor
    upper: torch.Tensor
    count: torch.Tensor
    confidence: torch.Tensor
    accuracy: torch.Tensor

    def ece(self) -> float:
        n = self.count.sum()
        if n == 0:
            return float("nan")
        filled = self.count > 0
        gap = (self.accuracy[filled] - self.confidence[filled]).abs()
        return (self.count[filled].double() / n * gap).sum().item()


def reliability(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> ReliabilityBins:
    probs, labels = _as64(probs, labels)
    conf, pred = probs.max(1)
    correct = (pred == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    # bucketize(right=False) returns i with edges[i-1] < c <= edges[i]: bins closed on the right.
    idx = (torch.bucketize(conf, edges) - 1).clamp(0, bins - 1)
    count = torch.bincount(idx, minlength=bins)
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, conf)
    acc_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, correct)
    denom = count.double()
    nan = torch.full((bins,), float("nan"), dtype=torch.float64)
    return ReliabilityBins(
        lower=edges[:-1], upper=edges[1:], count=count,
        confidence=torch.where(count > 0, conf_sum / denom.clamp_min(1), nan),
        accuracy=torch.where(count > 0, acc_sum / denom.clamp_min(1), nan),
    )


def ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    return reliability(probs, labels, bins).ece()


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy per example (nats)."""
    p = probs.detach().double().clamp_min(_EPS)
    return -(p * p.log()).sum(-1)


def mutual_information(member_probs: torch.Tensor) -> torch.Tensor:
    """Epistemic part of the entropy from ``S × N × K`` sampled predictions (BALD):
    ``H[mean_s p_s] − mean_s H[p_s]`` per example."""
    return entropy(member_probs.mean(0)) - entropy(member_probs).mean(0)


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The headline metrics of one prediction set, keyed as the table columns are."""
    return {
        "accuracy": accuracy(probs, labels),
        "ece": ece(probs, labels),
        "nll": nll(probs, labels),
        "brier": brier(probs, labels),
    }
