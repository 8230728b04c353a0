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


def _shear(x: torch.Tensor, m: float, axis: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF
    deg = math.degrees(math.atan(0.3 * m))
    return TF.affine(x, angle=0.0, translate=[0, 0], scale=1.0, shear=[deg, 0.0] if axis == 0 else [0.0, deg])


def _translate(x: torch.Tensor, m: float, axis: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF
    shift = round(0.3 * m * x.shape[-1])
    return TF.affine(x, angle=0.0, translate=[shift, 0] if axis == 0 else [0, shift], scale=1.0, shear=[0.0, 0.0])


def _rand_ops() -> dict[str, Callable[[torch.Tensor, float], torch.Tensor]]:
    """RandAugment's operations on float images in [0, 1]; ``m`` in [-1, 1] scales each one's
    magnitude (the sign picks the direction of the geometric ones), as in FixMatch's RandAugment."""
    from torchvision.transforms.v2 import functional as TF
    return {
        "identity": lambda x, m: x,
        "autocontrast": lambda x, m: TF.autocontrast(x),
        "equalize": lambda x, m: TF.equalize(x),
        "rotate": lambda x, m: TF.rotate(x, 30.0 * m),
        "solarize": lambda x, m: TF.solarize(x, 1.0 - abs(m)),
        "posterize": lambda x, m: TF.posterize((x * 255).to(torch.uint8), 8 - int(4 * abs(m))).float() / 255,
        "contrast": lambda x, m: TF.adjust_contrast(x, 1.0 + 0.95 * m),
        "brightness": lambda x, m: TF.adjust_brightness(x, 1.0 + 0.95 * m),
        "sharpness": lambda x, m: TF.adjust_sharpness(x, 1.0 + 0.95 * m),
        "shear_x": lambda x, m: _shear(x, m, 0),
        "shear_y": lambda x, m: _shear(x, m, 1),
        "translate_x": lambda x, m: _translate(x, m, 0),
        "translate_y": lambda x, m: _translate(x, m, 1),
    }


def cutout(x: torch.Tensor, size: float, fill: float = 0.5) -> torch.Tensor:
    """Blank one square of side ``size`` × the image side per example, at a random centre (it may
    run off the edge), with ``fill`` (DeVries & Taylor, 2017; FixMatch's strong view ends with it)."""
    n, (h, w), dev = x.shape[0], x.shape[-2:], x.device
    half_h, half_w = size * h / 2, size * w / 2
    cy, cx = torch.rand(n, 1, device=dev) * h, torch.rand(n, 1, device=dev) * w
    rows = torch.arange(h, device=dev)[None] + 0.5
    cols = torch.arange(w, device=dev)[None] + 0.5
    in_r = (rows - cy).abs() < half_h
    in_c = (cols - cx).abs() < half_w
    hole = (in_r[:, :, None] & in_c[:, None, :]).unsqueeze(1)
    return x.masked_fill(hole, fill)


@dataclass(frozen=True)
class RandAugment:
    """FixMatch's strong view: ``ops`` operations per example drawn uniformly from RandAugment's list
    (torchvision's v2 functional ops on the batch tensor) at a random magnitude, then Cutout
    (Cubuk et al., 2020; Sohn et al., 2020). A v2 op draws one magnitude per call, so each step groups
    the examples by the operation they drew and applies it once per group: the op varies per
    example, the magnitude per group and step. Expects images in [0, 1]."""

    ops: int = 2
    cutout: float = 0.5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        table = _rand_ops()
        names = list(table)
        out = x
        for _ in range(self.ops):
            choice = torch.randint(len(names), (x.shape[0],))  # on the host: it picks Python calls
            parts = out.clone()
            for k in choice.unique().tolist():
                sel = (choice == k).nonzero().squeeze(1).to(x.device)
                m = float(torch.empty(()).uniform_(-1.0, 1.0))
                parts[sel] = table[names[k]](out[sel], m).clamp(0.0, 1.0).to(out.dtype)
            out = parts
        return cutout(out, self.cutout) if self.cutout > 0 else out
