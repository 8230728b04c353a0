"""Its search space returns a torch.device, which the study storage cannot hold."""
import torch

from harness import MethodInfo, hookimpl

from fixture_plugins import _base


@hookimpl
def harness_methods():
    return [MethodInfo("device_config", ("image", "tabular"), "torch.device in the configuration")]


@hookimpl
def harness_search_space(method, trial, task):
    return {"temperature": trial.suggest_float("temperature", 0.1, 10.0, log=True), "device": torch.device("cpu")}


@hookimpl
def harness_fit(method, task, config, ctx):
    return _base.fit(task, config["temperature"])


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    return _base.probs(fitted, split)
