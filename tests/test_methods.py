"""Every built-in supervised method and classical anchor learns: far above chance on real data."""
import pytest
import torch

from harness.context import FitContext, seed_everything
from harness.metrics import accuracy

CHANCE = 0.1


@pytest.mark.parametrize("method", ["erm", "mixup", "label_smoothing"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_supervised_methods_learn_digits(registry, digits, method, model):
    m = registry.method(method)
    config = {**m.info.defaults, "model": model, "width": 32, "lr": 1e-2}
    ctx = FitContext(device=torch.device("cpu"), seed=0, epochs=4)
    seed_everything(0)
    fitted = m.fit(digits.without_test(), config, ctx)
    probs = m.evaluate(fitted, digits.test.without_labels(), ctx)
    assert accuracy(probs, digits.test.y) > 0.8, (method, model)


@pytest.mark.parametrize("method", ["logreg", "svc", "random_forest", "knn"])
def test_sklearn_anchors_learn_digits_and_tabular(registry, digits, iris, method):
    m = registry.method(method)
    for task, floor in ((digits, 0.9), (iris, 0.8)):
        ctx = FitContext(device=torch.device("cpu"), seed=0)
        fitted = m.fit(task.without_test(), dict(m.info.defaults), ctx)
        probs = m.evaluate(fitted, task.test.without_labels(), ctx)
        assert accuracy(probs, task.test.y) > floor, (method, task.name)
        assert ctx.samples_seen == len(task.train)


def test_erm_on_tabular(registry, iris):
    m = registry.method("erm")
    ctx = FitContext(device=torch.device("cpu"), seed=0, epochs=20)
    fitted = m.fit(iris.without_test(), dict(m.info.defaults), ctx)
    assert accuracy(m.evaluate(fitted, iris.test.without_labels(), ctx), iris.test.y) > 0.8


def test_defaults_cover_every_search_space(registry, digits, iris):
    import optuna

    for name in ("erm", "mixup", "label_smoothing", "logreg", "svc", "random_forest", "knn"):
        m = registry.method(name)
        for task in (digits, iris):
            if task.kind in m.info.kinds:
                m.search_space(optuna.trial.FixedTrial(m.info.defaults), task.without_test())
