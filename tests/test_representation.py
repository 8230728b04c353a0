"""Self-supervised pre-training + linear probe: the losses, the two views, the cache, and each
method (simclr, byol, linear_probe) learning on real digits with a tiny budget."""
from __future__ import annotations

import math

import optuna
import pytest
import torch

from harness.context import FitContext, seed_everything
from harness.data import load_task
from harness.metrics import accuracy
from harness.toolkit.models import create_model
from harness.toolkit.mae import masked_patch_loss, patchify, random_masking
from harness.toolkit.pretrain import byol_loss, nt_xent, view_augment
from harness.toolkit.ssl_objectives import MoCoQueue, info_nce, negative_cosine, projection_spread, simsiam_loss
from harness_plugins.representation.training import pretraining_images

TINY = {"model": "cnn3", "width": 16, "pretrain_epochs": 3, "pretrain_batch_size": 128, "probe_epochs": 30}
# A two-block ViT on 8×8 digits: patch 2 gives 16 patches, as patch 7 does on 28×28
TINY_VIT = {"patch_size": 2, "depth": 2, "pretrain_epochs": 3, "pretrain_batch_size": 128, "probe_epochs": 30,
            "batch_size": 64, "augment": "none", "warmup_epochs": 1}


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


@pytest.mark.parametrize("method", ["simclr", "byol", "simsiam", "moco"])
def test_self_supervised_probe_learns(registry, digits, tmp_path, method):
    fitted, ctx, acc = _fit(registry, method, digits, TINY, tmp_path)
    assert acc > 0.6, acc  # chance is 0.1
    total, trainable = ctx.parameter_counts()
    # the counted parameters are exactly those of the network that predicts
    assert {id(p) for m in ctx.modules for p in m.parameters()} == {id(p) for p in fitted.parameters()}
    assert trainable == 64 * 10 + 10  # the probe alone trains
    assert not any(p.requires_grad for p in fitted.encoder.parameters())
    assert ctx.extras["proj_spread"] > 0.2, ctx.extras  # not collapsed (≈ 0 would be)


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


def test_simsiam_stops_the_gradient_at_the_target_branch():
    p = torch.randn(8, 16, requires_grad=True)
    z = torch.randn(8, 16, requires_grad=True)
    negative_cosine(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None  # sg(z): no gradient reaches the projection it compares against
    u = torch.eye(4)
    assert simsiam_loss(u, u, u, u).item() == pytest.approx(-1.0)
    assert simsiam_loss(u, u, -u, -u).item() == pytest.approx(1.0)


def test_projection_spread_tells_collapse_from_spread():
    torch.manual_seed(0)
    spread = torch.randn(512, 64)
    assert projection_spread(spread) == pytest.approx(1.0, abs=0.05)  # isotropic: 1/√d per dimension
    collapsed = torch.randn(1, 64) + 1e-4 * torch.randn(512, 64)
    assert projection_spread(collapsed) < 0.01
    assert projection_spread(3 * spread) == pytest.approx(projection_spread(spread))  # scale-free


def test_moco_queue_is_first_in_first_out():
    queue = MoCoQueue(dim=2, size=4)
    assert queue.keys.shape == (4, 2) and torch.allclose(queue.keys.norm(dim=1), torch.ones(4))
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    queue.push(a)
    assert torch.equal(queue.keys[:3], torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))  # normalised
    queue.push(torch.tensor([[0.0, -1.0], [-1.0, 0.0]]))  # fills slot 3, then overwrites the oldest (slot 0)
    assert torch.equal(queue.keys, torch.tensor([[-1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, -1.0]]))
    assert queue.ptr == 1
    queue.push(torch.tensor([[1.0, 1.0]] * 6))  # more than fits: only the newest four stay
    assert torch.allclose(queue.keys, torch.full((4, 2), 2 ** -0.5))


def test_info_nce_picks_the_positive_out_of_the_queue():
    q = torch.tensor([[1.0, 0.0, 0.0]])
    negatives = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    # cos 1 with the key, 0 with both negatives: -log(e^(1/τ) / (e^(1/τ) + 2))
    expected = math.log1p(2 * math.exp(-1 / 0.2))
    assert info_nce(q, q, negatives, 0.2).item() == pytest.approx(expected, rel=1e-5)
    assert info_nce(q, negatives[:1], negatives, 0.2) > 1.0


def test_mae_masking_keeps_exactly_the_right_share_of_patches():
    for length, ratio, keep in [(16, 0.75, 4), (49, 0.75, 12), (16, 0.5, 8)]:
        kept, mask = random_masking(32, length, ratio)
        assert kept.shape == (32, keep) and mask.shape == (32, length)
        assert (mask.sum(1) == length - keep).all()
        assert (mask.gather(1, kept) == 0).all()  # the kept patches are exactly the unmasked ones
        assert (kept.sort(1).values.diff(dim=1) > 0).all()  # no patch kept twice
    masks = random_masking(64, 16, 0.75, generator=torch.Generator().manual_seed(0))[1]
    assert len({tuple(m.tolist()) for m in masks}) > 32  # a fresh mask per example (1,820 possible)


def test_mae_loss_counts_the_masked_patches_only():
    x = torch.arange(2 * 16, dtype=torch.float).view(1, 2, 4, 4)
    patches = patchify(x, 2)
    assert patches.shape == (1, 4, 8)
    assert patches[0, 0].tolist() == [0.0, 16.0, 1.0, 17.0, 4.0, 20.0, 5.0, 21.0]  # (row, col, channel) order
    target = torch.zeros(1, 4, 3)
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    pred = torch.zeros(1, 4, 3)
    pred[0, 1] = 100.0  # wrong everywhere on a visible patch: no loss
    pred[0, 3] = -7.0
    assert masked_patch_loss(pred, target, mask).item() == 0.0
    pred[0, 2] = 2.0  # error 4 per pixel on one of the two masked patches
    assert masked_patch_loss(pred, target, mask).item() == pytest.approx(2.0)


def test_mae_rows_learn_and_share_one_pretraining(registry, digits, tmp_path):
    _, probe_ctx, probe_acc = _fit(registry, "mae", digits, TINY_VIT, tmp_path)
    assert probe_acc > 0.25, probe_acc  # chance is 0.1; three epochs of pre-training on 8×8 digits
    fitted, ctx, tuned_acc = _fit(registry, "mae_finetune", digits, TINY_VIT, tmp_path)
    assert tuned_acc > 0.25, tuned_acc
    assert len(list((tmp_path / "pretrain").glob("*.pt"))) == 1  # the fine-tuning row read the cache
    assert ctx.samples_seen < probe_ctx.samples_seen
    total, trainable = ctx.parameter_counts()
    assert trainable == total == sum(p.numel() for p in fitted.parameters())  # the whole ViT fine-tunes


@pytest.mark.parametrize("method", ["simsiam", "moco", "mae", "mae_finetune"])
def test_new_defaults_lie_in_their_search_space(registry, method):
    m = registry.method(method)
    task = load_task(registry, "mnist5k", labels_per_class=10)
    cfg = m.search_space(optuna.trial.FixedTrial(m.info.defaults), task)  # raises where a default is outside
    assert cfg and cfg == {k: m.info.defaults[k] for k in cfg}
