"""White-box attacks, gradient-masking flags, the harness_differentiable hook and the robust columns."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError
from harness.metrics import column
from harness.multiobjective import parse_objectives
from harness.phases import FinalSettings, PhaseSettings
from harness.phases.final import run_seed
from harness.plugins import load_plugins
from harness.data import load_task
from harness.report.tables import aggregate, display_frame, per_seed_frame
from harness.robustness import (
    FLAGS, REASON, AttackSettings, RobustnessResult, accuracy_under, attacked_columns, fgsm, measure, objective,
    parse_robustness, pgd, sanity_flags, summary_notes,
)
from harness.suite import from_mapping


class Linear(nn.Module):
    """Two-class logits ``[0, w·x + b]``: FGSM's L∞ optimum is known in closed form."""

    def __init__(self, w: torch.Tensor, b: float = 0.0):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(z), z], 1)


@pytest.fixture
def linear_case():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(12, generator=gen)
    x = 0.2 + 0.6 * torch.rand(40, 12, generator=gen)  # inside [0, 1] with room for ε = 0.1 either way
    y = (x @ w > (0.5 * w.sum())).long()
    return Linear(w, -0.5 * w.sum().item()), x, y, w


def test_fgsm_on_a_linear_model_is_the_closed_form_optimum(linear_case):
    model, x, y, w = linear_case
    eps = 0.1
    adv = fgsm(model, x, y, eps)
    # The worst L∞ step moves every coordinate by ε against the true class's margin.
    expected = x - eps * torch.where(y[:, None] == 1, w.sign(), -w.sign())
    torch.testing.assert_close(adv, expected)
    margin = lambda z: torch.where(y == 1, z[:, 1] - z[:, 0], z[:, 0] - z[:, 1])  # noqa: E731
    torch.testing.assert_close(margin(model(x)) - margin(model(adv)), torch.full((40,), eps * w.abs().sum().item()))
    # PGD cannot do better than the optimum on a linear model, and does as well.
    adv_pgd = pgd(model, x, y, eps, steps=10, step_size=0.025)
    assert torch.all(margin(model(adv_pgd)) >= margin(model(adv)) - 1e-4)
    assert accuracy_under("pgd", model, x, y, eps) == accuracy_under("fgsm", model, x, y, eps)


def test_attacks_stay_in_the_ball_and_the_valid_range():
    model = Linear(torch.ones(4))
    x = torch.tensor([[0.95, 0.02, 0.5, 1.0], [0.0, 0.99, 0.3, 0.7]])
    y = torch.tensor([1, 0])
    for adv in (fgsm(model, x, y, 0.3), pgd(model, x, y, 0.3, steps=5, step_size=0.1)):
        assert adv.min() >= 0 and adv.max() <= 1
        assert (adv - x).abs().max() <= 0.3 + 1e-6
    unbounded = fgsm(model, x, y, 0.3, bounds=None)
    assert unbounded.max() > 1 and unbounded.min() < 0


@pytest.fixture(scope="module")
def digits_net():
    """A small MLP trained on digits for a few hundred steps: a standard, non-robust model."""
    registry = load_plugins()
    task = load_task(registry, "digits")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(net(task.train.x), task.train.y).backward()
        opt.step()
    net.zero_grad(set_to_none=True)
    return net.eval(), task


def test_each_attack_lowers_accuracy_and_pgd_is_at_least_as_strong(digits_net):
    net, task = digits_net
    x, y = task.test.x, task.test.y
    clean = (net(x).argmax(1) == y).float().mean().item()
    fg = accuracy_under("fgsm", net, x, y, 0.1)
    pg = accuracy_under("pgd", net, x, y, 0.1, steps=10)
    assert clean > 0.9 and fg < clean - 0.2
    assert pg <= fg
    # Several restarts count the worst case per example: never fewer fooled than one restart.
    assert accuracy_under("pgd", net, x, y, 0.1, steps=10, restarts=3) <= pg
    # The gradients belong to the input alone: the model's parameters are left without any.
    assert all(p.grad is None for p in net.parameters())
    result = measure(net, x, y, AttackSettings(eps=(0.05, 0.1)), (0.0, 1.0), 10)
    assert sanity_flags(result) == []


