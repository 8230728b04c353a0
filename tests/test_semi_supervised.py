"""Semi-supervised methods and their shared pieces (harness/consistency.py), through the public API."""
import math

import optuna
import pytest
import torch
from torch import nn

from conftest import run_cli
from harness.context import FitContext, seed_everything
from harness.data import load_task
from harness.metrics import accuracy
from harness.toolkit.augment import Augment
from harness.toolkit.train import EMA, TrainConfig, train
from harness.toolkit.augment import RandAugment, cutout
from harness_plugins.semi_supervised.consistency import (
    PairedBatches, TemporalEnsemble, frozen_batchnorm, kl_to_target, mixmatch_l2, mixmatch_mixup, pseudo_label_loss,
    sharpen, softmax_mse, two_views, vat_loss,
)

SSL_METHODS = ["mean_teacher", "pi_model", "temporal_ensembling", "pseudo_label", "vat"]
HOLISTIC = ["mixmatch", "fixmatch"]  # their own views, and FixMatch's batch follows from μ
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """These networks are tiny: one thread runs them fastest, and spares a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits10(registry):
    """Digits with 10 labels per class; the rest of train is unlabelled."""
    return load_task(registry, "digits", labels_per_class=10)


def test_label_budget_keeps_k_per_class_and_hides_the_rest(registry, digits10):
    assert torch.bincount(digits10.train.y).tolist() == [10] * 10
    assert digits10.unlabeled.y is None
    full = load_task(registry, "digits")
    assert len(digits10.train) + len(digits10.unlabeled) == len(full.train)
    again = load_task(registry, "digits", labels_per_class=10)
    assert torch.equal(again.train.index, digits10.train.index)  # drawn from the data seed only


@pytest.mark.parametrize("method", SSL_METHODS)
def test_every_method_learns_digits_from_10_labels_per_class(registry, digits10, method):
    m = registry.method(method)
    config = {**m.info.defaults, "model": "mlp", "lr": 1e-2, "batch_size": 64, "rampup": 0.2}
    ctx = FitContext(device=CPU, seed=0, epochs=6)
    seed_everything(0)
    fitted = m.fit(digits10.without_test(), config, ctx)
    probs = m.evaluate(fitted, digits10.test.without_labels(), ctx)
    assert accuracy(probs, digits10.test.y) > 0.8, method  # chance is 0.1
    # throughput counts the unlabelled and the labelled images of every step
    n = len(digits10.unlabeled)
    assert n % 64 >= 2  # so the loop's last batch is not dropped
    assert ctx.samples_seen == 6 * (n + math.ceil(n / 64) * config["labeled_batch"])
    # the budget and the late validation gain reach the per-seed table
    assert ctx.extras["steps"] == 6 * math.ceil(n / 64)
    assert 0 < ctx.extras["best_step"] <= ctx.extras["steps"]
    assert -100 <= ctx.extras["late_val_gain"] <= 100


def test_mean_teacher_predicts_with_the_teacher_and_counts_one_network(registry, digits10):
    m = registry.method("mean_teacher")
    ctx = FitContext(device=CPU, seed=0, epochs=1)
    fitted = m.fit(digits10.without_test(), {**m.info.defaults, "width": 16}, ctx)
    assert all(not p.requires_grad for p in fitted.parameters())  # the EMA copy, not the student
    total, trainable = ctx.parameter_counts()
    assert total == sum(p.numel() for p in fitted.parameters()) and trainable == total


@pytest.mark.parametrize("method", SSL_METHODS)
def test_defaults_cover_the_search_space(registry, digits10, method):
    m = registry.method(method)
    assert m.search_space(optuna.trial.FixedTrial(m.info.defaults), digits10.without_test()) == m.info.defaults
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    cfg = m.search_space(study.ask(), digits10.without_test())
    assert {"consistency", "rampup", "labeled_batch", "lr"} <= set(cfg)


def test_paired_batches_cycle_through_every_label(digits10):
    ctx = FitContext(device=CPU, seed=0)
    pairs = PairedBatches(digits10, labeled_batch=25, ctx=ctx)
    assert len(pairs) == len(digits10.unlabeled)
    seen = torch.cat([pairs(torch.arange(8)).y_l for _ in range(8)])  # 200 labels = two passes
    assert torch.bincount(seen).tolist() == [20] * 10
    assert ctx.samples_seen == 200
    b = pairs(torch.tensor([3, 5]))
    assert torch.equal(b.x_u, digits10.unlabeled.x[[3, 5]])


def test_paired_batches_without_budget_use_train_images_as_the_pool(digits):
    pairs = PairedBatches(digits.without_test(), labeled_batch=32, ctx=FitContext(device=CPU, seed=0))
    assert len(pairs) == len(digits.train)


def test_two_views_are_independent_draws():
    x = torch.rand(6, 1, 8, 8)
    a, b = two_views(x, Augment(degrees=20, translate=0.1))
    assert a.shape == b.shape == x.shape and not torch.allclose(a, b)
    assert two_views(x, None)[0] is x


def test_consistency_losses_on_hand_computed_cases():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # softmax(0, 0) = (.5, .5): squared distance .5 for the first row, ~0 for the second
    assert softmax_mse(logits, target).item() == pytest.approx(0.25, abs=1e-6)
    assert softmax_mse(logits, target, mask=torch.tensor([0.0, 1.0])).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_to_target(logits, logits).item() == pytest.approx(0.0, abs=1e-6)
    loss, mask = pseudo_label_loss(torch.zeros(2, 2), logits, threshold=0.9)
    assert mask.tolist() == [0.0, 1.0]  # the 50/50 row is not confident enough
    assert loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item() / 2, abs=1e-6)


def test_temporal_ensemble_is_bias_corrected():
    ens = TemporalEnsemble(4, 3, momentum=0.6, device=CPU)
    idx = torch.tensor([1, 2])
    _, mask = ens.targets(idx)
    assert mask.tolist() == [0.0, 0.0]
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    ens.update(idx, p)
    target, mask = ens.targets(idx)
    assert torch.allclose(target, p) and mask.tolist() == [1.0, 1.0]  # Z/(1-α) undoes the zero start
    q = torch.tensor([[0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    ens.update(idx, q)
    assert torch.allclose(ens.targets(idx)[0], (0.6 * 0.4 * p + 0.4 * q) / (1 - 0.36))


def test_vat_direction_beats_a_random_one_and_leaves_batchnorm_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 3))
    x = torch.randn(64, 5)
    stats = model[1].running_mean.clone()
    adversarial = vat_loss(model, x, eps=0.5, power_iterations=2)
    assert torch.equal(model[1].running_mean, stats)
    with torch.no_grad(), frozen_batchnorm(model):
        d = torch.randn_like(x)
        random = kl_to_target(model(x + 0.5 * d / d.norm(dim=1, keepdim=True)), model(x))
    assert adversarial.item() > 2 * random.item()
    adversarial.backward()  # differentiable with respect to the weights
    assert model[0].weight.grad is not None


def test_training_restores_the_average_of_the_best_epoch(digits):
    """When validation picks an earlier epoch, the EMA copy is rolled back with the weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    ema = EMA(model, decay=0.5, warmup=False)
    x, y = digits.train.x, digits.train.y
    scores = iter([0.9, 0.1, 0.1])
    snapshots = []
    ctx = FitContext(device=CPU, seed=0)

    def val():
        snapshots.append(ema.model[1].weight.detach().clone())
        return next(scores)

    train(model, lambda idx, _: nn.functional.cross_entropy(model(x[idx]), y[idx]), len(x),
          TrainConfig(epochs=3, lr=0.1), ctx, val_fn=val, ema=ema)
    assert torch.equal(ema.model[1].weight, snapshots[0])


