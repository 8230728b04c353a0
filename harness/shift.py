"""Distribution shift and out-of-distribution sets built from a test split, and AUROC.

Calibration under shift (Ovadia et al., *Can You Trust Your Model's Uncertainty?*, NeurIPS 2019):
every method is scored on shifted copies of the same test images, so accuracy, ECE and NLL can be
read as a function of the shift's intensity. The shifts here are image shifts (``N×C×H×W`` in
[0, 1]); intensity 0 is always the clean test split:

* ``rotate``: rotation by ``intensity`` degrees (counter-clockwise, bilinear, zero fill);
* ``noise``: additive Gaussian noise with standard deviation ``intensity``, clipped to [0, 1];
* ``contrast``: each image pulled towards its own mean by ``intensity`` (0.9 leaves a tenth of the
  contrast).

Out-of-distribution sets (labels meaningless, only the scores matter) are made from the same test
images: ``rotate90`` (digits on their side), ``noise`` (uniform noise images), ``permuted`` (each
image's pixels shuffled: the same intensities without their structure). Detection is scored by the
AUROC of an uncertainty score that should be higher out of distribution (predictive entropy, one
minus the top probability, mutual information).

Every random draw uses a fixed generator, so every method sees the very same shifted images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from typing import TYPE_CHECKING

from harness.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEFAULT_SHIFTS: dict[str, tuple[float, ...]] = {
    "rotate": (15.0, 30.0, 45.0, 60.0),
    "noise": (0.1, 0.2, 0.4),
    "contrast": (0.5, 0.7, 0.9),
}
SHIFT_UNITS = {"rotate": "degrees", "noise": "noise std", "contrast": "contrast removed"}
OOD_SETS: tuple[str, ...] = ("rotate90", "noise", "permuted")
_SHIFT_SEED = 20190601  # fixed: the shifted copies are a property of the benchmark, not of a method


@dataclass(frozen=True)
class ShiftSpec:
    """One shifted copy of the test split: a shift name and its intensity."""

    name: str
    intensity: float

    @property
    def label(self) -> str:
        return f"{self.name}@{self.intensity:g}"


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate images ``N×C×H×W`` counter-clockwise about their centre; corners fill with zeros."""
    import torch
    import torch.nn.functional as F

    theta = math.radians(degrees)
    c, s = math.cos(theta), math.sin(theta)
    # affine_grid maps output to input coordinates (x right, y down), so the inverse rotation goes here.
    mat = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(mat.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def gaussian_noise(x: torch.Tensor, std: float, seed: int = _SHIFT_SEED) -> torch.Tensor:
    import torch

    g = torch.Generator(device=x.device).manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)).clamp(0, 1)


def reduce_contrast(x: torch.Tensor, amount: float) -> torch.Tensor:
    mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
    return mean + (1 - amount) * (x - mean)


def apply_shift(x: torch.Tensor, spec: ShiftSpec) -> torch.Tensor:
    if spec.name == "rotate":
        return rotate(x, spec.intensity)
    if spec.name == "noise":
        return gaussian_noise(x, spec.intensity, _SHIFT_SEED + round(1000 * spec.intensity))
    if spec.name == "contrast":
        return reduce_contrast(x, spec.intensity)
    raise ConfigError(f"unknown shift {spec.name!r} (known: {', '.join(DEFAULT_SHIFTS)})")


def ood_images(x: torch.Tensor, name: str) -> torch.Tensor:
    """An out-of-distribution set of the same size and shape as ``x``, made from it."""
    import torch

    g = torch.Generator(device=x.device).manual_seed(_SHIFT_SEED + 7)
    if name == "rotate90":
        return torch.rot90(x, 1, dims=(-2, -1))
    if name == "noise":
        return torch.rand(x.shape, generator=g, device=x.device, dtype=x.dtype)
    if name == "permuted":
        flat = x.flatten(1)
        order = torch.rand(flat.shape, generator=g, device=x.device).argsort(1)
        return flat.gather(1, order).view_as(x)
    raise ConfigError(f"unknown OOD set {name!r} (known: {', '.join(OOD_SETS)})")


def parse_shifts(value: object) -> tuple[ShiftSpec, ...]:
    """The suite's ``shifts:`` value: ``true`` (the default set), ``false``, or a mapping from shift
    name to a list of intensities."""
    if value is False or value is None:
        return ()
    if value is True:
        table = DEFAULT_SHIFTS
    elif isinstance(value, dict):
        table = value
    else:
        raise ConfigError(f"shifts must be true, false or a mapping of shift name to intensities, got {value!r}")
    out = []
    for name, levels in table.items():
        if name not in DEFAULT_SHIFTS:
            raise ConfigError(f"unknown shift {name!r} (known: {', '.join(DEFAULT_SHIFTS)})")
        levels = [levels] if isinstance(levels, (int, float)) else levels
        if not isinstance(levels, (list, tuple)) or not levels or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in levels):
            raise ConfigError(f"shift {name!r}: intensities must be a list of positive numbers, got {levels!r}")
        if name in ("noise", "contrast") and any(v > 1 for v in levels):
            raise ConfigError(f"shift {name!r}: intensities must lie in (0, 1], got {levels!r}")
        out += [ShiftSpec(name, float(v)) for v in levels]
    return tuple(out)


def parse_ood(value: object) -> tuple[str, ...]:
    """The suite's ``ood:`` value: ``true`` (every OOD set), ``false``, or a list of set names."""
    if value is False or value is None:
        return ()
    if value is True:
        return OOD_SETS
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"ood must be true, false or a list of OOD set names, got {value!r}")
    unknown = [v for v in value if v not in OOD_SETS]
    if unknown:
        raise ConfigError(f"unknown OOD set(s) {', '.join(unknown)} (known: {', '.join(OOD_SETS)})")
    return tuple(value)


def auroc(in_scores: torch.Tensor, out_scores: torch.Tensor) -> float:
    """Area under the ROC curve for telling ``out`` (positives) from ``in`` by a score that should be
    higher out of distribution: the Mann–Whitney U statistic, ties counted one half."""
    import torch

    scores = torch.cat([in_scores.detach().double().cpu(), out_scores.detach().double().cpu()])
    n_in, n_out = in_scores.numel(), out_scores.numel()
    if n_in == 0 or n_out == 0:
        return float("nan")
    order = scores.argsort()
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
    # Average the ranks of tied scores.
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks[order] = mean_rank[inverse]
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2
    return (u / (n_in * n_out)).item()
