"""``harness plugins --check NAME``: run a plugin's methods through the hooks on a tiny task and
say exactly what is wrong. The test a plugin author runs before publishing."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import optuna
import torch

from harness.data import load_task
from harness.errors import ConfigError, failure_reason
from harness.metrics import accuracy
from harness.phases import PhaseSettings, fit, predict
from harness.plugins import Registry

TINY = {"image": "digits", "tabular": "iris", "graph": "cora"}


@dataclass
class CheckReport:
    method: str
    task: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_plugin(registry: Registry, plugin: str, epochs: int = 2, device: str = "cpu") -> list[CheckReport]:
    """Check every method of ``plugin`` on a tiny task of each kind it supports."""
    if plugin not in registry.plugins:
        owner = registry.methods.get(plugin)
        if owner is None:
            known = ", ".join(sorted(registry.plugins))
            raise ConfigError(f"no plugin or method named {plugin!r} (plugins: {known})")
        names = [plugin]
    else:
        names = registry.plugins[plugin].methods
        if not names:
            return [CheckReport("-", "-", problems=["the plugin provides no method (harness_methods returned none)"])]
    reports = []
    for name in names:
        method = registry.methods[name]
        kinds = [k for k in method.info.kinds if k in TINY] or list(method.info.kinds[:1])
        for kind in kinds:
            reports.append(_check_one(registry, method, kind, epochs, torch.device(device)))
    return reports


def _check_one(registry, method, kind, epochs, device) -> CheckReport:
    ds = TINY.get(kind)
    report = CheckReport(method.name, ds or kind)
    if ds is None:
        report.notes.append(f"no tiny {kind} task to check on; skipped")
        return report
    task = load_task(registry, ds, device=device)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for attempt in range(3):
        trial = study.ask()
        try:
            config = method.search_space(trial, task.without_test())
        except Exception as exc:
            report.problems.append(f"search space failed to sample: {failure_reason(exc)}")
            return report
        study.tell(trial, 0.0)
    report.notes.append(f"search space samples, e.g. {config}")
    if method.info.defaults:
        try:
            method.search_space(optuna.trial.FixedTrial(method.info.defaults), task.without_test())
        except Exception as exc:
            report.problems.append(f"MethodInfo.defaults do not cover the search space: {failure_reason(exc)}")
    ctx = PhaseSettings(epochs=epochs, device=device, amp=False).context(0, "tune")
    try:
        fitted = fit(method, task.without_test(), config, ctx)
    except Exception as exc:
        report.problems.append(f"harness_fit raised {failure_reason(exc)}")
        return report
    for split_name in ("val", "test"):
        split = getattr(task, split_name)
        try:
            probs = predict(fitted, split, task.num_classes)[0].probs
        except Exception as exc:
            report.problems.append(f"harness_evaluate on {split_name}: {failure_reason(exc)}")
            return report
        acc = accuracy(probs, split.y)
        report.notes.append(f"{split_name} accuracy after {epochs} epoch(s): {acc:.3f}")
    chance = 1.0 / task.num_classes
    if not math.isfinite(acc) or acc <= chance:
        report.notes.append(f"warning: test accuracy {acc:.3f} is not above chance ({chance:.3f}) with this tiny budget")
    if ctx.samples_seen == 0:
        report.notes.append("warning: ctx.samples_seen stayed 0, so the train-throughput column will be empty "
                            "(train with harness.train.train or add to ctx.samples_seen)")
    return report
