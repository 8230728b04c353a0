"""Temperature scaling (fitted on val, applied to test) and the ECE it is judged by."""
from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from harness.calibration import apply_temperature, fit_temperature
from harness.data import load_task
from harness.errors import ConfigError
from harness.phases import FinalSettings, PhaseSettings, run_seed
from harness.metrics import ece, nll
from harness.plugins import load_plugins
from harness.suite import from_mapping


def _sampled(n: int = 4000, k: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels drawn from softmax(logits): calibrated by construction."""
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, k, generator=g)
    labels = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_distortion(true_t):
    logits, labels = _sampled()
    distorted = (logits / true_t).softmax(-1)  # over- (t < 1) or under-confident (t > 1)
    t = fit_temperature(distorted, labels)
    assert t == pytest.approx(1 / true_t, rel=0.1)
    assert nll(apply_temperature(distorted, t), labels) <= nll(distorted, labels) + 1e-9


def test_apply_temperature_keeps_the_prediction_and_normalises():
    logits, _ = _sampled(200)
    p = logits.softmax(-1)
    q = apply_temperature(p, 1.7)
    assert torch.equal(q.argmax(1), p.argmax(1))
    assert torch.allclose(q.sum(1), torch.ones(200, dtype=torch.float64))
    assert torch.allclose(apply_temperature(p, 1.0), p.double(), atol=1e-12)


def test_degenerate_validation_keeps_a_finite_temperature():
    probs = torch.eye(5)[torch.arange(20) % 5]  # every prediction certain and right
    t = fit_temperature(probs, torch.arange(20) % 5)
    assert 1e-2 <= t <= 1e2


def test_ece_matches_torchmetrics_l1_15_bins():
    metric = MulticlassCalibrationError(num_classes=10, n_bins=15, norm="l1")
    for seed in range(3):
        logits, labels = _sampled(1000, seed=seed)
        probs = (logits / (1.5 + seed)).softmax(-1)  # under-confident by 1.5×–3.5×
        assert probs.max() < 1.0  # torchmetrics bins a confidence of exactly 1.0 apart from ours
        assert ece(probs, labels) == pytest.approx(metric(probs, labels).item(), abs=1e-5)


def test_suite_row_calibrate_option():
    base = {"datasets": ["digits"]}
    suite = from_mapping({**base, "methods": [{"method": "erm", "name": "erm+ts", "calibrate": "temperature"}]})
    assert suite.rows[0].calibrate == "temperature"
    with pytest.raises(ConfigError, match="unknown calibrate"):
        from_mapping({**base, "methods": [{"method": "erm", "calibrate": "isotonic"}]})


def test_run_seed_fits_on_val_and_scores_calibrated_test():
    registry = load_plugins(modules=["fixture_plugins.centroid"])
    task = load_task(registry, "digits")
    method = registry.method("centroid")
    # A softmax over distances at a large temperature is badly under-confident.
    settings = dict(seeds=[0], phase=PhaseSettings(epochs=1, device=torch.device("cpu")))
    plain = run_seed(method, task, {"temperature": 20.0}, 0, FinalSettings(**settings))
    row = run_seed(method, task, {"temperature": 20.0}, 0, FinalSettings(**settings, calibrate="temperature"))
    assert "temperature" not in plain
    assert row["ece_uncalibrated"] == pytest.approx(plain["ece"])
    assert row["nll_uncalibrated"] == pytest.approx(plain["nll"])
    assert row["accuracy"] == plain["accuracy"]
    assert row["temperature"] < 1  # sharpens
    assert row["nll"] < row["nll_uncalibrated"] and row["ece"] < row["ece_uncalibrated"]
    assert sum(row["reliability_uncalibrated"]["count"]) == len(task.test)
