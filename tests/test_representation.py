"""Self-supervised pre-training + linear probe: the losses, the two views, the cache, and each
method (simclr, byol, linear_probe) learning on real digits with a tiny budget."""
from __future__ import annotations

import math

import pytest
import torch

from harness.context import FitContext, seed_everything
from harness.data import load_task
from harness.metrics import accuracy
from harness.toolkit.models import create_model
from harness.toolkit.pretrain import byol_loss, nt_xent, view_augment
from harness_plugins.representation.training import pretraining_images

TINY = {"model": "cnn3", "width": 16, "pretrain_epochs": 3, "pretrain_batch_size": 128, "probe_epochs": 30}


def _fit(registry, method, task, config, cache, phase="final"):
    m = registry.method(method)
    ctx = FitContext(device=torch.device("cpu"), seed=0, epochs=2, cache_dir=cache, phase=phase)
    seed_everything(0)
    fitted = m.fit(task.without_test(), {**m.info.defaults, **config}, ctx)
    probs = m.evaluate(fitted, task.test.without_labels(), ctx)
    return fitted, ctx, accuracy(probs.double(), task.test.y)


def test_nt_xent_rewards_matching_views():
    z = torch.eye(4)
    matched = nt_xent(z, z, temperature=0.1)
    swapped = nt_xent(z, z[[1, 0, 3, 2]], temperature=0.1)
    # twins identical and orthogonal to the rest: -log(e^10 / (e^10 + 6)) per view
    assert matched.item() == pytest.approx(math.log1p(6 * math.exp(-10.0)), rel=1e-3)
    assert swapped > 5
    assert byol_loss(z, z).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(z, -z).item() == pytest.approx(4.0)


def test_two_views_differ_but_keep_shape(digits):
    aug = view_augment("medium")
    x = digits.train.x[:16]
    v1, v2 = aug(x), aug(x)
    assert v1.shape == x.shape and torch.isfinite(v1).all()
    assert not torch.allclose(v1, v2)
    with pytest.raises(Exception, match="unknown view strength"):
        view_augment("wild")


def test_pretraining_sees_every_training_image(registry):
    budget = load_task(registry, "digits", labels_per_class=5)
    full = load_task(registry, "digits")
    # labelled + unlabelled in data-set order: the same tensor (and cache entry) as without a budget
    assert torch.equal(pretraining_images(budget), full.train.x)


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_self_supervised_probe_learns(registry, digits, tmp_path, method):
    fitted, ctx, acc = _fit(registry, method, digits, TINY, tmp_path)
    assert acc > 0.6, acc  # chance is 0.1
    total, trainable = ctx.parameter_counts()
    # the counted parameters are exactly those of the network that predicts
    assert {id(p) for m in ctx.modules for p in m.parameters()} == {id(p) for p in fitted.parameters()}
    assert trainable == 64 * 10 + 10  # the probe alone trains
    assert not any(p.requires_grad for p in fitted.encoder.parameters())


def test_tuning_trials_share_one_pretraining(registry, digits, tmp_path):
    _, first, _ = _fit(registry, "simclr", digits, TINY, tmp_path, phase="tune")
    _, second, acc = _fit(registry, "simclr", digits, {**TINY, "probe_lr": 3e-3}, tmp_path, phase="tune")
    assert len(list((tmp_path / "pretrain").glob("*.pt"))) == 1
    assert second.samples_seen < first.samples_seen  # the second trial trained the probe only
    assert acc > 0.6


def test_linear_probe_leaves_the_random_encoder_untouched(registry, digits, tmp_path):
    fitted, ctx, acc = _fit(registry, "linear_probe", digits, {"model": "cnn3", "width": 16}, tmp_path)
    assert acc > 0.5, acc
    seed_everything(0)
    fresh = create_model("cnn3", digits, width=16)
    for (name, value), (_, init) in zip(fitted.encoder.state_dict().items(), fresh.encoder.state_dict().items()):
        assert torch.equal(value, init), name  # weights and BatchNorm statistics alike
    assert not list((tmp_path / "pretrain").glob("*.pt"))


@pytest.mark.slow
def test_simclr_on_a_timm_backbone(registry, digits, tmp_path):
    config = {**TINY, "model": "timm:resnet10t", "pretrain_epochs": 1, "probe_epochs": 20}
    fitted, ctx, acc = _fit(registry, "simclr", digits, config, tmp_path)
    assert acc > 0.3, acc  # one epoch of pre-training on 8×8 images; chance is 0.1
    total, trainable = ctx.parameter_counts()
    assert trainable == fitted.feature_dim * 10 + 10 and total > 1_000_000
