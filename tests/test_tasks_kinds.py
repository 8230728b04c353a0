"""Episodic few-shot and multi-task tasks (harness.tasks.episodic / .multitask, harness.phases.kinds),
their methods, and the conformance check of methods of every task kind."""
from __future__ import annotations

import pytest
import torch

from harness.conformance import check_plugin
from harness.errors import ConfigError, PluginOutputError
from harness.phases import PhaseSettings
from harness.phases.kinds import run_episodic, run_multitask
from harness.plugins import load_plugins
from harness.tasks import build, parse
from harness.tasks.episodic import episodes, mean_ci95

EPISODES = {"ways": 5, "shots": [1, 5], "meta_train": [0, 1, 2, 3, 4], "meta_test": [5, 6, 7, 8, 9],
            "test_episodes": 40, "val_episodes": 10}


def test_mean_ci95_is_the_normal_half_width():
    mean, half = mean_ci95([0.2, 0.4, 0.6, 0.8])
    std = (sum((v - 0.5) ** 2 for v in (0.2, 0.4, 0.6, 0.8)) / 3) ** 0.5
    assert mean == pytest.approx(0.5) and half == pytest.approx(1.96 * std / 2)


def test_episodes_hold_shots_and_queries_of_held_out_classes(digits):
    task = build(digits, {"episodes": EPISODES})
    assert set(task.meta_train.train.y.tolist()) == set(range(5))
    assert len(task.test_pool) == sum(int((s.y >= 5).sum()) for s in (digits.train, digits.val, digits.test))
    for e in episodes(task.test_pool, 5, 3, 4, count=3, seed=0):
        assert torch.bincount(e.support.y).tolist() == [3] * 5
        assert torch.bincount(e.query.y).tolist() == [4] * 5
        # no example is both support and query
        assert not (torch.cdist(e.support.x.flatten(1), e.query.x.flatten(1)) == 0).any()
    assert not task.without_test().has_test


@pytest.mark.parametrize("value, message", [
    ({**EPISODES, "meta_test": [4, 5, 6, 7, 8]}, "must not share a class"),
    ({**EPISODES, "ways": 6}, "need at least 6 classes"),
    ({"ways": 5, "meta_train": [0, 1]}, "meta_test"),
    ({**EPISODES, "shot": 1}, "unknown key"),
])
def test_bad_episode_options_are_one_line_errors(value, message):
    with pytest.raises(ConfigError, match=message):
        parse({"episodes": value})


def test_protonet_beats_chance_on_held_out_digits(registry, digits):
    task = build(digits, {"episodes": {**EPISODES, "shots": [1]}})
    settings = PhaseSettings(epochs=2, device=digits.device, amp=False)
    config = {"model": "conv4", "width": 16, "lr": 2e-3, "episodes_per_epoch": 25, "train_shot": 1}
    run = run_episodic(registry.method("protonet"), task, config, settings.context(0, "final"), "test")
    chance = 1 / 5
    assert run.metrics["accuracy_1shot"] >= chance + 0.15, run.metrics
    assert 0 < run.metrics["ci95_1shot"] < 0.2


def test_multitask_labels_are_one_column_per_head(digits):
    task = build(digits, {"multitask": ["digit", "parity"]})
    assert task.heads == {"digit": 10, "parity": 2}
    assert torch.equal(task.task.train.y[:, 1], task.task.train.y[:, 0] % 2)
    turned = build(digits, {"multitask": ["digit", "rotation"]})
    y = turned.task.train.y
    k = int(y[0, 1])
    assert torch.equal(torch.rot90(digits.train.x[0], k, dims=(1, 2)), turned.task.train.x[0])
    with pytest.raises(ConfigError, match="unknown head"):
        parse({"multitask": ["digit", "colour"]})


def test_a_noisy_label_head_redraws_a_fixed_share_of_labels_in_every_split(digits):
    from harness.tasks.multitask import LABEL_NOISE

    task = build(digits, {"multitask": ["digit", "noisy_label"]})
    assert task.heads == {"digit": 10, "noisy_label": 10}
    for split in (task.task.train, task.task.val, task.task.test):
        changed = (split.y[:, 1] != split.y[:, 0]).double().mean().item()
        assert changed == pytest.approx(LABEL_NOISE * 9 / 10, abs=0.1)  # a redrawn label may land on the true one
    again = build(digits, {"multitask": ["digit", "noisy_label"]})
    assert torch.equal(again.task.train.y, task.task.train.y)  # drawn once, from the data seed


def test_multitask_heads_learn_and_a_bare_tensor_is_refused(registry, digits):
    task = build(digits, {"multitask": ["digit", "parity"]})
    settings = PhaseSettings(epochs=2, device=digits.device, amp=False)
    config = {"model": "mlp", "hidden": 128, "lr": 3e-3, "batch_size": 64}
    for name in ("equal_weights", "pcgrad", "dwa", "gradnorm"):
        run = run_multitask(registry.method(name), task, config, settings.context(0, "final"), "test")
        assert run.metrics["accuracy_digit"] > 0.6 and run.metrics["accuracy_parity"] > 0.75, (name, run.metrics)
        assert run.metrics["accuracy"] == pytest.approx(
            (run.metrics["accuracy_digit"] + run.metrics["accuracy_parity"]) / 2)

    class BareTensor:
        name = "bare"

        def fit(self, task, config, ctx):
            return None

        def predict(self, fitted, split, ctx):
            from harness.predictions import Predictions
            return Predictions(torch.full((len(split), 10), 0.1))

    with pytest.raises(PluginOutputError, match="dict of probabilities by head"):
        run_multitask(BareTensor(), task, config, settings.context(0, "final"), "val")


def test_the_conformance_check_covers_methods_of_other_task_kinds():
    registry = load_plugins(modules=["fixture_plugins.stream_means"])
    reports = check_plugin(registry, "stream_means", epochs=1)
    checked = [r for r in reports if "(stream)" in r.task and not any("skipped" in n for n in r.notes)]
    assert checked and all(r.ok for r in checked), [(r.task, r.problems) for r in reports]
    assert any("test accuracy" in n for n in checked[0].notes)


def test_dynamic_weight_average_favours_the_head_whose_loss_falls_slowest():
    from harness_plugins.multitask.training import DynamicWeightAverage

    dwa = DynamicWeightAverage(tasks=2, epochs=3, temperature=2.0)
    for epoch, losses in enumerate([(1.0, 1.0), (0.5, 0.9)]):  # head 0 halves, head 1 barely moves
        assert torch.equal(dwa.weights(epoch / 3), torch.ones(2, dtype=torch.float64))
        dwa.record(torch.tensor(losses))
    weights = dwa.weights(2 / 3)
    assert weights.sum().item() == pytest.approx(2.0)
    assert weights[1] > weights[0]
