"""Batched, per-example image augmentation on the device.

torchvision's v2 transforms draw one set of parameters per call, so a batch tensor would get the
same rotation for every image; these draw parameters per example and warp the whole batch in one
``grid_sample``, which keeps augmentation off the host and out of the Python loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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
