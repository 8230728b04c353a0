import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, log_loss

from harness import metrics


def test_hand_computed_ece_nll_brier():
    # Three predictions: conf 0.9 correct, conf 0.6 wrong, conf 1.0 correct.
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0])
    # Bins of width 1/15: 0.9 → bin 13 (0.8667, 0.9333], 0.6 → bin 8 (0.5333, 0.6], 1.0 → bin 14.
    expected_ece = (abs(1 - 0.9) + abs(0 - 0.6) + abs(1 - 1.0)) / 3
    assert metrics.ece(probs, labels) == pytest.approx(expected_ece)
    assert metrics.accuracy(probs, labels) == pytest.approx(2 / 3)
    assert metrics.nll(probs, labels) == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(1.0)) / 3)
    brier = ((0.1**2 + 0.1**2) + (0.6**2 + 0.6**2) + 0.0) / 3
    assert metrics.brier(probs, labels) == pytest.approx(brier)


def test_confidence_one_falls_in_last_bin_and_zero_gap_when_right():
    probs = torch.tensor([[1.0, 0.0]] * 4, dtype=torch.float64)
    bins = metrics.reliability(probs, torch.zeros(4, dtype=torch.long))
    assert bins.count.tolist() == [0] * 14 + [4]
    assert bins.ece() == 0.0


def test_bin_edges_are_closed_on_the_right():
    # 0.6 == 9/15 belongs to bin 8, (8/15, 9/15]
    probs = torch.tensor([[0.6, 0.4]], dtype=torch.float64)
    bins = metrics.reliability(probs, torch.tensor([0]))
    assert bins.count[8] == 1


def _random_predictions(n=500, k=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, k, (n,), generator=g)
    return logits.softmax(1), labels


def test_against_scikit_learn():
    probs, labels = _random_predictions()
    assert metrics.accuracy(probs, labels) == pytest.approx(accuracy_score(labels, probs.argmax(1)))
    assert metrics.nll(probs, labels) == pytest.approx(log_loss(labels, probs.numpy(), labels=list(range(7))))
    onehot = np.eye(7)[labels.numpy()]
    assert metrics.brier(probs, labels) == pytest.approx(((probs.numpy() - onehot) ** 2).sum(1).mean())


def test_ece_against_torchmetrics():
    tm = pytest.importorskip("torchmetrics.classification")
    for seed in range(3):
        probs, labels = _random_predictions(seed=seed)
        ref = tm.MulticlassCalibrationError(num_classes=7, n_bins=15, norm="l1")(probs.float(), labels)
        assert metrics.ece(probs, labels) == pytest.approx(ref.item(), abs=1e-5)


def test_entropy_and_mutual_information():
    uniform = torch.full((1, 4), 0.25)
    assert metrics.entropy(uniform).item() == pytest.approx(math.log(4))
    # Two confident members that disagree: all the entropy is epistemic.
    members = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert metrics.mutual_information(members).item() == pytest.approx(math.log(2), abs=1e-6)
    agree = torch.tensor([[[0.5, 0.5]], [[0.5, 0.5]]])
    assert metrics.mutual_information(agree).item() == pytest.approx(0.0, abs=1e-9)


def test_classification_metrics_keys():
    probs, labels = _random_predictions(n=50)
    assert set(metrics.classification_metrics(probs, labels)) == {"accuracy", "ece", "nll", "brier"}
