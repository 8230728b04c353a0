"""Continual streams (harness.tasks.stream, harness.phases.kinds): the stream metrics on hand-computed
matrices, what a method may see, and that replay remembers where fine-tuning forgets."""
from __future__ import annotations

import pytest
import torch

from harness.errors import ConfigError
from harness.phases import PhaseSettings
from harness.phases.kinds import run_stream, seed_result
from harness.plugins import load_plugins
from harness.tasks import build, parse, task_kind
from harness.tasks.stream import average_accuracy, backward_transfer, forgetting, stream_metrics


def test_stream_metrics_follow_their_definitions():
    r = [[0.9, 0.1, 0.0],
         [0.5, 0.8, 0.1],
         [0.3, 0.6, 0.7]]
    assert average_accuracy(r) == pytest.approx((0.3 + 0.6 + 0.7) / 3)
    assert backward_transfer(r) == pytest.approx(((0.3 - 0.9) + (0.6 - 0.8)) / 2)
    assert forgetting(r) == pytest.approx(((0.9 - 0.3) + (0.8 - 0.6)) / 2)


def test_forgetting_uses_the_best_earlier_accuracy_and_bwt_can_be_positive():
    r = [[0.5, 0.0, 0.0],
         [0.9, 0.6, 0.0],
         [0.7, 0.8, 0.9]]
    # experience 0 peaked at 0.9 after experience 1, not right after it was learnt
    assert forgetting(r) == pytest.approx(((0.9 - 0.7) + (0.6 - 0.8)) / 2)
    assert backward_transfer(r) == pytest.approx(((0.7 - 0.5) + (0.8 - 0.6)) / 2)
    assert stream_metrics(r)["accuracy"] == pytest.approx(0.8)


def test_a_stream_deals_classes_into_experiences(digits):
    stream = build(digits, {"stream": {"experiences": 5, "scenario": "class"}})
    assert task_kind(stream) == "stream" and len(stream.experiences) == 5
    for exp, group in zip(stream.experiences, stream.classes):
        assert set(exp.train.y.tolist()) == set(group) == set(exp.test.y.tolist())
        assert exp.num_classes == 10
    domain = build(digits, {"stream": {"experiences": 5, "scenario": "domain"}})
    assert {tuple(sorted(set(e.train.y.tolist()))) for e in domain.experiences} == {(0, 1)}
    assert domain.num_classes == 2
    assert sum(len(e.train) for e in stream.experiences) == len(digits.train)


@pytest.mark.parametrize("value, message", [
    ({"experiences": 1}, "at least 2"), ({"scenario": "open"}, "unknown scenario"),
    ({"experience": 5}, "unknown key"), ([5], "expected a mapping"),
])
def test_bad_stream_options_are_one_line_errors(value, message):
    with pytest.raises(ConfigError, match=message):
        parse({"stream": value})


def test_a_method_sees_one_experience_at_a_time_and_never_a_test_split(digits):
    from fixture_plugins import stream_means

    registry = load_plugins(modules=["fixture_plugins.stream_means"])
    method = registry.method("stream_means")
    stream = build(digits, {"stream": {"experiences": 5, "scenario": "class"}})
    stream_means.SEEN.clear()
    ctx = PhaseSettings(epochs=1, device=digits.device, amp=False).context(0, "final")
    result = seed_result(method, stream, {"temperature": 1.0}, ctx)
    assert [s["labels"] for s in stream_means.SEEN] == [sorted(c) for c in stream.classes]
    assert all(s["withheld"] for s in stream_means.SEEN)
    assert [s["previous"] for s in stream_means.SEEN] == [False, True, True, True, True]
    matrix = result["accuracy_matrix"]
    assert len(matrix) == 5 and all(len(row) == 5 for row in matrix)
    # class means are never overwritten: an experience's accuracy cannot fall far once learnt
    assert result["forgetting"] < 0.2 and result["accuracy"] > 0.5


def test_a_method_of_another_kind_is_refused_in_one_line(tmp_path):
    from harness.runner import run_suite
    from harness.suite import from_mapping

    suite = from_mapping({"datasets": [{"name": "digits", "stream": {"experiences": 5}}],
                          "methods": ["logreg"], "seeds": 1, "trials": 1})
    with pytest.raises(ConfigError, match="logreg does not support stream tasks"):
        run_suite(suite, load_plugins(), tmp_path / "out", progress=False)


def test_replay_remembers_where_fine_tuning_forgets(registry, digits):
    stream = build(digits, {"stream": {"experiences": 5, "scenario": "class"}})
    settings = PhaseSettings(epochs=4, device=digits.device, amp=False)
    config = {"model": "mlp", "hidden": 128, "lr": 3e-3, "batch_size": 32, "optimizer": "adam",
              "batchnorm": False, "schedule": "constant", "memory_per_class": 20}
    acc = {}
    for name in ("naive", "replay"):
        run = run_stream(registry.method(name), stream, config, settings.context(0, "final"), "test")
        acc[name] = run.metrics["accuracy"]
    assert acc["replay"] >= acc["naive"] + 0.3, acc


