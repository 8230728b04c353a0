"""The shared training toolkit."""
import math

import optuna
import pytest
import torch
import torch.nn.functional as F

from harness.context import FitContext
from harness.errors import ConfigError, DivergedError
from harness.toolkit.models import create_model
from harness.toolkit.train import (
    EMA, OPTIMIZERS, TrainConfig, build_optimizer, build_schedule, predict_proba, sigmoid_rampup, train, val_accuracy,
)


def _ctx(**kw):
    return FitContext(device=torch.device("cpu"), seed=0, **kw)


def _fit(task, cfg, ctx=None, val=True):
    ctx = ctx or _ctx()
    torch.manual_seed(0)
    model = create_model("mlp", task, hidden=64)
    x, y = task.train.x, task.train.y
    history = train(model, lambda idx, p: F.cross_entropy(model(x[idx]), y[idx]), len(x), cfg, ctx,
                    val_fn=(lambda: val_accuracy(model, task.val, ctx)) if val else None)
    return model, history, ctx


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimiser_learns_digits(digits, name):
    lr = {"sgd": 0.2, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05}.get(name, 3e-3)
    model, history, ctx = _fit(digits, TrainConfig(optimizer=name, lr=lr, epochs=4, batch_size=64))
    assert history.loss[-1] < history.loss[0]
    assert max(history.val) > 0.85, (name, history.val)
    assert ctx.samples_seen == 4 * len(digits.train)


def test_unknown_optimiser_and_schedule():
    with pytest.raises(ConfigError):
        build_optimizer("lion", [torch.nn.Parameter(torch.zeros(1))], 0.1)
    opt = build_optimizer("sgd", [torch.nn.Parameter(torch.zeros(1))], 0.1)
    with pytest.raises(ConfigError):
        build_schedule("exp", opt, 10)


def test_cosine_schedule_with_warmup_shape():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer("sgd", [p], 1.0)
    sched = build_schedule("cosine", opt, total_steps=100, warmup_steps=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5, abs=0.03) and lrs[-1] < 0.01


def test_best_validation_weights_are_restored_and_early_stopping(digits):
    cfg = TrainConfig(optimizer="adam", lr=3e-3, epochs=6, batch_size=64, patience=2)
    model, history, ctx = _fit(digits, cfg)
    assert val_accuracy(model, digits.val, ctx) == pytest.approx(max(history.val))
    assert history.best_epoch == history.val.index(max(history.val))


def test_non_finite_loss_raises(digits):
    ctx = _ctx()
    model = create_model("mlp", digits, hidden=8)
    with pytest.raises(DivergedError, match="nan"):
        train(model, lambda idx, p: model(digits.train.x[idx]).sum() * float("nan"), len(digits.train),
              TrainConfig(epochs=2), ctx)


def test_pruning_report_raises_trial_pruned(digits):
    calls = []

    def reporter(step, value):
        calls.append((step, value))
        if step == 1:
            raise optuna.TrialPruned()

    with pytest.raises(optuna.TrialPruned):
        _fit(digits, TrainConfig(epochs=5), ctx=_ctx(reporter=reporter))
    assert [s for s, _ in calls] == [0, 1]


def test_grad_clip_bounds_the_update():
    # One SGD step with lr 1 moves the weights by exactly the clipped gradient.
    lin = torch.nn.Linear(3, 1, bias=False)
    torch.nn.init.zeros_(lin.weight)
    x = torch.ones(4, 3) * 100
    ctx = _ctx()
    train(lin, lambda idx, prog: lin(x[idx]).sum(), 4, TrainConfig(optimizer="sgd", lr=1.0, epochs=1, batch_size=4,
                                                                    grad_clip=1.0, schedule="constant"), ctx)
    assert lin.weight.norm().item() == pytest.approx(1.0, rel=1e-4)


def test_ema_tracks_the_weights():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.5, warmup=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    before = [p.clone() for p in ema.model.parameters()]
    ema.update(model)
    for b, e, m in zip(before, ema.model.parameters(), model.parameters()):
        assert torch.allclose(e, 0.5 * b + 0.5 * m)
    assert all(not p.requires_grad for p in ema.model.parameters())


def test_sigmoid_rampup():
    assert sigmoid_rampup(0.0, 0.5) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(0.5, 0.5) == 1.0 and sigmoid_rampup(0.9, 0.5) == 1.0


def test_train_config_reads_known_keys_and_the_epoch_budget():
    cfg = TrainConfig.from_config({"lr": 0.1, "optimizer": "sgd", "alpha": 3, "grad_clip": 0.0}, _ctx(epochs=7))
    assert (cfg.lr, cfg.optimizer, cfg.epochs, cfg.grad_clip) == (0.1, "sgd", 7, None)


def test_predict_proba_rows_sum_to_one(digits):
    model = create_model("cnn", digits, width=8)
    probs = predict_proba(model, digits.val.x, _ctx())
    assert probs.shape == (len(digits.val), 10)
    assert torch.allclose(probs.sum(1), torch.ones(len(digits.val)))
