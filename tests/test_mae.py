"""Masked-autoencoder fine-tuning: layer-wise learning-rate decay over a timm ViT's blocks."""
from __future__ import annotations

import pytest
import torch

from harness.context import FitContext
from harness.toolkit.mae import layer_decay_groups
from harness.toolkit.models import create_model
from harness.toolkit.train import TrainConfig, train


def _vit(digits, depth: int = 3):
    return create_model("timm:vit_tiny_patch16_224", digits, patch_size=2, depth=depth, embed_dim=32, num_heads=2)


def test_layer_decay_gives_each_depth_its_rate_and_spares_norms_from_weight_decay(digits):
    model = _vit(digits)
    groups = layer_decay_groups(model, lr=1.0, weight_decay=0.05, decay=0.5)
    rate = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert len(rate) == sum(1 for _ in model.parameters())  # every parameter in exactly one group
    enc = model.encoder
    assert rate[id(model.head.weight)] == (1.0, 0.05)
    assert rate[id(model.head.bias)] == (1.0, 0.0)
    assert rate[id(enc.blocks[2].mlp.fc1.weight)] == (0.5, 0.05)  # the last of 3 blocks: one step down
    assert rate[id(enc.blocks[0].attn.qkv.weight)] == (0.125, 0.05)
    assert rate[id(enc.blocks[0].norm1.weight)] == (0.125, 0.0)
    assert rate[id(enc.patch_embed.proj.weight)] == (0.0625, 0.05)
    assert rate[id(enc.pos_embed)] == rate[id(enc.cls_token)] == (0.0625, 0.0)
    assert {g["lr"] for g in layer_decay_groups(model, 1e-3, 0.05, 1.0)} == {1e-3}  # decay 1: one rate


def test_the_loop_trains_parameter_groups_at_their_own_rates(digits):
    model = _vit(digits, depth=1)
    frozen = model.encoder.patch_embed.proj.weight
    groups = layer_decay_groups(model, lr=1e-2, weight_decay=0.0, decay=0.0)  # decay 0: the encoder stands still
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = digits.train.x[:64], digits.train.y[:64]
    ctx = FitContext(device=torch.device("cpu"), seed=0)
    train(model, lambda idx, _: torch.nn.functional.cross_entropy(model(x[idx]), y[idx]), 64,
          TrainConfig(epochs=2, batch_size=32, lr=1.0), ctx, params=groups)
    after = dict(model.named_parameters())
    assert torch.equal(before["encoder.patch_embed.proj.weight"], frozen.detach())
    assert not torch.equal(before["head.weight"], after["head.weight"])  # the head trains at 1e-2, not 1.0
    assert (after["head.weight"] - before["head.weight"]).abs().max() < 0.5
    with pytest.raises(Exception, match="nothing to train"):
        train(model, lambda idx, _: x.sum(), 64, TrainConfig(epochs=1), ctx,
              params=[{"params": [p.requires_grad_(False) for p in model.parameters()]}])
