"""What ``harness_evaluate`` hands back: class probabilities, and optionally sampled member predictions.

A plugin may return a bare ``N × K`` tensor (the core wraps it) or :class:`Predictions`. Plugins
written before :class:`Predictions` existed put sampled predictions on ``ctx.extras["member_probs"]``;
:meth:`Predictions.from_hook` still takes them from there.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from harness.errors import PluginOutputError

if TYPE_CHECKING:
    import torch

MEMBER_PROBS = "member_probs"  # the older side channel on ``ctx.extras``


@dataclass(frozen=True)
class Predictions:
    """Probabilities of one split (``N × K``, rows summing to one), with optional extras.

    ``members``: ``S × N × K`` predictions of an ensemble's members or MC-dropout samples whose mean
    is ``probs``; the core reports their mutual information. ``extras``: numbers about this
    prediction that become ``extra_<name>`` columns of the final tables.
    """

    probs: torch.Tensor
    members: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_hook(cls, value: Any, ctx: Any = None) -> Predictions:
        """What a ``harness_evaluate`` returned, as :class:`Predictions` (unchecked)."""
        legacy = ctx.extras.pop(MEMBER_PROBS, None) if ctx is not None else None
        if isinstance(value, Predictions):
            return value if value.members is not None or legacy is None else replace(value, members=legacy)
        return cls(value, members=legacy)

    def checked(self, n: int, k: int | None, method: str) -> Predictions:
        """These predictions with ``probs`` validated and converted to float64 on the CPU."""
        return replace(self, probs=check_probabilities(self.probs, n, k, method))


def check_probabilities(probs: Any, n: int, k: int | None, method: str) -> torch.Tensor:
    """Validate what ``harness_evaluate`` returned and convert it to a float64 CPU tensor."""
    import torch

    if not isinstance(probs, torch.Tensor):
        try:
            probs = torch.as_tensor(probs)
        except Exception:
            raise PluginOutputError(
                f"{method}: harness_evaluate returned {type(probs).__name__}, not an N×K tensor"
            ) from None
    probs = probs.detach().to("cpu", torch.float64)
    if probs.ndim != 2 or probs.shape[0] != n or (k is not None and probs.shape[1] != k):
        want = f"{n}×{k if k is not None else 'K'}"
        raise PluginOutputError(
            f"{method}: harness_evaluate returned shape {tuple(probs.shape)}, expected {want}"
        )
    if not torch.isfinite(probs).all():
        raise PluginOutputError(f"{method}: probabilities contain NaN or inf")
    if (probs < -1e-6).any():
        raise PluginOutputError(f"{method}: probabilities contain negative values")
    worst = (probs.sum(1) - 1).abs().max().item() if n else 0.0
    if worst > 1e-3:
        raise PluginOutputError(f"{method}: probability rows do not sum to one (off by up to {worst:.3g})")
    return probs.clamp_min(0)