class Saturated(nn.Module):
    """Predicts the class from the mean intensity with logits so large that softmax saturates: the
    cross-entropy gradient is exactly zero in float32, so gradient attacks stall (masking)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 1000.0 * (x.flatten(1).mean(1) - 0.5)
        return torch.stack([-z, z], 1)


def test_sanity_flags_fire_on_a_gradient_masked_model():
    x = torch.cat([torch.full((20, 1, 4, 4), 0.1), torch.full((20, 1, 4, 4), 0.9)])
    y = torch.cat([torch.zeros(20), torch.ones(20)]).long()
    result = measure(Saturated(), x, y, AttackSettings(eps=(0.1, 0.5), steps=5), (0.0, 1.0), 2)
    flags = sanity_flags(result)
    # ε = 1 spans [0, 1]: any input is reachable, yet the stalled attack leaves the accuracy intact.
    assert any("above chance" in f for f in flags)
    assert FLAGS in result.row()


def test_sanity_flags_name_each_symptom():
    r = RobustnessResult(fgsm={0.1: 0.5, 0.3: 0.2}, pgd={0.1: 0.4, 0.3: 0.45}, pgd_more_steps=(0.3, 40, 0.6),
                         pgd_whole_range=(1.0, 0.05), num_classes=10)
    flags = sanity_flags(r)
    assert len(flags) == 3
    assert "rises with ε" in flags[0] and "weaker than FGSM at ε=0.3" in flags[1] and "PGD-40" in flags[2]


def test_suite_robustness_key_is_validated():
    base = {"datasets": ["digits"], "methods": ["erm"]}
    suite = from_mapping({**base, "robustness": {"eps": [0.3, 0.1], "steps": 7}})
    settings = parse_robustness(suite.robustness)
    assert settings.eps == (0.1, 0.3) and settings.target_eps == 0.3
    assert settings.alpha(0.1) == pytest.approx(2.5 * 0.1 / 7)
    for bad, message in [({"eps": []}, "eps must be"), ({"eps": [0.1], "steps": 0}, "steps must"),
                         ({"eps": [0.1], "norm": "l2"}, "unknown robustness key"), ([0.1], "must be a mapping"),
                         ({"eps": [0.1], "objective_eps": 0.2}, "not one of eps"), ({"eps": [-0.1]}, "eps must be")]:
        with pytest.raises(ConfigError, match=message):
            from_mapping({**base, "robustness": bad})
    with pytest.raises(ConfigError, match="needs the suite's `robustness"):
        from_mapping({**base, "objectives": ["accuracy", "robust_acc"], "sampler": "nsga2"})
    assert parse_objectives("accuracy,robust_acc") == ("accuracy", "robust_acc")


def test_robust_objective_attacks_at_the_objective_eps(digits_net):
    net, task = digits_net
    settings = AttackSettings(eps=(0.05, 0.1), steps=5, objective_eps=0.05)
    value = objective(net, task.val.x, task.val.y, settings, (0.0, 1.0))
    assert value == accuracy_under("pgd", net, task.val.x, task.val.y, 0.05, steps=5)
    with pytest.raises(ConfigError, match="needs a differentiable view: no gradient"):
        objective("no gradient", task.val.x, task.val.y, settings, (0.0, 1.0))


def test_hook_gives_the_network_behind_the_probabilities(registry, digits):
    method = registry.method("erm")
    ctx = PhaseSettings(epochs=1, device=torch.device("cpu")).context(0, "final")
    config = {"model": "mlp", "hidden": 32, "optimizer": "adam", "lr": 1e-2, "batch_size": 64}
    fitted = method.fit(digits.without_test(), config, ctx)
    view = method.differentiable(fitted, ctx)
    probs = method.evaluate(fitted, digits.val, ctx)
    torch.testing.assert_close(view(digits.val.x).softmax(-1), probs.float(), atol=1e-5, rtol=1e-4)
    x = digits.val.x[:4].clone().requires_grad_(True)
    assert torch.autograd.grad(view(x).sum(), x)[0].shape == x.shape


def test_ensemble_view_is_the_log_of_its_mean_probability(registry, digits):
    method = registry.method("deep_ensemble")
    ctx = PhaseSettings(epochs=1, device=torch.device("cpu")).context(0, "final")
    config = {"model": "mlp", "hidden": 32, "optimizer": "adam", "lr": 1e-2, "batch_size": 64, "members": 2}
    fitted = method.fit(digits.without_test(), config, ctx)
    view = method.differentiable(fitted, ctx)
    probs = method.evaluate(fitted, digits.val, ctx)
    torch.testing.assert_close(view(digits.val.x).softmax(-1), probs.float(), atol=1e-5, rtol=1e-4)
    assert isinstance(registry.method("gcn").differentiable(None, ctx), str)  # a reason, not a view


def test_method_without_the_hook_gets_a_reason_in_its_row_and_under_the_table():
    registry = load_plugins(modules=["fixture_plugins.centroid"])
    task = load_task(registry, "digits")
    settings = parse_robustness({"eps": [0.1], "steps": 2})
    row = run_seed(registry.method("centroid"), task, {"temperature": 1.0}, 0, FinalSettings(
        seeds=[0], phase=PhaseSettings(epochs=1, device=torch.device("cpu")), robustness=settings))
    assert "gives no differentiable view" in row[REASON] and "robust_acc@0.1" not in row
    rows = [{**row, "dataset": "digits", "method": "centroid", "seed": 0}]
    summary = aggregate(per_seed_frame(rows))
    assert any("no robust accuracy" in n for n in summary_notes(summary.to_dict("records")))


def test_robust_columns_are_declared_aggregated_and_shown():
    rows = [{"dataset": "d", "method": m, "seed": s, "status": "ok", "accuracy": 0.9, "robust_acc@0.1": r + s / 100,
             "fgsm_acc@0.1": r + 0.1, "robust_acc@0.3": r / 2}
            for m, r in (("a", 0.5), ("b", 0.1)) for s in range(2)]
    summary = aggregate(per_seed_frame(rows))
    assert summary.loc[0, "robust_acc@0.1_mean"] == pytest.approx(0.505)
    shown = display_frame(summary)
    assert shown.columns[2] == "accuracy %"
    assert {"PGD acc @0.1 %", "PGD acc @0.3 %", "FGSM acc @0.1 %"} <= set(shown.columns)
    assert column("robust_acc@0.3").higher_is_better and column("robust_acc@0.3").scale == 100
    assert attacked_columns(["fgsm_acc@0.1", "robust_acc@0.3", "robust_acc@0.1", "accuracy"]) == [
        "robust_acc@0.1", "robust_acc@0.3", "fgsm_acc@0.1"]


def test_pgd_training_beats_erm_under_attack_and_columns_reach_summary(cli, tmp_path):
    (tmp_path / "s.yaml").write_text(
        "name: rob\ndatasets: [digits]\nseeds: 1\nepochs: 6\n"
        "params: {model: mlp, hidden: 128, batch_size: 64}\n"
        "methods:\n  - {method: erm, tune: false}\n"
        "  - {method: pgd_at, tune: false, params: {eps: 0.1, steps: 3, rampup: 0.0}}\n"
        "robustness: {eps: [0.1], steps: 5}\n")
    done = cli("--threads", "1", "run", "--suite", "s.yaml", "--out", "out", "--no-progress")
    assert done.returncode == 0, done.stderr
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("method")
    robust = summary["robust_acc@0.1_mean"]
    assert robust["pgd_at"] > robust["erm"] + 0.2
    assert "fgsm_acc@0.1_mean" in summary
    assert summary.loc["pgd_at", "extra_train_eps_mean"] == pytest.approx(0.1)
    assert "PGD acc @0.1" in (tmp_path / "out" / "summary.md").read_text()
    assert "robustness" in (tmp_path / "out" / "provenance.json").read_text()


def test_conformance_check_names_a_view_of_the_wrong_shape():
    from harness.conformance import check_plugin

    reports = check_plugin(load_plugins(modules=["fixture_plugins.bad_view"]), "centroid", epochs=1)
    assert reports and all(any("harness_differentiable: gave shape" in p for p in r.problems) for r in reports)
