"""Returns one probability column too many."""
import torch

from harness import MethodInfo, hookimpl

from fixture_plugins import _base


@hookimpl
def harness_methods():
    return [MethodInfo("wrong_shape", ("image", "tabular"), "one column too many")]


@hookimpl
def harness_search_space(method, trial, task):
    return {"temperature": trial.suggest_float("temperature", 0.1, 10.0, log=True)}


@hookimpl
def harness_fit(method, task, config, ctx):
    return _base.fit(task, config["temperature"])


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    p = _base.probs(fitted, split)
    return torch.cat([p, torch.zeros(len(split), 1)], 1)
