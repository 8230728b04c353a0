"""Masked autoencoding (He et al., CVPR 2022) on a timm Vision Transformer encoder.

The encoder sees only a random subset of the patches (their position embeddings added before the
masking, the class token after); a light decoder gets the encoded visible patches back in place,
a shared learned mask token everywhere else, and regresses the pixels of every patch. The loss
counts the masked patches only. After pre-training, the encoder alone is kept: it is the timm
model of a :class:`~harness.toolkit.models.Classifier`, so the probe and fine-tuning of the other
pre-training methods apply unchanged.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from harness.context import FitContext
from harness.errors import ConfigError
from harness.toolkit.pretrain import _stage_train_config
from harness.toolkit.train import History, train

MAE_DEFAULTS: dict[str, Any] = {"mask_ratio": 0.75, "decoder_dim": 64, "decoder_depth": 1, "norm_pix_loss": True}


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(N, C, H, W) → (N, L, p·p·C), patches in row-major order, as the patch embedding sees them."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)


def random_masking(n: int, length: int, ratio: float, device: torch.device | str = "cpu",
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example, a uniformly random set of ``int(length · (1 − ratio))`` patches to keep (at least
    one). Returns the kept positions (N, kept), in random order, and the 0/1 mask (N, length), 1
    where a patch is hidden."""
    keep = max(1, int(length * (1 - ratio)))
    order = torch.rand(n, length, device=device, generator=generator).argsort(1)
    kept = order[:, :keep]
    mask = torch.ones(n, length, device=device)
    mask.scatter_(1, kept, 0.0)
    return kept, mask


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error per patch, averaged over the hidden patches only (``mask`` = 1)."""
    per_patch = (pred.float() - target.float()).pow(2).mean(-1)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


class MaskedAutoencoder(nn.Module):
    """A timm ``VisionTransformer`` (class token, no register tokens) with an MAE decoder of
    ``decoder_depth`` transformer blocks of width ``decoder_dim``."""

    def __init__(self, encoder: nn.Module, in_chans: int, mask_ratio: float = 0.75, decoder_dim: int = 64,
                 decoder_depth: int = 1, norm_pix_loss: bool = True):
        super().__init__()
        from timm.models.vision_transformer import Block, VisionTransformer

        if not isinstance(encoder, VisionTransformer) or encoder.cls_token is None or encoder.reg_token is not None \
                or encoder.no_embed_class or encoder.pos_embed is None:
            raise ConfigError("mae needs a timm ViT encoder with a class token, e.g. model: timm:vit_tiny_patch16_224")
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must lie in (0, 1), not {mask_ratio}")
        self.encoder = encoder
        self.mask_ratio = float(mask_ratio)
        self.norm_pix_loss = bool(norm_pix_loss)
        self.patch = int(encoder.patch_embed.patch_size[0])
        length = encoder.pos_embed.shape[1] - 1
        dim = encoder.embed_dim
        heads = max(1, decoder_dim // 32)
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.zeros(1, length + 1, decoder_dim))
        self.decoder = nn.Sequential(*[Block(decoder_dim, heads, qkv_bias=True) for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * in_chans)
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.normal_(self.decoder_pos, std=0.02)

    def encode_visible(self, x: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        """The encoder on the ``kept`` patches of ``x`` (plus the class token): (N, 1 + kept, D)."""
        enc = self.encoder
        tokens = enc.patch_embed(x) + enc.pos_embed[:, 1:]
        tokens = torch.gather(tokens, 1, kept.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        h = enc.norm_pre(enc.pos_drop(torch.cat([cls, tokens], 1)))
        return enc.norm(enc.blocks(h))

    def decode(self, latent: torch.Tensor, kept: torch.Tensor, length: int) -> torch.Tensor:
        """Pixels of every patch (N, L, p·p·C) from the visible patches' latents put back in place."""
        h = self.decoder_embed(latent)
        n, d = h.shape[0], h.shape[-1]
        full = self.mask_token.to(h.dtype).expand(n, length, d).clone()
        full.scatter_(1, kept.unsqueeze(-1).expand(-1, -1, d), h[:, 1:])
        h = torch.cat([h[:, :1], full], 1) + self.decoder_pos
        return self.decoder_pred(self.decoder_norm(self.decoder(h)))[:, 1:]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction loss on a fresh random mask, the prediction and the mask."""
        kept, mask = random_masking(x.shape[0], self.num_patches(x), self.mask_ratio, x.device)
        loss, pred = self.masked_loss(x, kept, mask)
        return loss, pred, mask

    def num_patches(self, x: torch.Tensor) -> int:
        return (x.shape[-2] // self.patch) * (x.shape[-1] // self.patch)

    def masked_loss(self, x: torch.Tensor, kept: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction loss of ``x``'s hidden patches under a given mask (``kept`` visible), and the prediction."""
        target = patchify(x, self.patch)
        pred = self.decode(self.encode_visible(x, kept), kept, target.shape[1])
        if self.norm_pix_loss:  # per-patch normalised pixels (MAE, sec. 4: a better representation)
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        return masked_patch_loss(pred, target, mask), pred


def pretrain_masked(mae: MaskedAutoencoder, x: torch.Tensor, config: dict[str, Any], ctx: FitContext,
                    val_fn: Callable[[], float] | None = None) -> History:
    """Train ``mae`` to reconstruct the hidden patches of the unlabelled images ``x`` (``val_fn``: called
    after every epoch, as by :func:`harness.toolkit.train.train`)."""

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        return mae(x[idx])[0]

    return train(mae, step, len(x), _stage_train_config(config), ctx, val_fn=val_fn)


def layer_decay_groups(model: nn.Module, lr: float, weight_decay: float, decay: float) -> list[dict[str, Any]]:
    """Optimiser groups for fine-tuning a :class:`~harness.toolkit.models.Classifier` whose encoder
    is a timm ViT with layer-wise learning-rate decay (Clark et al., 2020; Bao et al., 2022; He et
    al., 2022, sec. A.1): the head trains at ``lr``, block ``i`` of ``L`` at ``lr · decay^(L − i)``,
    the embeddings at ``lr · decay^(L + 1)``, so the pre-trained early layers move least. Biases,
    norms, the class token and the position embedding get no weight decay."""
    enc = model.encoder
    depth = len(enc.blocks)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if not name.startswith("encoder."):
            layer = depth + 1
        elif name.startswith("encoder.blocks."):
            layer = int(name.split(".")[2]) + 1
        elif name.startswith(("encoder.patch_embed", "encoder.cls_token", "encoder.pos_embed", "encoder.reg_token")):
            layer = 0
        else:  # the final norms
            layer = depth + 1
        decayed = p.ndim > 1 and not name.endswith(("cls_token", "pos_embed", "reg_token"))
        group = groups.setdefault((layer, decayed), {"params": [], "lr": lr * decay ** (depth + 1 - layer),
                                                     "weight_decay": weight_decay if decayed else 0.0})
        group["params"].append(p)
    return list(groups.values())


__all__ = ["MAE_DEFAULTS", "layer_decay_groups", "patchify", "random_masking", "masked_patch_loss", "MaskedAutoencoder", "pretrain_masked"]