@pytest.mark.parametrize("budget, fragment", [
    ("0", "labels_per_class must be a positive integer"),
    ("301", "labels per class 301 exceeds the 300 training examples of class"),
])
def test_label_budget_out_of_range_is_one_line_and_exit_2(tmp_path, budget, fragment):
    proc = run_cli("run", "mean_teacher", "--dataset", "mnist5k", "--labels-per-class", budget,
                   "--trials", "1", "--seeds", "1", "--epochs", "1", "--no-progress", cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("harness: error:") and fragment in lines[0], proc.stderr


@pytest.mark.parametrize("method", HOLISTIC)
def test_mixmatch_and_fixmatch_learn_digits_from_10_labels_per_class(registry, digits10, method):
    m = registry.method(method)
    config = {**m.info.defaults, "model": "mlp", "lr": 1e-2}
    ctx = FitContext(device=CPU, seed=0, epochs=5)
    seed_everything(0)
    fitted = m.fit(digits10.without_test(), config, ctx)
    probs = m.evaluate(fitted, digits10.test.without_labels(), ctx)
    assert accuracy(probs, digits10.test.y) > 0.8, method  # chance is 0.1
    n, batch = len(digits10.unlabeled), 64  # FixMatch: μ·labeled_batch = 2·32
    assert ctx.samples_seen == 5 * (n + math.ceil(n / batch) * config["labeled_batch"])
    assert ctx.extras["steps"] == 5 * math.ceil(n / batch)


@pytest.mark.parametrize("method", HOLISTIC)
def test_holistic_defaults_cover_their_search_space(registry, digits10, method):
    m = registry.method(method)
    assert m.search_space(optuna.trial.FixedTrial(m.info.defaults), digits10.without_test()) == m.info.defaults
    own = {"mixmatch": {"augmentations", "sharpen_temperature", "mixup_alpha", "rampup"},
           "fixmatch": {"mu", "threshold", "strong_ops", "cutout"}}[method]
    assert own | {"consistency", "labeled_batch", "lr"} <= set(m.info.defaults)


def test_sharpening_on_hand_computed_cases():
    p = torch.tensor([[0.6, 0.4], [0.5, 0.5]])
    # T = 0.5 squares: (.36, .16) / .52
    assert torch.allclose(sharpen(p, 0.5), torch.tensor([[0.36 / 0.52, 0.16 / 0.52], [0.5, 0.5]]))
    assert torch.allclose(sharpen(p, 1.0), p)
    assert sharpen(p, 0.01)[0].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)  # T → 0: the arg-max


