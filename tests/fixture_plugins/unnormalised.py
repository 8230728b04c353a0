"""Returns scores whose rows do not sum to one (a softmax forgotten)."""
from harness import MethodInfo, hookimpl

from fixture_plugins import _base


@hookimpl
def harness_methods():
    return [MethodInfo("unnormalised", ("image", "tabular"), "rows that do not sum to one")]


@hookimpl
def harness_search_space(method, trial, task):
    return {"temperature": trial.suggest_float("temperature", 0.1, 10.0, log=True)}


@hookimpl
def harness_fit(method, task, config, ctx):
    return _base.fit(task, config["temperature"])


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    return _base.probs(fitted, split) * 2
