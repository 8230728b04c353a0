"""``harness plugins --check NAME``: put a plugin's methods through everything a run does to them, on
a tiny task of every kind they declare (and of every task kind: a stream, a multi-task or an
episodic task built from it), and say exactly what is wrong. The test a plugin author runs
before publishing.

For each method and kind: several sampled configurations, each held exactly as the study storage
holds it; the defaults resolved for that kind and checked against the search space; one fit on the
task without its test split (the first trial's configuration: the defaults where there are any);
evaluation on the val split and on the test split, labels hidden, with the core's probability checks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from harness.configs import DefaultsTrial, defaults_for
from harness.context import FitContext
from harness.data import load_task
from harness.errors import ConfigError, PluginError, failure_reason
from harness.metrics import accuracy
from harness.phases import PhaseSettings, fit, kinds, predict
from harness.phases.fitting import Fitted
from harness.plugins import Method, Registry
from harness.task import Task
from harness.tasks import CLASSIFICATION, task_kind
from harness.tasks import build as build_task_kind

TINY = {"image": "digits", "tabular": "iris", "graph": "cora"}
SAMPLES = 4  # configurations sampled per method and kind
# The tiny task of each task kind, built from the tiny data set of the method's modality.
TINY_TASK_KINDS: dict[str, dict[str, Any]] = {
    "stream": {"stream": {"experiences": 5, "scenario": "class"}},
    "multitask": {"multitask": ["digit", "parity"]},
    "episodic": {"episodes": {"ways": 5, "shots": [1], "meta_train": [0, 1, 2, 3, 4], "meta_test": [5, 6, 7, 8, 9],
                              "queries": 5, "test_episodes": 5, "val_episodes": 5}},
}


@dataclass
class CheckReport:
    method: str
    task: str
    plugin: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Failed(Exception):
    """One stage of the check failed; the message says which and why."""


def methods_to_check(registry: Registry, name: str) -> list[Method]:
    """The methods ``--check NAME`` covers: a plugin's, or one method. A plugin that failed to load,
    or a method name two plugins claim, is a :class:`PluginError` naming both sides."""
    if name in registry.broken:
        raise PluginError(str(registry.broken[name]))
    if name in registry.unusable:
        raise PluginError(str(registry.unusable[name]))
    if name in registry.plugins:
        clash = next((p for p in registry.unusable.values() if name == p.plugin or name in p.also), None)
        if clash is not None:
            raise PluginError(str(clash))
        return [registry.methods[m] for m in registry.plugins[name].methods]
    if name in registry.methods:
        return [registry.methods[name]]
    known = ", ".join(sorted(registry.plugins))
    hint = "".join(f"; {p}" for p in registry.broken.values())
    raise ConfigError(f"no plugin or method named {name!r} (plugins: {known}){hint}")


def check_plugin(registry: Registry, name: str, epochs: int = 2, device: str = "cpu") -> list[CheckReport]:
    """Check every method of plugin ``name`` (or the one method ``name``) on a tiny task of each kind
    it declares."""
    methods = methods_to_check(registry, name)
    if not methods:
        return [CheckReport("-", "-", name, problems=["the plugin provides no method (harness_methods returned none)"])]
    tasks: dict[str, Task] = {}
    reports = []
    for method in methods:
        for kind in method.info.kinds:
            if TINY.get(kind) not in registry.datasets:
                reports.append(CheckReport(method.name, kind, method.plugin,
                                           notes=[f"no tiny {kind} task loaded to check on; skipped"]))
                continue
            if kind not in tasks:
                tasks[kind] = load_task(registry, TINY[kind], device=torch.device(device))
            for kind_name in method.info.tasks:  # classification, and the task kinds of harness.tasks
                if kind_name == CLASSIFICATION:
                    reports.append(_check_one(method, tasks[kind], epochs, torch.device(device)))
                    continue
                try:
                    kind_task = build_task_kind(tasks[kind], TINY_TASK_KINDS[kind_name])
                except (ConfigError, KeyError) as exc:
                    reports.append(CheckReport(method.name, f"{TINY[kind]} ({kind_name})", method.plugin,
                                               notes=[f"no tiny {kind_name} task from {TINY[kind]} ({exc}); skipped"]))
                    continue
                reports.append(_check_one(method, kind_task, epochs, torch.device(device)))
    return reports


def _check_one(method: Method, task: Task, epochs: int, device: torch.device) -> CheckReport:
    kind = task_kind(task)
    report = CheckReport(method.name, task.name if kind == CLASSIFICATION else f"{task.name} ({kind})", method.plugin)
    plugin_task = task.without_test()
    try:
        configs = _sample(method, plugin_task)
        report.notes.append(f"{len(configs)} sampled configurations are storable, e.g. {configs[0]}")
        config = _defaults(method, plugin_task, report) or configs[0]
        reports: list[float] = []
        ctx = PhaseSettings(epochs=epochs, device=device, amp=False).context(
            0, "tune", reporter=lambda step, value: reports.append(value))
        scores = _fit_and_score(method, task, config, ctx)
    except _Failed as exc:
        report.problems.append(str(exc))
        return report
    for split_name, acc in scores.items():
        report.notes.append(f"{split_name} accuracy after {epochs} epoch(s): {acc:.3f}")
    chance = 1.0 / task.num_classes
    if not math.isfinite(scores["test"]) or scores["test"] <= chance:
        report.notes.append(f"warning: test accuracy {scores['test']:.3f} is not above chance ({chance:.3f}) "
                            "with this tiny budget")
    if ctx.samples_seen == 0:
        report.notes.append("warning: ctx.samples_seen stayed 0, so the train-throughput column will be empty "
                            "(train with harness.toolkit.train.train or add to ctx.samples_seen)")
    if not reports:
        report.notes.append("note: ctx.report was never called, so the pruner cannot stop a poor trial early")
    return report


def _sample(method: Method, task: Task) -> list[dict[str, Any]]:
    """Configurations as a tuning study samples them, each as the storage will hold it."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    configs = []
    for i in range(SAMPLES):
        trial = study.ask()
        try:
            configs.append(method.search_space(trial, task))
        except Exception as exc:
            raise _Failed(f"harness_search_space, sample {i + 1} on the {task.kind} task {task.name}: "
                          f"{_reason(method, exc)}") from None
        study.tell(trial, 0.0)
    return configs