def test_the_report_draws_the_seed_averaged_accuracy_matrix(tmp_path):
    from harness.report.continual import mean_matrices, write_stream_figures

    rows = [{"dataset": "s", "method": "naive", "status": "ok", "accuracy_matrix": [[1.0, 0.0], [0.2, 0.8]]},
            {"dataset": "s", "method": "naive", "status": "ok", "accuracy_matrix": [[0.8, 0.0], [0.4, 1.0]]},
            {"dataset": "s", "method": "naive", "status": "FAIL"}]
    assert mean_matrices(rows)["s"]["naive"].ravel().tolist() == pytest.approx([0.9, 0.0, 0.3, 0.9])
    paths = write_stream_figures(tmp_path, rows)
    assert paths["accuracy_matrix_png:s"].read_bytes().startswith(b"\x89PNG")
    assert write_stream_figures(tmp_path, [{"dataset": "d", "method": "erm", "status": "ok"}]) == {}


@pytest.mark.parametrize("iterations, n, batch_size, epochs",
                         [(2000, 600, 128, 400), (10, 600, 128, 2), (1, 600, 128, 1), (100, 50, 128, 100)])
def test_a_training_length_in_iterations_becomes_the_nearest_whole_number_of_epochs(iterations, n, batch_size, epochs):
    from harness_plugins.continual.training import epochs_for

    assert epochs_for(iterations, n, batch_size) == epochs


def test_ewc_weighs_parameters_by_the_expected_fisher_of_the_network(digits, monkeypatch):
    """For a softmax-linear network the expected Fisher of the bias is p_k (1 - p_k), averaged over
    the examples; it stays positive where the label's own gradient (the empirical Fisher) vanishes."""
    from torch import nn

    from harness_plugins.continual import training

    monkeypatch.setattr(training, "FISHER_EXAMPLES", 10_000)  # every training example of the experience
    experience = build(digits, {"stream": {"experiences": 5, "scenario": "class"}}).experiences[0]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    state = training.ContinualState(model, "class")
    ctx = PhaseSettings(epochs=1, device=digits.device, amp=False).context(0, "final")
    training._consolidate(state, experience, None, ctx)
    with torch.no_grad():
        p = model(experience.train.x).softmax(1)
    assert torch.allclose(state.fisher["1.bias"], (p * (1 - p)).mean(0), rtol=1e-4, atol=1e-7)


def test_the_predicted_class_fisher_is_the_arg_max_gradient_alone(digits):
    """van de Ven & Tolias's Fisher: for a softmax-linear network the bias term is (1[k = ĉ] − p_k)²,
    ĉ the network's arg-max, averaged over the examples (0 examples: all of them)."""
    from torch import nn

    from harness_plugins.continual import training

    experience = build(digits, {"stream": {"experiences": 5, "scenario": "class"}}).experiences[0]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    state = training.ContinualState(model, "class")
    ctx = PhaseSettings(epochs=1, device=digits.device, amp=False).context(0, "final")
    training._consolidate(state, experience, None, ctx, fisher="predicted", examples=0)
    with torch.no_grad():
        p = model(experience.train.x).softmax(1)
    expected = ((nn.functional.one_hot(p.argmax(1), 10) - p) ** 2).mean(0)
    assert torch.allclose(state.fisher["1.bias"], expected, rtol=1e-4, atol=1e-7)
    with pytest.raises(ConfigError, match="ewc_fisher"):
        training._consolidate(state, experience, None, ctx, fisher="empirical")


def test_a_carried_optimiser_keeps_its_moments_across_experiences(registry, digits):
    stream = build(digits, {"stream": {"experiences": 5, "scenario": "task"}})
    ctx = PhaseSettings(epochs=1, device=digits.device, amp=False).context(0, "final")
    config = {"model": "mlp", "hidden": 32, "lr": 1e-3, "batch_size": 64, "batchnorm": False,
              "iterations": 3, "carry_optimizer": True}
    method = registry.method("naive")
    ctx.previous = None
    state = method.fit(stream.experiences[0], config, ctx)
    optimizer = state.optimizer
    first = {int(s["step"]) for s in optimizer.state.values()}
    ctx.previous = state
    state = method.fit(stream.experiences[1], config, ctx)
    assert state.optimizer is optimizer  # one Adam, its step count running on over both experiences
    (after,) = {int(s["step"]) for s in optimizer.state.values()}
    assert len(first) == 1 and after > first.pop()
    ctx.previous = None
    assert method.fit(stream.experiences[0], {**config, "carry_optimizer": False}, ctx).optimizer is None
