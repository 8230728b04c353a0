"""What crosses the hook boundary: Predictions or a bare tensor, checked once per call."""
from __future__ import annotations

import pytest
import torch

import harness
from harness import predictions as predictions_module
from harness.context import FitContext
from harness.errors import PluginOutputError
from harness.phases import PhaseSettings, fit, predict
from harness.plugins import load_plugins
from harness.predictions import MEMBER_PROBS, Predictions


def test_a_bare_tensor_and_the_older_side_channel_still_work():
    members = torch.full((3, 2, 2), 0.5)
    ctx = FitContext(device=torch.device("cpu"), seed=0)
    ctx.extras[MEMBER_PROBS] = members
    got = Predictions.from_hook(members.mean(0), ctx)
    assert got.members is members and MEMBER_PROBS not in ctx.extras
    assert Predictions.from_hook(got, ctx) is got
    assert harness.Predictions is Predictions


def test_bad_probabilities_are_refused():
    with pytest.raises(PluginOutputError, match="sum to one"):
        Predictions(torch.ones(2, 2)).checked(2, 2, "m")


def test_probabilities_are_checked_once_per_prediction(digits, monkeypatch):
    method = load_plugins(modules=["fixture_plugins.centroid"]).method("centroid")
    ctx = PhaseSettings(epochs=1, device=torch.device("cpu")).context(0, "tune")
    fitted = fit(method, digits.without_test(), {"temperature": 1.0}, ctx)
    calls = []
    real = predictions_module.check_probabilities
    monkeypatch.setattr(predictions_module, "check_probabilities", lambda *a: calls.append(a) or real(*a))
    got, seconds = predict(fitted, digits.val, digits.num_classes)
    assert len(calls) == 1 and got.probs.dtype == torch.float64 and got.probs.shape == (len(digits.val), 10)
    assert seconds >= 0