def test_mixmatch_mixup_keeps_label_mass_and_leans_to_the_first_input():
    torch.manual_seed(0)
    x, p = torch.rand(6, 1, 4, 4), torch.rand(6, 3).softmax(-1)
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    x_mix, p_mix = mixmatch_mixup(x, p, torch.tensor(0.3), perm)
    assert torch.allclose(p_mix.sum(-1), torch.ones(6))
    assert torch.allclose(x_mix, 0.7 * x + 0.3 * x[perm])  # λ' = max(λ, 1 − λ)
    assert torch.allclose(p_mix, 0.7 * p + 0.3 * p[perm])
    assert mixmatch_l2(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.25)


def test_fixmatch_mask_follows_the_threshold():
    # confidences 0.97, 0.88 and 0.5 under τ = 0.95 and τ = 0.8
    weak = torch.tensor([[0.97, 0.03], [0.88, 0.12], [0.5, 0.5]]).log()
    strong = torch.zeros(3, 2)
    assert pseudo_label_loss(strong, weak, threshold=0.95)[1].tolist() == [1.0, 0.0, 0.0]
    loss, mask = pseudo_label_loss(strong, weak, threshold=0.8)
    assert mask.tolist() == [1.0, 1.0, 0.0]
    assert loss.item() == pytest.approx(2 * math.log(2) / 3, abs=1e-6)  # masked rows dilute the mean
    assert pseudo_label_loss(strong, weak, threshold=0.99)[0].item() == 0.0


def test_strong_view_varies_per_example_and_cutout_blanks_a_square():
    torch.manual_seed(0)
    x = torch.rand(32, 1, 28, 28)
    v = RandAugment(ops=2, cutout=0.5)(x)
    assert v.shape == x.shape and v.min() >= 0 and v.max() <= 1
    assert not torch.allclose(v, RandAugment(ops=2, cutout=0.5)(x))
    holes = (cutout(torch.zeros(64, 1, 28, 28), 0.5, fill=1.0) == 1).flatten(1).sum(1)
    assert holes.max() == 14 * 14 and holes.min() > 0  # whole where it fits, clipped at the edges
