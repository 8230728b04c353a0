"""Loading plugins, and the :class:`Registry` of methods and data sets they provide.

Built-in plugins and third-party ones arrive the same way, through the entry-point group
``harness_automl``; ``--plugin module.path`` adds a module that is not installed. A plugin that fails to
import, implements a hook with a wrong signature or an unknown ``harness_*`` name, or claims a
method name that is taken, is recorded as a :class:`Problem` and skipped; the others still load.
Metrics from ``harness_metrics`` join :mod:`harness.metrics`' registry the same way: a name that
is taken is a problem, and the metric is skipped.

Environment switches: ``HARNESS_PLUGINS=a,b`` loads only the named entry points;
``HARNESS_TRACE=1`` prints every hook call with its arguments and result (pluggy's tracing).
"""
from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata as md
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy
import torch

from harness import hookspecs
from harness import metrics as metric_registry
from harness.errors import ConfigError, PluginError, PluginOutputError, UnknownMethodError
from harness.info import DatasetInfo, MethodInfo
from harness.metrics import Metric
from harness.predictions import Predictions, check_probabilities

DISTRIBUTION = "harness-automl"  # what `pip install` names; the import package is `harness`
ENTRY_POINT_GROUP = "harness_automl"
METHOD_HOOKS = ("harness_search_space", "harness_fit", "harness_evaluate")


@dataclass
class PluginRecord:
    """One loaded plugin, as ``harness plugins`` lists it."""

    name: str
    source: str  # "built-in", "package <dist> <version>", or "module <path>"
    hooks: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)


@dataclass
class Problem:
    plugin: str
    message: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r}: {self.message}"


class Method:
    """A method name bound to the one plugin that owns it; the core calls its hooks through this."""

    def __init__(self, info: MethodInfo, plugin: str, pm: pluggy.PluginManager):
        self.info = info
        self.plugin = plugin
        others = [p for name, p in pm.list_name_plugin() if name != plugin]
        # A subset caller keeps pluggy's tracing and monitoring while reaching only the owner.
        self._hooks = {h: pm.subset_hook_caller(h, remove_plugins=others) for h in METHOD_HOOKS}

    @property
    def name(self) -> str:
        return self.info.name

    def _call(self, hook: str, **kwargs) -> Any:
        result = self._hooks[hook](method=self.name, **kwargs)
        if result is None:
            raise PluginError(f"{hook} of plugin {self.plugin!r} returned None for method {self.name!r}")
        return result

    def search_space(self, trial, task) -> dict[str, Any]:
        config = self._call("harness_search_space", trial=trial, task=task)
        if not isinstance(config, dict):
            raise PluginOutputError(
                f"harness_search_space for {self.name!r} returned {type(config).__name__}, not a dict"
            )
        return config

    def fit(self, task, config, ctx) -> Any:
        return self._call("harness_fit", task=task, config=config, ctx=ctx)

    def predict(self, fitted, split, ctx) -> Predictions:
        """What ``harness_evaluate`` returned, as unchecked :class:`Predictions` (the core checks
        them once, in :mod:`harness.phases.fitting`)."""
        return Predictions.from_hook(self._call("harness_evaluate", fitted=fitted, split=split, ctx=ctx), ctx)

    def evaluate(self, fitted, split, ctx) -> torch.Tensor:
        """Checked probabilities of ``split`` (for direct callers; members are on :meth:`predict`)."""
        return check_probabilities(self.predict(fitted, split, ctx).probs, len(split), None, self.name)


