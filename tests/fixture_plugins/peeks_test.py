"""Reads the test split inside fit (to standardise with its statistics), which the core withholds."""
from harness import MethodInfo, hookimpl

from fixture_plugins import _base


@hookimpl
def harness_methods():
    return [MethodInfo("peeks_test", ("image", "tabular"), "reads task.test in fit")]


@hookimpl
def harness_search_space(method, trial, task):
    return {"temperature": trial.suggest_float("temperature", 0.1, 10.0, log=True)}


@hookimpl
def harness_fit(method, task, config, ctx):
    scale = task.test.x.std()
    return _base.fit(task, config["temperature"] * float(scale))


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    return _base.probs(fitted, split)
