"""Residual bottleneck adapters inserted after the blocks of a frozen backbone.

An adapter is ``x + up(act(down(x)))`` with a narrow bottleneck and ``up`` initialised to zero, so
the adapted network starts out computing exactly what the pre-trained one did; only adapters and
the head then train (Rebuffi et al., Learning multiple visual domains with residual adapters,
NeurIPS 2017; Houlsby et al., Parameter-efficient transfer learning for NLP, ICML 2019). Feature
maps (N×C×H×W) get 1×1-convolution adapters, token sequences (N×L×D, ViTs) linear ones.

Where adapters go (:func:`adapter_sites`): after every block of a ViT-style ``blocks`` sequence,
of ResNet-style ``layer1…layer4`` stages, of ``stages[i].blocks`` (ConvNeXt-style), and after
every activation of a plain ``nn.Sequential`` encoder such as the built-in CNN.

Prefix tuning for ViTs (:func:`insert_prompts`) uses the same sites: every transformer block is
wrapped so that it sees ``n`` learned prompt tokens beside the image tokens, dropped again from its
output. The next block gets fresh prompts of its own ("deep" visual prompt tuning, Jia et al., ECCV
2022): to the image tokens they are extra keys and values in every layer's attention, the prefixes
of Li & Liang (ACL 2021) expressed as tokens.
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


class Prompted(nn.Module):
    """A transformer block run with ``n`` learned prompt tokens inserted after the sequence's
    ``skip`` leading tokens (class/register tokens) and removed from its output, so the block's
    output has the shape of its input."""

    def __init__(self, block: nn.Module, n: int, dim: int, skip: int):
        super().__init__()
        self.block = block
        self.skip = skip
        # The scale of timm's own learned tokens (class token, position embedding).
        self.prompts = nn.Parameter(torch.randn(n, dim) * 0.02)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        n, s = self.prompts.shape[0], self.skip
        prompts = self.prompts.to(x.dtype).expand(x.shape[0], -1, -1)
        out = self.block(torch.cat([x[:, :s], prompts, x[:, s:]], dim=1), *args, **kwargs)
        return torch.cat([out[:, :s], out[:, s + n:]], dim=1)


def insert_prompts(encoder: nn.Module, example: torch.Tensor, prompts: int = 8) -> nn.ParameterList:
    """Wrap every block of a ViT-style ``encoder`` (in place) in :class:`Prompted` with ``prompts``
    tokens each; return the prompt parameters. Raises :class:`ConfigError` for an encoder without
    transformer blocks."""
    blocks = getattr(encoder, "blocks", None)
    if not isinstance(blocks, nn.Sequential) or not len(blocks):
        raise ConfigError(f"prefix tuning needs a ViT-style backbone with transformer blocks (e.g. "
                          f"model: timm:vit_tiny_patch16_224), not {type(encoder).__name__}")
    if isinstance(prompts, bool) or not isinstance(prompts, int) or prompts < 1:
        raise ConfigError(f"prompts must be a positive integer, got {prompts!r}")
    sites = [(blocks, name) for name, _ in blocks.named_children()]
    shape = _output_shapes(encoder, sites[:1], example)[0]
    if len(shape) != 3:
        raise ConfigError(f"prefix tuning needs token blocks (N×L×D outputs), got {tuple(shape)}")
    skip = int(getattr(encoder, "num_prefix_tokens", 1))
    out = nn.ParameterList()
    for parent, name in sites:
        wrapped = Prompted(getattr(parent, name), prompts, int(shape[-1]), skip).to(example.device)
        setattr(parent, name, wrapped)
        out.append(wrapped.prompts)
    return out


__all__ = ["BottleneckAdapter", "Adapted", "adapter_sites", "insert_adapters", "Prompted", "insert_prompts"]