class Registry:
    """Every loaded plugin with the methods and data sets it provides."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.plugins: dict[str, PluginRecord] = {}
        self.problems: list[Problem] = []
        self.methods: dict[str, Method] = {}
        self.datasets: dict[str, tuple[DatasetInfo, str]] = {}
        self.metrics: dict[str, tuple[Metric, str]] = {}

    # -- loading --------------------------------------------------------------------------
    def add(self, plugin: object, name: str, source: str) -> bool:
        """Register one plugin; on a contract violation record a problem and leave it out."""
        if self.pm.has_plugin(name):
            self.problems.append(Problem(name, "a plugin of this name is already loaded; skipped"))
            return False
        unknown = [
            attr for attr in dir(plugin)
            if attr.startswith("harness_") and callable(getattr(plugin, attr))
            and not hasattr(self.pm.hook, attr)
        ]
        if unknown:
            self.problems.append(Problem(name, f"implements unknown hook(s) {', '.join(unknown)}"))
            return False
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            self.problems.append(Problem(name, _one_line(str(exc))))
            return False
        hooks = sorted(impl_hook for impl_hook in dir(plugin) if hasattr(self.pm.hook, impl_hook)
                       and getattr(getattr(plugin, impl_hook), "harness_impl", None) is not None)
        self.plugins[name] = PluginRecord(name=name, source=source, hooks=hooks)
        self._collect(name, plugin)
        if name in self.plugins:
            self._collect_metrics(name, plugin)
        return True

    def _collect(self, name: str, plugin: object) -> None:
        record = self.plugins[name]
        try:
            infos = plugin.harness_methods() if hasattr(plugin, "harness_methods") else []
            datasets = plugin.harness_datasets() if hasattr(plugin, "harness_datasets") else []
        except Exception as exc:  # a plugin's description hook is third-party code
            self.problems.append(Problem(name, f"raised while describing itself: {_one_line(repr(exc))}"))
            self.pm.unregister(name=name)
            del self.plugins[name]
            return
        for info in infos or []:
            if not isinstance(info, MethodInfo):
                self.problems.append(Problem(name, f"harness_methods returned {info!r}, not a MethodInfo"))
                continue
            missing = [h for h in METHOD_HOOKS if h not in record.hooks]
            if missing:
                self.problems.append(Problem(name, f"method {info.name!r} lacks {', '.join(missing)}"))
                continue
            if info.name in self.methods:
                owner = self.methods[info.name].plugin
                self.problems.append(
                    Problem(name, f"method {info.name!r} is already provided by plugin {owner!r}; skipped")
                )
                continue
            self.methods[info.name] = _PendingMethod(info, name)  # bound after all plugins load
            record.methods.append(info.name)
        for ds in datasets or []:
            if not isinstance(ds, DatasetInfo):
                self.problems.append(Problem(name, f"harness_datasets returned {ds!r}, not a DatasetInfo"))
                continue
            if ds.name in self.datasets:
                owner = self.datasets[ds.name][1]
                self.problems.append(
                    Problem(name, f"data set {ds.name!r} is already provided by plugin {owner!r}; skipped")
                )
                continue
            self.datasets[ds.name] = (ds, name)
            record.datasets.append(ds.name)

    # -- metrics (harness_metrics) ----------------------------------------------------------
    def _collect_metrics(self, name: str, plugin: object) -> None:
        if not hasattr(plugin, "harness_metrics"):
            return
        try:
            declared = plugin.harness_metrics()
        except Exception as exc:  # third-party code
            self.problems.append(Problem(name, f"harness_metrics raised {_one_line(repr(exc))}"))
            return
        for m in declared or []:
            if not isinstance(m, Metric):
                self.problems.append(Problem(name, f"harness_metrics returned {m!r}, not a harness.metrics.Metric"))
                continue
            if metric_registry.builtin_name(m.name):
                self.problems.append(Problem(name, f"metric {m.name!r} is a built-in name; skipped"))
                continue
            if m.name in self.metrics:
                owner = self.metrics[m.name][1]
                self.problems.append(
                    Problem(name, f"metric {m.name!r} is already provided by plugin {owner!r}; skipped")
                )
                continue
            self.metrics[m.name] = (m, name)
            self.plugins[name].metrics.append(m.name)

    def _install_metrics(self) -> None:
        """Make the collected metrics the ones :func:`harness.metrics.classification_metrics` computes."""
        metric_registry.set_plugin_metrics(m for m, _ in self.metrics.values())

    def _bind(self) -> None:
        for name, pending in list(self.methods.items()):
            if isinstance(pending, _PendingMethod):
                self.methods[name] = Method(pending.info, pending.plugin, self.pm)

    # -- lookup ---------------------------------------------------------------------------
    def method(self, name: str) -> Method:
        try:
            return self.methods[name]
        except KeyError:
            known = ", ".join(sorted(self.methods)) or "none"
            raise UnknownMethodError(f"unknown method {name!r} (known: {known})") from None

    def match_methods(self, patterns: Iterable[str]) -> list[str]:
        """Method names matching shell-style patterns (``erm``, ``sk_*``), in order, no repeats."""
        out: list[str] = []
        for pat in patterns:
            hits = [m for m in self.methods if fnmatch.fnmatchcase(m, pat)]
            if not hits:
                self.method(pat)  # raises the one-line error
            out += [h for h in hits if h not in out]
        return out

    def dataset(self, spec: str) -> tuple[DatasetInfo, str | None]:
        """Find the data set for ``name`` or ``prefix:argument``."""
        if spec in self.datasets:
            return self.datasets[spec][0], None
        prefix, sep, arg = spec.partition(":")
        if sep and prefix in self.datasets and self.datasets[prefix][0].takes_argument:
            return self.datasets[prefix][0], arg
        if prefix in self.datasets and self.datasets[prefix][0].takes_argument:
            raise ConfigError(f"data set {prefix!r} needs an argument: {prefix}:<...>")
        known = ", ".join(
            sorted(n + (":<arg>" if d.takes_argument else "") for n, (d, _) in self.datasets.items())
        )
        raise ConfigError(f"unknown data set {spec!r} (known: {known})")


class _PendingMethod:
    def __init__(self, info: MethodInfo, plugin: str):
        self.info, self.plugin = info, plugin


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _distribution_of(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "package (unknown)"
    if _canonical(dist.metadata["Name"]) == DISTRIBUTION:
        return "built-in"
    return f"package {dist.metadata['Name']} {dist.version}"


def _canonical(name: str) -> str:
    """A distribution name as PyPI compares it (PEP 503): ``Harness_AutoML`` is ``harness-automl``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def load_plugins(modules: Iterable[str] = (), entry_points: bool = True) -> Registry:
    """Build a registry from the entry-point group ``harness_automl`` plus explicitly named modules."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if os.environ.get("HARNESS_TRACE"):
        pm.trace.root.setwriter(lambda msg: sys.stderr.write(msg))
        pm.enable_tracing()
    registry = Registry(pm)
    only = {s.strip() for s in os.environ.get("HARNESS_PLUGINS", "").split(",") if s.strip()}
    if entry_points:
        eps = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (_distribution_of(e) != "built-in", e.name))
        for ep in eps:
            if only and ep.name not in only:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                registry.problems.append(Problem(ep.name, f"failed to import {ep.value}: {_one_line(repr(exc))}"))
                continue
            registry.add(plugin, ep.name, _distribution_of(ep))
    for path in modules:
        try:
            plugin = importlib.import_module(path)
        except Exception as exc:
            raise PluginError(f"cannot import plugin module {path!r}: {_one_line(repr(exc))}") from None
        registry.add(plugin, path, f"module {path}")
    registry._bind()
    registry._install_metrics()
    return registry
