"""Residual bottleneck adapters inserted after the blocks of a frozen backbone.

An adapter is ``x + up(act(down(x)))`` with a narrow bottleneck and ``up`` initialised to zero, so
the adapted network starts out computing exactly what the pre-trained one did; only adapters and
the head then train (Rebuffi et al., Learning multiple visual domains with residual adapters,
NeurIPS 2017; Houlsby et al., Parameter-efficient transfer learning for NLP, ICML 2019). Feature
maps (N×C×H×W) get 1×1-convolution adapters, token sequences (N×L×D, ViTs) linear ones.

Where adapters go (:func:`adapter_sites`): after every block of a ViT-style ``blocks`` sequence,
of ResNet-style ``layer1…layer4`` stages, of ``stages[i].blocks`` (ConvNeXt-style), and after
every activation of a plain ``nn.Sequential`` encoder such as the built-in CNN.
"""
from __future__ import annotations

import torch
from torch import nn

from harness.errors import ConfigError


class BottleneckAdapter(nn.Module):
    """``x + up(act(down(x)))`` over channels (``tokens=False``) or the last dimension (``True``)."""

    def __init__(self, dim: int, bottleneck: int, tokens: bool):
        super().__init__()
        if tokens:
            self.down, self.up, self.act = nn.Linear(dim, bottleneck), nn.Linear(bottleneck, dim), nn.GELU()
        else:
            self.down, self.up = nn.Conv2d(dim, bottleneck, 1), nn.Conv2d(bottleneck, dim, 1)
            self.act = nn.ReLU()
        nn.init.zeros_(self.up.weight)  # identity at the start: the pre-trained function is kept
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class Adapted(nn.Module):
    """A backbone block followed by its adapter; takes whatever arguments the block takes."""

    def __init__(self, block: nn.Module, adapter: BottleneckAdapter):
        super().__init__()
        self.block = block
        self.adapter = adapter

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.adapter(self.block(*args, **kwargs))


def adapter_sites(encoder: nn.Module) -> list[tuple[nn.Module, str]]:
    """(parent, child name) of every block an adapter follows, in forward order."""
    blocks = getattr(encoder, "blocks", None)
    if isinstance(blocks, nn.Sequential):
        return [(blocks, name) for name, _ in blocks.named_children()]
    stages = [getattr(encoder, f"layer{i}") for i in range(1, 5) if isinstance(getattr(encoder, f"layer{i}", None), nn.Sequential)]
    if stages:
        return [(stage, name) for stage in stages for name, _ in stage.named_children()]
    if isinstance(getattr(encoder, "stages", None), nn.Sequential):
        return [(stage.blocks, name) for stage in encoder.stages if isinstance(getattr(stage, "blocks", None), nn.Sequential)
                for name, _ in stage.blocks.named_children()]
    if isinstance(encoder, nn.Sequential):
        acts = (nn.ReLU, nn.GELU, nn.SiLU, nn.LeakyReLU)
        return [(encoder, name) for name, m in encoder.named_children() if isinstance(m, acts)]
    return []


@torch.no_grad()
def _output_shapes(encoder: nn.Module, sites: list[tuple[nn.Module, str]], example: torch.Tensor) -> list[torch.Size]:
    shapes: list[torch.Size] = []
    hooks = [getattr(parent, name).register_forward_hook(lambda m, a, out: shapes.append(out.shape))
             for parent, name in sites]
    was_training = encoder.training
    encoder.eval()  # a probe pass must not move BatchNorm statistics
    try:
        encoder(example)
    finally:
        encoder.train(was_training)
        for h in hooks:
            h.remove()
    return shapes


def insert_adapters(encoder: nn.Module, example: torch.Tensor, reduction: int = 8, min_bottleneck: int = 4) -> nn.ModuleList:
    """Put a :class:`BottleneckAdapter` after every block of ``encoder`` (in place) and return them.

    ``example``: a small input batch, used once to read each block's output size. The bottleneck is
    ``max(min_bottleneck, dim // reduction)``. Raises :class:`ConfigError` for an encoder whose
    blocks cannot be found.
    """
    sites = adapter_sites(encoder)
    if not sites:
        raise ConfigError(f"cannot find blocks to adapt in {type(encoder).__name__} "
                          "(supported: ViT blocks, ResNet layers, ConvNeXt stages, nn.Sequential encoders)")
    if reduction < 1:
        raise ConfigError(f"adapter reduction must be at least 1, got {reduction}")
    shapes = _output_shapes(encoder, sites, example)
    adapters = nn.ModuleList()
    for (parent, name), shape in zip(sites, shapes):
        tokens = len(shape) == 3
        dim = int(shape[-1] if tokens else shape[1])
        adapter = BottleneckAdapter(dim, max(min_bottleneck, dim // reduction), tokens).to(example.device)
        setattr(parent, name, Adapted(getattr(parent, name), adapter))
        adapters.append(adapter)
    return adapters


__all__ = ["BottleneckAdapter", "Adapted", "adapter_sites", "insert_adapters"]
