"""The nearest-centroid fixture method under the name ``paced``, taking ``HARNESS_TEST_SLEEP`` seconds
per fit, so that several workers overlap and a trial can be killed while it runs. The counter and
kill hooks of ``fixture_plugins.centroid`` apply."""
from __future__ import annotations

import os
import time

from harness import MethodInfo, hookimpl

from fixture_plugins import centroid


@hookimpl
def harness_methods():
    return [MethodInfo("paced", ("image", "tabular"), "nearest class centroid that takes a while",
                       defaults={"temperature": 1.0})]


@hookimpl
def harness_search_space(method, trial, task):
    return centroid.harness_search_space(method, trial, task)


@hookimpl
def harness_fit(method, task, config, ctx):
    fitted = centroid.harness_fit(method, task, config, ctx)
    time.sleep(float(os.environ.get("HARNESS_TEST_SLEEP", "0")))
    return fitted


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    return centroid.harness_evaluate(method, fitted, split, ctx)
