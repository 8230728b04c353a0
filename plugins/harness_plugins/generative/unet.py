"""A small class-conditional U-Net that predicts the noise of a diffusion step: ε̂(x_t, t, y).

Not a :class:`~harness.toolkit.models.Classifier` (it maps images to images), so it is built directly rather
than through ``create_model``. Each resolution has one residual block whose normalised activations
are scaled and shifted by the time-and-class embedding (FiLM), as in improved DDPM; a resolution is
halved only while it is even, so 8×8 and 28×28 images both work. ``patch=2`` folds each 2×2 patch
into channels first (pixel unshuffle) and unfolds the output at the end: the network then runs at half
the resolution, about four times cheaper, which is what makes a diffusion classifier affordable on CPUs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness_plugins.generative.likelihood import TimeClassEmbedding


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """conv → norm → FiLM(embedding) → conv, with a residual connection."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = _norm(c_out)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.conv2(F.silu(h)) + self.skip(x)


class ConditionalUNet(nn.Module):
    """ε̂(x_t, t, y) for images ``C×H×W``; ``width·mults[i]`` channels at the ``i``-th resolution."""

    def __init__(self, channels: int, size: int, num_classes: int, width: int = 32,
                 mults: tuple[int, ...] = (1, 2, 2), patch: int = 1):
        super().__init__()
        if size % patch:
            raise ValueError(f"image size {size} is not a multiple of the patch size {patch}")
        emb_dim = 4 * width
        self.embed = TimeClassEmbedding(num_classes, emb_dim)
        self.fold = nn.PixelUnshuffle(patch) if patch > 1 else nn.Identity()
        self.unfold = nn.PixelShuffle(patch) if patch > 1 else nn.Identity()
        out_channels = channels * patch * patch
        size //= patch
        self.stem = nn.Conv2d(out_channels, width, 3, padding=1)
        widths = [width * m for m in mults]
        self.down, self.pool = nn.ModuleList(), nn.ModuleList()
        c = width
        for i, w in enumerate(widths):
            self.down.append(ResBlock(c, w, emb_dim))
            c = w
            halve = i < len(widths) - 1 and size % 2 == 0 and size > 2
            self.pool.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if halve else nn.Identity())
            size = size // 2 if halve else size
        self.mid = ResBlock(c, c, emb_dim)
        self.up, self.unpool = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(widths))):
            self.up.append(ResBlock(c + widths[i], widths[i], emb_dim))
            c = widths[i]
            if i > 0 and not isinstance(self.pool[i - 1], nn.Identity):
                self.unpool.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                 nn.Conv2d(c, widths[i - 1], 3, padding=1)))
                c = widths[i - 1]
            else:
                self.unpool.append(nn.Identity())
        self.out = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, out_channels, 3, padding=1))
        # The last layer starts at zero, so the untrained model predicts ε̂ = 0 (loss 1, not huge).
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.embed(t, y)
        h = self.stem(self.fold(x))
        skips = []
        for block, pool in zip(self.down, self.pool):
            h = block(h, emb)
            skips.append(h)
            h = pool(h)
        h = self.mid(h, emb)
        for block, unpool in zip(self.up, self.unpool):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            h = unpool(h)
        return self.unfold(self.out(h))


__all__ = ["ConditionalUNet", "ResBlock"]