def _defaults(method: Method, task: Task, report: CheckReport) -> dict[str, Any] | None:
    """The configuration the defaults give for this task kind, as the first trial of a run uses it."""
    try:
        defaults = defaults_for(method.info, task)
        if not defaults:
            return None
        trial = DefaultsTrial(defaults, method.name, task.kind)
        config = method.search_space(trial, task)
    except Exception as exc:
        raise _Failed(_reason(method, exc)) from None
    unused = sorted(set(defaults) - trial.used)
    if unused:
        report.notes.append(f"warning: MethodInfo.defaults for the {task.kind} task {task.name} sets {', '.join(unused)}, which "
                            "its search space never asks for (defaults hold Optuna parameter names)")
    report.notes.append(f"defaults give {config}")
    return config


def _reason(method: Method, exc: BaseException) -> str:
    """The failure in one line, without the method's name (the report line names it)."""
    reason = failure_reason(exc)
    return reason.removeprefix(f"{method.name}: ")


def _fit_and_score(method: Method, task: Task, config: dict[str, Any], ctx: FitContext) -> dict[str, float]:
    """Fit on the task without its test split, then score the val and the test split (labels hidden)
    with the core's one fit → predict → check routine: what a tuning trial and a seed re-run do."""
    if task_kind(task) != CLASSIFICATION:  # the kind's own protocol, as tuning and the seed re-runs run it
        out = {}
        for split_name in ("val", "test"):
            try:
                out[split_name] = kinds.PROTOCOLS[task_kind(task)](method, task, config, ctx, split_name).metrics["accuracy"]
            except Exception as exc:
                raise _Failed(f"{task_kind(task)} protocol on {split_name}: {_reason(method, exc)}") from None
        return out
    try:
        fitted = fit(method, task.without_test(), config, ctx)
    except Exception as exc:
        raise _Failed(f"harness_fit: {_reason(method, exc)}") from None
    scores = {}
    for split_name in ("val", "test"):
        split = getattr(task, split_name)
        try:
            probs = predict(fitted, split, task.num_classes)[0].probs
        except Exception as exc:
            raise _Failed(f"harness_evaluate on {split_name}: {_reason(method, exc)}") from None
        scores[split_name] = accuracy(probs, split.y)
    _check_view(method, fitted, task)
    return scores


def _check_view(method: Method, fitted: Fitted, task: Task) -> None:
    """The optional ``harness_differentiable`` view: ``B × K`` logits with a finite input gradient."""
    try:
        view = method.differentiable(fitted.state, fitted.ctx)
        if isinstance(view, str):
            return
        x = task.val.x[:8].detach().clone().requires_grad_(True)
        logits = view(x)
        if tuple(logits.shape) != (len(x), task.num_classes):
            raise PluginError(f"gave shape {tuple(logits.shape)} for a batch of {len(x)}, expected "
                              f"{(len(x), task.num_classes)}")
        grad = torch.autograd.grad(logits.float().sum(), x)[0]
        if not torch.isfinite(grad).all():
            raise PluginError("its input gradient is not finite")
    except Exception as exc:
        raise _Failed(f"harness_differentiable: {_reason(method, exc)}") from None
