"""One dict of defaults for every task kind, though the search space depends on the kind: the
default ``model: cnn`` is outside the tabular space."""
from harness import MethodInfo, hookimpl

from fixture_plugins import _base


@hookimpl
def harness_methods():
    return [MethodInfo("kind_defaults", ("image", "tabular"), "defaults valid for images only",
                       defaults={"model": "cnn", "temperature": 1.0})]


@hookimpl
def harness_search_space(method, trial, task):
    models = ["cnn", "mlp"] if task.kind == "image" else ["mlp"]
    return {"model": trial.suggest_categorical("model", models),
            "temperature": trial.suggest_float("temperature", 0.1, 10.0, log=True)}


@hookimpl
def harness_fit(method, task, config, ctx):
    return _base.fit(task, config["temperature"])


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    return _base.probs(fitted, split)
