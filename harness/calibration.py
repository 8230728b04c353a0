"""Post-hoc calibration any method can opt into from its suite row (``calibrate: temperature``).

Temperature scaling (Guo et al., *On Calibration of Modern Neural Networks*, ICML 2017): one scalar
``T`` divides the log-probabilities, ``p' = softmax(log p / T)``. It keeps the arg-max, so accuracy is
unchanged, and only sharpens (``T < 1``) or softens (``T > 1``) the predictions. Because the core sees
probabilities, not logits, it works on ``log p``, which equals the logits up to a per-example
constant that the softmax removes — for a softmax classifier this is exactly Guo et al.'s method,
and for averaged predictions (ensembles, MC dropout) it scales the log of the average.
``T`` is fitted on the validation split by minimising NLL with L-BFGS, never on the test split.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CALIBRATIONS: tuple[str, ...] = ("temperature",)  # read by suite validation, which must not load torch


def _log_probs(probs: torch.Tensor) -> torch.Tensor:
    import torch

    return probs.detach().to("cpu", torch.float64).clamp_min(torch.finfo(torch.float64).eps).log()


def fit_temperature(probs: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature minimising the NLL of ``softmax(log probs / T)`` on ``labels``."""
    import torch
    import torch.nn.functional as F

    logp = _log_probs(probs)
    labels = labels.detach().to("cpu", torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # T = exp(log_t) stays positive
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logp / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    # A degenerate fit (every validation prediction right and certain) drives T to 0 or infinity.
    return min(max(t, 1e-2), 1e2)


def apply_temperature(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(log probs / T)`` as a float64 CPU tensor."""
    return (_log_probs(probs) / temperature).softmax(-1)
