"""Batched, per-example image augmentation on the device.

torchvision's v2 transforms draw one set of parameters per call, so a batch tensor would get the
same rotation for every image; these draw parameters per example and warp the whole batch in one
``grid_sample``, which keeps augmentation off the host and out of the Python loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """Random affine (rotation, translation, scale), optional horizontal flip, optional noise."""

    degrees: float = 10.0
    translate: float = 0.1
    scale: tuple[float, float] = (0.9, 1.1)
    hflip: bool = False
    noise: float = 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        dev, dt = x.device, x.dtype
        angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(self.degrees)
        s = torch.empty(n, device=dev).uniform_(*self.scale)
        tx, ty = ((torch.rand(2, n, device=dev) * 2 - 1) * 2 * self.translate).unbind(0)
        sign = torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0) if self.hflip else torch.ones(n, device=dev)
        cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
        theta = torch.stack([
            torch.stack([cos * sign, -sin, tx], 1),
            torch.stack([sin * sign, cos, ty], 1),
        ], 1).to(dt)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
        if self.noise > 0:
            out = out + self.noise * torch.randn_like(out)
        return out


def augment_from_config(name: str, hflip_ok: bool = False) -> Augment | None:
    """The augmentation choices search spaces offer: ``none``, ``light``, ``strong``, and ``shift``
    (translation only, up to 10 % of the side: the random shift-and-crop a ViT trained from scratch needs)."""
    if name == "none":
        return None
    if name == "shift":
        return Augment(degrees=0, translate=0.1, scale=(1.0, 1.0), hflip=hflip_ok)
    if name == "light":
        return Augment(degrees=10, translate=0.08, scale=(0.95, 1.05), hflip=hflip_ok)
    if name == "strong":
        return Augment(degrees=20, translate=0.15, scale=(0.85, 1.15), hflip=hflip_ok, noise=0.05)
    raise ValueError(f"unknown augmentation {name!r}")


def weak_augment(hflip_ok: bool = False) -> Augment:
    """FixMatch's and MixMatch's weak view: a random shift of up to 12.5 % of the side and, where the
    data allows it, a horizontal flip (Sohn et al., 2020, sec. 2.3)."""
    return Augment(degrees=0.0, translate=0.125, scale=(1.0, 1.0), hflip=hflip_ok)


def _per_example(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``v`` (one value per example) shaped to broadcast against the batch ``x``."""
    return v.view(-1, *([1] * (x.ndim - 1)))


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``factor · x + (1 − factor) · other`` with one factor per example (PIL's ImageEnhance)."""
    f = _per_example(factor, x)
    return f * x + (1 - f) * other


def _autocontrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Stretch each image's channels to span [0, 1] (a flat channel is left alone)."""
    lo, hi = x.amin((-2, -1), keepdim=True), x.amax((-2, -1), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-8), x)


def _equalize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation over 256 grey levels per image and channel: every level maps to the
    share of pixels at or below it, measured from the darkest level present."""
    levels = (x.clamp(0, 1) * 255).round().long().flatten(2)
    hist = torch.zeros(*levels.shape[:2], 256, device=x.device).scatter_add_(2, levels, torch.ones_like(levels, dtype=torch.float))
    cdf = hist.cumsum(-1)
    first = cdf.masked_fill(hist == 0, float("inf")).amin(-1, keepdim=True)  # pixels at the darkest level
    rest = (levels.shape[-1] - first).clamp_min(1)
    lut = ((cdf - first) / rest).clamp(0, 1)
    out = lut.gather(2, levels).view_as(x).to(x.dtype)
    flat = (first == levels.shape[-1]).view(*x.shape[:2], 1, 1)  # one grey level: nothing to spread
    return torch.where(flat, x, out)


def _solarize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Invert the pixels at or above the threshold ``1 − |m|``."""
    return torch.where(x >= _per_example(1 - m.abs(), x), 1 - x, x)


def _posterize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Keep the top ``8 − ⌊4|m|⌋`` bits of each 8-bit level."""
    step = _per_example(2.0 ** (4 * m.abs()).floor(), x)
    return ((x * 255).round() / step).floor() * step / 255


def _contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean grey level (ITU-R 601 luma for RGB) by the factor ``1 + 0.95 m``."""
    if x.shape[-3] == 3:
        grey = (x * torch.tensor([0.2989, 0.587, 0.114], device=x.device, dtype=x.dtype).view(3, 1, 1)).sum(-3, keepdim=True)
    else:
        grey = x.mean(-3, keepdim=True)
    return _blend(x, grey.mean((-3, -2, -1), keepdim=True), 1 + 0.95 * m)


def _brightness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Blend with black by the factor ``1 + 0.95 m``."""
    return _blend(x, torch.zeros_like(x), 1 + 0.95 * m)


def _sharpness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Blend with PIL's 3 × 3 smoothing of the image (border pixels kept) by the factor ``1 + 0.95 m``."""
    c = x.shape[-3]
    kernel = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    kernel[1, 1] = 5
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c)
    return _blend(x, smooth, 1 + 0.95 * m)


