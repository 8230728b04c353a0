"""Loading plugins, and the :class:`Registry` of methods and data sets they provide.

Built-in plugins and third-party ones arrive the same way, through the entry-point group
``harness_automl``; ``--plugin module.path`` adds a module that is not installed. A plugin that fails to
import, or implements a hook with a wrong signature or an unknown ``harness_*`` name, is recorded as
a :class:`Problem` and skipped; the others still load, and any use of the broken plugin's name
raises an error that names its module and exception. Two plugins declaring the same method name
make that name unusable (an error naming both) unless the second overrides a built-in on purpose
with ``MethodInfo(..., replaces=NAME)``.
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
from typing import TYPE_CHECKING, Any, Callable, Iterable

import pluggy

from harness import hookspecs
from harness import metrics as metric_registry
from harness.configs import check_serialisable
from harness.errors import ConfigError, PluginError, PluginOutputError, UnknownMethodError
from harness.info import DatasetInfo, MethodInfo
from harness.metrics import Metric
from harness.predictions import Predictions, check_probabilities

if TYPE_CHECKING:
    import torch

DISTRIBUTION = "harness-automl"  # what `pip install` names; the import package is `harness`
ENTRY_POINT_GROUP = "harness_automl"
METHOD_HOOKS = ("harness_search_space", "harness_fit", "harness_evaluate")
OPTIONAL_METHOD_HOOKS = ("harness_differentiable",)  # called on the owner only, like METHOD_HOOKS


@dataclass
class PluginRecord:
    """One loaded plugin, as ``harness plugins`` lists it."""

    name: str
    source: str  # "built-in", "package <dist> <version>", or "module <path>"
    hooks: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    replaces: dict[str, str] = field(default_factory=dict)  # method name -> the built-in plugin it overrides

    @property
    def builtin(self) -> bool:
        return self.source == "built-in"


@dataclass
class Problem:
    """Something wrong with a plugin, in one line. ``method`` is set when only that method is affected."""

    plugin: str
    message: str
    method: str | None = None
    also: tuple[str, ...] = ()  # other plugins involved (the first declarer of a clashing name)

    def __str__(self) -> str:
        return f"plugin {self.plugin!r}: {self.message}"


class Method:
    """A method name bound to the one plugin that owns it; the core calls its hooks through this."""

    def __init__(self, info: MethodInfo, plugin: str, pm: pluggy.PluginManager):
        self.info = info
        self.plugin = plugin
        others = [p for name, p in pm.list_name_plugin() if name != plugin]
        # A subset caller keeps pluggy's tracing and monitoring while reaching only the owner.
        self._hooks = {h: pm.subset_hook_caller(h, remove_plugins=others) for h in (*METHOD_HOOKS, *OPTIONAL_METHOD_HOOKS)}

    @property
    def name(self) -> str:
        return self.info.name

    def _call(self, hook: str, **kwargs) -> Any:
        result = self._hooks[hook](method=self.name, **kwargs)
        if result is None:
            raise PluginError(f"{hook} of plugin {self.plugin!r} returned None for method {self.name!r}")
        return result

    def search_space(self, trial, task) -> dict[str, Any]:
        """One configuration, exactly as the study storage will hold it (see :func:`check_serialisable`)."""
        config = self._call("harness_search_space", trial=_NamingTrial(trial, self.name, task.kind), task=task)
        if not isinstance(config, dict):
            raise PluginOutputError(
                f"harness_search_space for {self.name!r} returned {type(config).__name__}, not a dict"
            )
        return check_serialisable(config, self.name)

    def fit(self, task, config, ctx) -> Any:
        return self._call("harness_fit", task=task, config=config, ctx=ctx)

    def predict(self, fitted, split, ctx) -> Predictions:
        """What ``harness_evaluate`` returned, as unchecked :class:`Predictions` (the core checks
        them once, in :mod:`harness.phases.fitting`)."""
        return Predictions.from_hook(self._call("harness_evaluate", fitted=fitted, split=split, ctx=ctx), ctx)

    def differentiable(self, fitted, ctx) -> Callable[[torch.Tensor], torch.Tensor] | str:
        """The fitted model's logits as a differentiable function of the input, or the one-line
        reason there is none (``harness_differentiable`` is optional)."""
        view = self._hooks["harness_differentiable"](method=self.name, fitted=fitted, ctx=ctx)
        if view is None:
            return f"plugin {self.plugin!r} gives no differentiable view of {self.name!r}"
        if not (isinstance(view, str) or callable(view)):
            raise PluginOutputError(f"harness_differentiable for {self.name!r} returned {type(view).__name__}, "
                                    "not a function or a reason")
        return view

    def evaluate(self, fitted, split, ctx) -> torch.Tensor:
        """Checked probabilities of ``split`` (for direct callers; members are on :meth:`predict`)."""
        return check_probabilities(self.predict(fitted, split, ctx).probs, len(split), None, self.name)


class _NamingTrial:
    """A trial whose ``suggest_*`` errors name the parameter and the task kind: Optuna's own message
    for a fixed or enqueued value outside the space is only ``'cnn' not in ('mlp',)``."""

    def __init__(self, trial, method: str, kind: str):
        self._trial, self._method, self._kind = trial, method, kind

    def __getattr__(self, name: str):
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(param: str, *args, **kwargs):
            try:
                return attr(param, *args, **kwargs)
            except ValueError as exc:
                raise ConfigError(f"{self._method}: parameter {param!r} ({self._kind} task): "
                                  f"{_one_line(str(exc))}") from None

        return suggest



class Registry:
    """Every loaded plugin with the methods and data sets it provides."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.plugins: dict[str, PluginRecord] = {}
        self.problems: list[Problem] = []
        self.methods: dict[str, Method] = {}
        self.datasets: dict[str, tuple[DatasetInfo, str]] = {}
        self.metrics: dict[str, tuple[Metric, str]] = {}
        self.broken: dict[str, Problem] = {}  # plugin name -> why it did not load
        self.unusable: dict[str, Problem] = {}  # method name -> why it cannot run (a clash, missing hooks)
        self.distributions: dict[str, str] = {}  # plugin name -> "dist version" or "module path"

    # -- loading --------------------------------------------------------------------------
    def fail(self, name: str, message: str) -> None:
        """Record that plugin ``name`` did not load."""
        problem = Problem(name, message)
        self.problems.append(problem)
        self.broken.setdefault(name, problem)

    def add(self, plugin: object, name: str, source: str) -> bool:
        """Register one plugin; on a contract violation record a problem and leave it out."""
        if self.pm.has_plugin(name):
            self.problems.append(Problem(name, "a plugin of this name is already loaded; skipped"))
            return False
        module = getattr(plugin, "__name__", type(plugin).__name__)
        unknown = [
            attr for attr in dir(plugin)
            if attr.startswith("harness_") and callable(getattr(plugin, attr))
            and not hasattr(self.pm.hook, attr)
        ]
        if unknown:
            self.fail(name, f"module {module} implements unknown hook(s) {', '.join(unknown)}")
            return False
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            self.fail(name, f"module {module}: {_one_line(str(exc))}")
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
            module = getattr(plugin, "__name__", type(plugin).__name__)
            self.fail(name, f"module {module} raised while describing itself: {_exception(exc)}")
            self.pm.unregister(name=name)
            del self.plugins[name]
            return
        for info in infos or []:
            if not isinstance(info, MethodInfo):
                self.problems.append(Problem(name, f"harness_methods returned {info!r}, not a MethodInfo"))
                continue
            missing = [h for h in METHOD_HOOKS if h not in record.hooks]
            if missing:
                self._unusable(Problem(name, f"method {info.name!r} lacks {', '.join(missing)}", info.name))
                continue
            if info.replaces is not None and info.replaces != info.name:
                self._unusable(Problem(name, f"method {info.name!r} sets replaces={info.replaces!r}; replaces "
                                             "names the built-in method this one takes over, so it must be "
                                             f"{info.name!r}", info.name))
                continue
            if info.name in self.unusable and self.unusable[info.name].plugin != name:
                first = self.unusable[info.name]
                again = Problem(first.plugin, f"{first.message}; also declared by plugin {name!r}", info.name,
                                (*first.also, name))
                self.unusable[info.name] = self.problems[self.problems.index(first)] = again
                continue
            if info.name in self.methods:
                owner = self.plugins[self.methods[info.name].plugin]
                if info.replaces == info.name and owner.builtin and info.name not in owner.replaces:
                    owner.methods.remove(info.name)
                    record.replaces[info.name] = owner.name
                else:
                    self._clash(info, owner, record)
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
    def _unusable(self, problem: Problem) -> None:
        self.problems.append(problem)
        self.unusable.setdefault(problem.method, problem)

    def _clash(self, info: MethodInfo, owner: PluginRecord, record: PluginRecord) -> None:
        """Two plugins declare ``info.name``: neither may run it, and the error names both."""
        del self.methods[info.name]
        owner.methods.remove(info.name)
        how = (f"to override the built-in on purpose declare MethodInfo({info.name!r}, ..., replaces={info.name!r})"
               if owner.builtin else "neither is built in, so replaces= cannot settle it")
        if info.replaces and not owner.builtin:
            how = f"replaces={info.replaces!r} may only override a built-in method, and {owner.name!r} is not built in"
        self._unusable(Problem(
            record.name,
            f"method {info.name!r} is declared by plugin {owner.name!r} ({owner.source}) and by plugin "
            f"{record.name!r} ({record.source}); rename or uninstall one ({how})",
            info.name, (owner.name,),
        ))

    def _bind(self) -> None:
        # Every method is bound again: a plugin registered since the last binding must be left out.
        for name, m in list(self.methods.items()):
            self.methods[name] = Method(m.info, m.plugin, self.pm)

    # -- lookup ---------------------------------------------------------------------------
    def method(self, name: str) -> Method:
        """The method ``name``; errors name a plugin that failed to load or a clash behind it."""
        if name in self.methods:
            return self.methods[name]
        if name in self.unusable:
            raise PluginError(str(self.unusable[name]))
        if name in self.broken:
            raise PluginError(f"{self.broken[name]} (so method {name!r} is unavailable)")
        known = ", ".join(sorted(self.methods)) or "none"
        hint = "".join(f"; {p}" for p in self.broken.values())
        raise UnknownMethodError(f"unknown method {name!r} (known: {known}){hint}")

    def match_methods(self, patterns: Iterable[str]) -> list[str]:
        """Method names matching shell-style patterns (``erm``, ``sk_*``), in order, no repeats.
        Names that cannot run (a clash) match too, so that using them fails with the reason."""
        out: list[str] = []
        for pat in patterns:
            hits = [m for m in [*self.methods, *self.unusable] if fnmatch.fnmatchcase(m, pat)]
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


def _exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_one_line(str(exc))}"


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
def _dist_version(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else "unknown distribution"


def plugin_distributions(registry: Registry) -> dict[str, str]:
    """``{plugin name: "distribution version"}`` for every plugin the registry loaded (``"module
    <path>"`` for one loaded by ``--plugin``): what a result's provenance records."""
    return {name: registry.distributions.get(name, rec.source) for name, rec in registry.plugins.items()}


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
                registry.fail(ep.name, f"failed to load: {_dist_version(ep)} names module {ep.value}, whose "
                                       f"import raised {_exception(exc)}")
                continue
            if registry.add(plugin, ep.name, _distribution_of(ep)):
                registry.distributions[ep.name] = _dist_version(ep)
    for path in modules:
        try:
            plugin = importlib.import_module(path)
        except Exception as exc:
            raise PluginError(f"cannot import plugin module {path!r}: {_exception(exc)}") from None
        if registry.add(plugin, path, f"module {path}"):
            registry.distributions[path] = f"module {path}"
    registry._bind()
    registry._install_metrics()
    return registry
