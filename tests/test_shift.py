"""Shifted test copies, OOD sets, AUROC, and the shift/OOD scoring the core runs after the test split."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from harness.data import load_task
from harness.errors import ConfigError
from harness.phases import FinalSettings, PhaseSettings, run_seed
from harness.shift import (
    DEFAULT_SHIFTS, OOD_SETS, ShiftSpec, apply_shift, auroc, ood_images, parse_ood, parse_shifts, rotate,
)
from harness.plugins import load_plugins
from harness.suite import from_mapping


@pytest.fixture(scope="module")
def centroid():
    """The nearest-centroid test plugin: fast, real, and blind to rotations."""
    registry = load_plugins(modules=["fixture_plugins.centroid"])
    return registry.method("centroid"), load_task(registry, "digits")


@pytest.fixture
def images():
    return torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_rotation_by_quarter_turns_matches_rot90(images):
    assert torch.allclose(rotate(images, 90), torch.rot90(images, 1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(rotate(images, -90), torch.rot90(images, -1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(rotate(images, 0), images, atol=1e-6)


def test_rotation_moves_a_pixel_counter_clockwise():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 8] = 1.0  # right of centre
    y = rotate(x, 90)
    assert y[0, 0].argmax().item() == 0 * 9 + 4  # now above centre


def test_noise_is_fixed_clipped_and_grows_with_intensity(images):
    a = apply_shift(images, ShiftSpec("noise", 0.2))
    assert torch.equal(a, apply_shift(images, ShiftSpec("noise", 0.2)))  # every method sees the same images
    assert a.min() >= 0 and a.max() <= 1
    strong = apply_shift(images, ShiftSpec("noise", 0.4))
    assert (strong - images).abs().mean() > (a - images).abs().mean()


def test_contrast_keeps_the_mean_and_shrinks_the_spread(images):
    y = apply_shift(images, ShiftSpec("contrast", 0.7))
    assert torch.allclose(y.mean((1, 2, 3)), images.mean((1, 2, 3)), atol=1e-6)
    assert torch.allclose(y.std((1, 2, 3)), 0.3 * images.std((1, 2, 3)), atol=1e-5)


@pytest.mark.parametrize("name", OOD_SETS)
def test_ood_sets_keep_shape_and_range(images, name):
    out = ood_images(images, name)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, images)
    if name == "permuted":  # same intensities, no structure
        assert torch.allclose(out.flatten(1).sort(1).values, images.flatten(1).sort(1).values)


def test_auroc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        inside = rng.integers(0, 6, 80).astype(float)
        outside = rng.integers(2, 9, 50).astype(float)
        ours = auroc(torch.tensor(inside), torch.tensor(outside))
        ref = roc_auc_score(np.r_[np.zeros(80), np.ones(50)], np.r_[inside, outside])
        assert ours == pytest.approx(ref, abs=1e-12)
    cont_in, cont_out = rng.normal(size=300), rng.normal(0.7, size=200)
    ref = roc_auc_score(np.r_[np.zeros(300), np.ones(200)], np.r_[cont_in, cont_out])
    assert auroc(torch.tensor(cont_in), torch.tensor(cont_out)) == pytest.approx(ref, abs=1e-12)
    assert auroc(torch.zeros(3), torch.ones(4)) == 1.0


def test_parse_shifts_and_ood():
    assert len(parse_shifts(True)) == sum(len(v) for v in DEFAULT_SHIFTS.values())
    assert parse_shifts(False) == ()
    assert parse_shifts({"rotate": [30]}) == (ShiftSpec("rotate", 30.0),)
    assert parse_ood(True) == OOD_SETS and parse_ood(["noise"]) == ("noise",)
    for bad in ({"blur": [1]}, {"noise": [2.0]}, {"rotate": []}, "yes"):
        with pytest.raises(ConfigError):
            parse_shifts(bad)
    with pytest.raises(ConfigError):
        parse_ood(["mnist-c"])


def test_suite_validates_shift_keys():
    base = {"datasets": ["digits"], "methods": ["erm"]}
    suite = from_mapping({**base, "shifts": {"rotate": [15, 30]}, "ood": True})
    assert parse_shifts(suite.shifts)[1].intensity == 30.0
    with pytest.raises(ConfigError, match="unknown shift"):
        from_mapping({**base, "shifts": {"zoom": [2]}})


def test_run_seed_scores_every_shift_and_ood_set(centroid):
    method, digits = centroid
    shifts = parse_shifts({"rotate": [30, 60], "noise": [0.3]})
    row = run_seed(method, digits, {"temperature": 1.0}, 0, FinalSettings(
        seeds=[0], phase=PhaseSettings(epochs=1, device=torch.device("cpu")), shifts=shifts, ood=("noise", "rotate90")))
    assert [(s["shift"], s["intensity"]) for s in row["shift"]] == [("rotate", 30.0), ("rotate", 60.0), ("noise", 0.3)]
    acc = {s["intensity"]: s["accuracy"] for s in row["shift"] if s["shift"] == "rotate"}
    assert row["accuracy"] > acc[30.0] > acc[60.0]  # a nearest-centroid model suffers under rotation
    assert all(0 <= s["ece"] <= 1 and s["nll"] > 0 for s in row["shift"])
    assert set(row["ood"]) == {"noise", "rotate90"}
    assert set(row["ood"]["noise"]) == {"auroc_entropy", "auroc_max_prob"}
    # The scores are no constant: noise images are told apart from digits better than chance.
    assert row["ood"]["noise"]["auroc_entropy"] > 0.6
