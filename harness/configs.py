"""Method configurations as the core stores them: what a search space may return, and the defaults
a method declares for a task.

Two kinds of names meet here. A search space asks Optuna for *parameters*
(``trial.suggest_categorical("shrinkage_mode", ...)``) and returns a *configuration*, a flat dict of
config keys (``{"shrinkage": "auto"}``). The two often coincide but need not. ``MethodInfo.defaults``
holds parameters: they are enqueued as the first trial's params, and the search space turns them into
the configuration like any other trial's.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from harness.info import MethodInfo
    from harness.task import Task

_PLAIN = (str, int, float, bool, type(None))


def check_serialisable(config: dict[str, Any], method: str) -> dict[str, Any]:
    """The configuration exactly as the study storage will hand it back (a JSON round trip).

    Raises :class:`ConfigError` naming the first key whose value JSON cannot hold, e.g.
    ``np.float32(0.19)`` or a ``torch.device`` — values that would fail every trial of a run.
    """
    for key, value in config.items():
        bad = _unstorable(value)
        if bad is not None:
            raise ConfigError(
                f"{method}: config key {key!r} holds {bad}, which the study storage cannot hold as JSON; "
                "return plain Python values from harness_search_space (float(x), int(x), str(x))"
            )
    try:
        return json.loads(json.dumps(config))
    except (TypeError, ValueError) as exc:  # e.g. a key that is not a string
        raise ConfigError(f"{method}: configuration is not JSON-serialisable ({exc})") from None


def _unstorable(value: Any) -> str | None:
    """A description of what in ``value`` JSON cannot hold, or None."""
    if isinstance(value, _PLAIN):
        return None
    if isinstance(value, (list, tuple)):
        for item in value:
            bad = _unstorable(item)
            if bad is not None:
                return f"a {type(value).__name__} holding {bad}"
        return None
    if isinstance(value, dict):
        for k, item in value.items():
            bad = _unstorable(item) if isinstance(k, str) else f"the non-string key {k!r}"
            if bad is not None:
                return f"a dict whose key {k!r} holds {bad}" if isinstance(k, str) else f"a dict with {bad}"
        return None
    kind = type(value)
    module = kind.__module__.split(".")[0]
    name = kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
    return f"{name} ({value})"


def defaults_for(info: MethodInfo, task: Task) -> dict[str, Any]:
    """The Optuna parameters a method declares as its default for ``task`` (``{}`` when none):
    ``info.defaults`` itself, or what it returns when it is a callable of the task."""
    defaults = info.defaults(task) if callable(info.defaults) else info.defaults
    if defaults is None:
        return {}
    if not isinstance(defaults, dict):
        raise PluginError(f"{info.name}: MethodInfo.defaults for a {task.kind} task is "
                          f"{type(defaults).__name__}, not a dict of Optuna parameters")
    return dict(defaults)


__all__ = ["check_serialisable", "defaults_for"]
