"""A nearest-centroid method: real (it learns), fast, and instrumented for the tests.

``HARNESS_TEST_COUNTER``: a file that gets one line per fit (phase and seed).
``HARNESS_TEST_KILL_AT``: on that fit number (1-based, counted over the whole file) the process kills
itself with SIGKILL, as a crashed worker would.
``HARNESS_TEST_SPY``: assert inside the hooks that the test split never reaches them.
``HARNESS_TEST_SIGNAL_IN_SPACE``: ``KILL`` or ``INT``: the process sends itself that signal the first
time it samples a configuration, before anything of the trial is recorded.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import torch

from harness import MethodInfo, hookimpl


@hookimpl
def harness_methods():
    return [MethodInfo("centroid", ("image", "tabular"), "nearest class centroid with a softmax over distances",
                       defaults={"temperature": 1.0}),
            MethodInfo("centroid_b", ("image", "tabular"), "the same, under a second name",
                       defaults={"temperature": 1.0})]


@hookimpl
def harness_search_space(method, trial, task):
    sig = os.environ.pop("HARNESS_TEST_SIGNAL_IN_SPACE", None)
    if sig:
        os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))
        time.sleep(5)  # a SIGINT becomes KeyboardInterrupt here; SIGKILL never returns
    return {"temperature": trial.suggest_float("temperature", 0.1, 10.0, log=True)}


@hookimpl
def harness_fit(method, task, config, ctx):
    assert not task.has_test, "fit must never see the test split"
    counter = os.environ.get("HARNESS_TEST_COUNTER")
    if counter:
        with open(counter, "a") as fh:
            fh.write(f"{method} {ctx.phase} {ctx.seed}\n")
        kill_at = int(os.environ.get("HARNESS_TEST_KILL_AT", "0"))
        if kill_at and len(Path(counter).read_text().splitlines()) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    x = task.train.x.flatten(1)
    centroids = torch.stack([x[task.train.y == c].mean(0) for c in range(task.num_classes)])
    ctx.samples_seen += len(x)
    return centroids, config["temperature"]


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    assert split.y is None, "evaluate must not receive labels"
    centroids, temperature = fitted
    d = torch.cdist(split.x.flatten(1), centroids)
    return (-d / temperature).softmax(1)
