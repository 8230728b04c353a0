"""``harness new-plugin NAME``: a pip-installable plugin package that passes ``harness plugins --check``
and its own test as written, for an author to edit from there."""
from __future__ import annotations

import re
from pathlib import Path

from harness.errors import ConfigError

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "harness-{dist}"
version = "0.1.0"
description = "A harness plugin providing the method {name!r}."
requires-python = ">=3.10"
dependencies = ["harness-automl", "torch"]

[project.optional-dependencies]
test = ["pytest"]

# How harness finds the plugin once the package is installed: entry-point group "harness_automl".
[project.entry-points.harness_automl]
{name} = "{module}"

[tool.setuptools.packages.find]
where = ["src"]
'''

MODULE = '''"""The harness method {name!r}: softmax regression trained by harness's shared loop.

Replace the model and the loss with yours; ``harness plugins --check {name}`` says what, if anything,
breaks the contract (documented in ``harness/hookspecs.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness import MethodInfo, hookimpl
from harness.toolkit.train import TrainConfig, predict_proba, suggest_optimizer, train, val_accuracy


@hookimpl
def harness_methods():
    # defaults: Optuna parameter names (those given to trial.suggest_*); the first trial of every study.
    return [MethodInfo({name!r}, ("image", "tabular"), "softmax regression on the flattened inputs",
                       defaults={{"optimizer": "adamw", "lr": 1e-2, "weight_decay": 1e-4}})]


@hookimpl
def harness_search_space(method, trial, task):
    # Plain Python values only: the configuration is stored as JSON with every trial.
    return suggest_optimizer(trial, ("adamw", "momentum"))


@hookimpl
def harness_fit(method, task, config, ctx):
    # task.test is withheld here: train on task.train, tune on task.val.
    x, y = task.train.x.flatten(1), task.train.y
    model = nn.Linear(x.shape[1], task.num_classes)

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:  # the loss of one batch
        return F.cross_entropy(model(x[idx]), y[idx])

    train(model, step, len(x), TrainConfig.from_config(config, ctx), ctx,
          val_fn=lambda: val_accuracy(_Flat(model), task.val, ctx))
    return model


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    return predict_proba(_Flat(fitted), split.x, ctx)  # class probabilities, N × K


class _Flat(nn.Module):
    """The linear model on flattened inputs (images arrive as N×C×H×W)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))
'''

TEST = '''"""The harness conformance check, as ``harness plugins --check {name}`` runs it."""
from harness.conformance import check_plugin
from harness.plugins import load_plugins


def test_{module}_passes_the_conformance_check():
    registry = load_plugins()
    assert {name!r} in registry.plugins, [str(p) for p in registry.problems]
    reports = check_plugin(registry, {name!r})
    problems = [f"{{r.method}} on {{r.task}}: {{p}}" for r in reports for p in r.problems]
    assert reports and not problems, problems
'''

README = '''# harness-{dist}

A harness plugin providing the method `{name}`.

    pip install .
    harness plugins --check {name}     # the conformance check on tiny image and tabular tasks
    harness run {name} erm --dataset digits --trials 4 --seeds 3
    pytest tests                      # the same check as a test

The hooks live in `src/{module}/__init__.py`; their contract is `harness/hookspecs.py`.
'''


def new_plugin(name: str, directory: Path | None = None) -> Path:
    """Write the package for plugin ``name`` into ``directory`` (default ``./NAME``); return its path."""
    if not _NAME.match(name):
        raise ConfigError(f"plugin name {name!r} must be lower case letters, digits and underscores, "
                          "starting with a letter")
    root = Path(directory) if directory is not None else Path(name)
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} exists and is not empty; choose another --dir")
    module = f"harness_{name}"
    fields = {"name": name, "module": module, "dist": name.replace("_", "-")}
    files = {
        root / "pyproject.toml": PYPROJECT,
        root / "README.md": README,
        root / "src" / module / "__init__.py": MODULE,
        root / "tests" / f"test_{name}.py": TEST,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**fields))
    return root


__all__ = ["new_plugin"]
