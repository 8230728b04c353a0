"""MC dropout and deep ensembles through the hook API, the vectorised members, and the uncertainty
reports built from a suite's storage."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from harness.conformance import check_plugin
from harness.context import FitContext, seed_everything
from harness.errors import ConfigError
from harness.metrics import accuracy
from harness.toolkit.models import create_model
from harness.toolkit.train import TrainConfig
from harness_plugins.uncertainty import ensemble
from harness_plugins.uncertainty.ensemble import StackedMembers, member_orders, train_members

from conftest import run_cli, harness_env


def _ctx(epochs: int = 3, seed: int = 0) -> FitContext:
    seed_everything(seed)
    return FitContext(device=torch.device("cpu"), seed=seed, epochs=epochs)


def _config(registry, method: str, **changes) -> dict:
    return {**registry.method(method).info.defaults, "hidden": 64, **changes}


@pytest.mark.parametrize("batchnorm", [True, False])
def test_stacked_members_compute_what_each_member_computes(digits, batchnorm):
    torch.manual_seed(0)
    nets = [create_model("cnn", digits, width=4, batchnorm=batchnorm) for _ in range(3)]
    stacked = StackedMembers(nets).eval()
    for net in nets:
        net.eval()
    x = digits.val.x[:10]
    with torch.no_grad():
        together = stacked.forward_shared(x)
        alone = torch.stack([net(x) for net in nets])
        per_member = stacked(x.unsqueeze(0).expand(3, *x.shape))
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.allclose(per_member, alone, atol=1e-5)
    assert not torch.allclose(alone[0], alone[1])  # independent initialisations


def test_member_orders_are_distinct_bijections():
    orders = member_orders(4, 50, _ctx())
    assert torch.equal(orders[0], torch.arange(50))
    for row in orders:
        assert torch.equal(row.sort().values, torch.arange(50))
    assert len({tuple(r.tolist()) for r in orders}) == 4


def test_vectorised_training_equals_member_by_member(digits):
    x, y = digits.train.x, digits.train.y

    def step(forward, idx, progress):
        logits = forward(x[idx])
        return F.cross_entropy(logits.flatten(0, 1), y[idx].flatten(), reduction="sum") / idx.shape[1]

    def build():
        return create_model("mlp", digits, hidden=32, batchnorm=True)

    cfg = TrainConfig(epochs=1, lr=3e-3, batch_size=128, restore_best=False)
    ctx = _ctx()
    together = train_members(build, 3, step, len(x), cfg, ctx, vectorise=True)
    one_by_one = train_members(build, 3, step, len(x), cfg, _ctx(), vectorise=False)
    assert together.vectorised and not one_by_one.vectorised
    a = together.member_probs(digits.val.x, ctx)
    b = one_by_one.member_probs(digits.val.x, ctx)
    assert a.shape == (3, len(digits.val), 10)
    # Equal up to float rounding (batched vs single kernels, amplified by Adam's normalisation),
    # far closer than two members are to each other.
    assert (a - b).abs().max() < 3e-3 < (a[0] - a[1]).abs().max()


def test_fallback_to_member_by_member_when_vmap_fails(registry, digits, monkeypatch):
    monkeypatch.setattr(ensemble, "_vmap_works", lambda stacked, sample: False)
    method = registry.method("deep_ensemble")
    ctx = _ctx(epochs=1)
    fitted = method.fit(digits.without_test(), _config(registry, "deep_ensemble", members=2), ctx)
    assert not fitted.vectorised and len(fitted) == 2
    assert ctx.extras["vectorised"] == 0


def test_deep_ensemble_learns_and_hands_over_member_predictions(registry, digits):
    method = registry.method("deep_ensemble")
    ctx = _ctx()
    fitted = method.fit(digits.without_test(), _config(registry, "deep_ensemble", members=3), ctx)
    assert fitted.vectorised
    predictions = method.predict(fitted, digits.test.without_labels(), ctx)
    probs, members = predictions.probs.double(), predictions.members
    assert members.shape == (3, len(digits.test), 10)
    assert torch.allclose(probs, members.mean(0).double(), atol=1e-6)
    assert accuracy(probs, digits.test.y) > 0.85  # chance is 0.10
    single = create_model("mlp", digits, hidden=64)
    assert ctx.parameter_counts()[0] == 3 * sum(p.numel() for p in single.parameters())


def test_mc_dropout_samples_and_its_deterministic_twin(registry, digits):
    method = registry.method("mc_dropout")
    ctx = _ctx()
    config = _config(registry, "mc_dropout", dropout=0.3, mc_samples=8)
    fitted = method.fit(digits.without_test(), config, ctx)
    split = digits.test.without_labels()
    predictions = method.predict(fitted, split, ctx)
    probs, members = predictions.probs.double(), predictions.members
    assert members.shape == (8, len(digits.test), 10)
    assert not torch.allclose(members[0], members[1])  # dropout is on at test time
    assert accuracy(probs, digits.test.y) > 0.85
    fitted.samples = 0  # the same weights, dropout off
    assert method.predict(fitted, split, ctx).members is None
    det = method.evaluate(fitted, split, ctx)
    assert torch.equal(det, method.evaluate(fitted, split, ctx))
    assert accuracy(det, digits.test.y) > 0.85


def test_bad_counts_are_config_errors(registry, digits):
    with pytest.raises(ConfigError, match="needs dropout"):
        registry.method("mc_dropout").fit(digits.without_test(), _config(registry, "mc_dropout", dropout=0.0), _ctx())
    with pytest.raises(ConfigError, match="members"):
        registry.method("deep_ensemble").fit(digits.without_test(), _config(registry, "deep_ensemble", members=0), _ctx())


def test_plugin_conformance(registry):
    reports = check_plugin(registry, "uncertainty", epochs=1)
    assert {r.method for r in reports} == {"mc_dropout", "deep_ensemble"}
    assert all(r.ok for r in reports), [r.problems for r in reports]


def test_suite_writes_reliability_shift_and_ood_reports_from_storage(tmp_path):
    suite = tmp_path / "u.yaml"
    suite.write_text(
        "name: u\ndatasets: [digits]\nseeds: 2\nepochs: 1\n"
        "methods:\n  - {method: centroid, tune: false}\n"
        "  - {method: centroid, name: centroid+ts, tune: false, calibrate: temperature}\n"
        "shifts: {rotate: [30], contrast: [0.5]}\nood: [noise]\n")
    out = tmp_path / "out"
    env = harness_env()
    done = run_cli("--plugin", "fixture_plugins.centroid", "run", "--suite", str(suite), "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    rel = pd.read_csv(out / "reliability.csv")
    pooled = rel[(rel.seed == "all") & (rel.probabilities == "as scored")]
    assert pooled.groupby("method")["count"].sum().to_dict() == {"centroid": 720, "centroid+ts": 720}  # 2 × 360
    assert set(rel[rel.probabilities == "uncalibrated"].method) == {"centroid+ts"}
    shift = pd.read_csv(out / "shift.csv")
    assert set(zip(shift["shift"], shift.intensity)) == {("none", 0.0), ("rotate", 30.0), ("contrast", 0.5)}
    assert (shift.seeds == 2).all() and shift.ece_mean.between(0, 1).all()
    assert "ece_uncalibrated_mean" in shift.columns
    ood = pd.read_csv(out / "ood.csv")
    assert list(ood.ood_set) == ["noise", "noise"] and ood.auroc_entropy_mean.between(0, 1).all()
    summary = pd.read_csv(out / "summary.csv")
    assert {"entropy_mean", "temperature_mean", "ece_uncalibrated_mean"} <= set(summary.columns)
    for png in ("reliability_digits.png", "shift_digits.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "ECE before TS" in (out / "calibration.md").read_text()
    # The reports are rebuilt from the storage alone.
    for name in ("reliability.csv", "shift.csv", "ood.csv"):
        (out / name).unlink()
    again = run_cli("--plugin", "fixture_plugins.centroid", "report", "--out", str(out), env=env)
    assert again.returncode == 0, again.stderr
    assert pd.read_csv(out / "shift.csv").equals(shift)
