"""Its search space returns a NumPy scalar, which the study storage cannot hold."""
import numpy as np

from harness import MethodInfo, hookimpl

from fixture_plugins import _base


@hookimpl
def harness_methods():
    return [MethodInfo("numpy_config", ("image", "tabular"), "np.float32 in the configuration")]


@hookimpl
def harness_search_space(method, trial, task):
    return {"temperature": np.float32(trial.suggest_float("temperature", 0.1, 10.0, log=True))}


@hookimpl
def harness_fit(method, task, config, ctx):
    return _base.fit(task, config["temperature"])


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    return _base.probs(fitted, split)