# RandAugment's operations as in FixMatch's RandAugment, on float images in [0, 1]; ``m`` in [-1, 1]
# (one per example) scales each one's magnitude, its sign picks the direction of the geometric ones.
# The geometric operations are affine maps, written as the 2 × 3 matrix that takes output to input
# coordinates in grid_sample's [-1, 1] frame (a shift of 1 is half the side).
_COLOUR_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "autocontrast": _autocontrast, "equalize": _equalize, "solarize": _solarize, "posterize": _posterize,
    "contrast": _contrast, "brightness": _brightness, "sharpness": _sharpness,
}
_GEOMETRIC_OPS = ("identity", "rotate", "shear_x", "shear_y", "translate_x", "translate_y")
RAND_AUGMENT_OPS = (*_GEOMETRIC_OPS, *_COLOUR_OPS)


def _geometric_theta(op: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Per-example affine matrices (``n × 2 × 3``) for the geometric operations ``op`` (indices into
    :data:`RAND_AUGMENT_OPS`; any other index gets the identity): rotation by up to 30°, shear by
    up to atan(0.3), translation by up to 30 % of the side."""
    n = op.shape[0]
    theta = torch.eye(2, 3, device=m.device).repeat(n, 1, 1)
    angle = torch.deg2rad(30.0 * m)
    rot = op == RAND_AUGMENT_OPS.index("rotate")
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta[:, 0, 0] = torch.where(rot, cos, theta[:, 0, 0])
    theta[:, 1, 1] = torch.where(rot, cos, theta[:, 1, 1])
    theta[:, 0, 1] = torch.where(rot, -sin, torch.where(op == RAND_AUGMENT_OPS.index("shear_x"), 0.3 * m, 0.0))
    theta[:, 1, 0] = torch.where(rot, sin, torch.where(op == RAND_AUGMENT_OPS.index("shear_y"), 0.3 * m, 0.0))
    theta[:, 0, 2] = torch.where(op == RAND_AUGMENT_OPS.index("translate_x"), 0.6 * m, 0.0)
    theta[:, 1, 2] = torch.where(op == RAND_AUGMENT_OPS.index("translate_y"), 0.6 * m, 0.0)
    return theta


def cutout(x: torch.Tensor, size: float, fill: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Blank one square of side ``size`` × the image side per example, at a random centre (it may
    run off the edge), with ``fill`` (DeVries & Taylor, 2017; FixMatch's strong view ends with it)."""
    n, (h, w), dev = x.shape[0], x.shape[-2:], x.device
    half_h, half_w = size * h / 2, size * w / 2
    centre = torch.rand(2, n, 1, device=dev, generator=generator)
    cy, cx = centre[0] * h, centre[1] * w
    rows = torch.arange(h, device=dev)[None] + 0.5
    cols = torch.arange(w, device=dev)[None] + 0.5
    in_r = (rows - cy).abs() < half_h
    in_c = (cols - cx).abs() < half_w
    hole = (in_r[:, :, None] & in_c[:, None, :]).unsqueeze(1)
    return x.masked_fill(hole, fill)


@dataclass(frozen=True)
class RandAugment:
    """FixMatch's strong view: ``ops`` rounds, in each of which every example applies one operation
    drawn uniformly from RandAugment's list at a magnitude drawn uniformly, then Cutout (Cubuk et al.,
    2020; Sohn et al., 2020). Operation and magnitude are drawn per example and the whole batch is
    transformed in a few tensor operations on its device: one ``grid_sample`` for the geometric
    operations and each colour operation computed for the batch and kept where it was drawn, so
    there is no loop over images and no host sync. Expects images in [0, 1]; ``generator`` (on the
    batch's device) makes the draws reproducible."""

    ops: int = 2
    cutout: float = 0.5

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, dev = x.shape[0], x.device
        out = x
        for _ in range(self.ops):
            op = torch.randint(len(RAND_AUGMENT_OPS), (n,), device=dev, generator=generator)
            m = torch.rand(n, device=dev, generator=generator) * 2 - 1
            theta = _geometric_theta(op, m).to(x.dtype)
            grid = F.affine_grid(theta, list(out.shape), align_corners=False)
            warped = F.grid_sample(out, grid, padding_mode="zeros", align_corners=False)
            geometric = _per_example(op < len(_GEOMETRIC_OPS), out)
            new = torch.where(geometric, warped, out)  # identity included: no resampling blur
            for k, fn in enumerate(_COLOUR_OPS.values(), start=len(_GEOMETRIC_OPS)):
                new = torch.where(_per_example(op == k, out), fn(out, m), new)
            out = new.clamp(0.0, 1.0)
        return cutout(out, self.cutout, generator=generator) if self.cutout > 0 else out
