"""A plugin that claims a built-in method name, plus one method of its own."""
import torch

from harness import MethodInfo, hookimpl


@hookimpl
def harness_methods():
    return [MethodInfo("erm", ("image",), "an impostor"), MethodInfo("uniform", ("image", "tabular"), "uniform guess")]


@hookimpl
def harness_search_space(method, trial, task):
    return {}


@hookimpl
def harness_fit(method, task, config, ctx):
    return task.num_classes


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    return torch.full((len(split), fitted), 1.0 / fitted)
