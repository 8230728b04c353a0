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
    return f"{name} ({str(value)})"


def defaults_for(info: MethodInfo, task: Task) -> dict[str, Any]:
    """The Optuna parameters a method declares as its default for ``task`` (``{}`` when none):
    ``info.defaults`` itself, or what it returns when it is a callable of the task."""
    defaults = info.defaults(task) if callable(info.defaults) else info.defaults
    if defaults is None:
        return {}
    if not isinstance(defaults, dict):
        raise PluginError(f"{info.name}: MethodInfo.defaults for {_a(task.kind)} task is "
                          f"{type(defaults).__name__}, not a dict of Optuna parameters")
    return dict(defaults)


class DefaultsTrial:
    """A fixed trial for a method's defaults: ``suggest_*`` returns the default (or the value the user
    pinned), and a default missing or outside the distribution is an error naming the parameter and
    the task kind (Optuna's ``FixedTrial`` only warns about a float outside its range).
    ``used`` holds the parameters the search space asked for."""

    def __init__(self, defaults: dict[str, Any], method: str, kind: str, pinned: dict[str, Any] | None = None):
        import optuna

        self._defaults, self._pinned = dict(defaults), dict(pinned or {})
        self._fixed = optuna.trial.FixedTrial({**self._defaults, **self._pinned})
        self._where = f"{method}: MethodInfo.defaults for {_a(kind)} task"
        self.used: set[str] = set()

    def __getattr__(self, name: str):
        attr = getattr(self._fixed, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(param: str, *args, **kwargs):
            self.used.add(param)
            if param in self._pinned:
                return self._pinned[param]
            if param not in self._defaults:
                raise ConfigError(f"{self._where} has no value for parameter {param!r}")
            try:
                value = attr(param, *args, **kwargs)
            except ValueError:
                value = None  # outside a categorical's choices: described below
            dist = self._fixed.distributions.get(param)
            if dist is None or _outside(dist, self._defaults[param]):
                raise ConfigError(f"{self._where}: parameter {param!r} = {self._defaults[param]!r} is outside "
                                  f"the search space ({_describe(dist, args, kwargs)})")
            return value

        return suggest


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _outside(dist: Any, value: Any) -> bool:
    if hasattr(dist, "choices"):
        return value not in dist.choices
    try:
        return not dist.low <= value <= dist.high
    except TypeError:
        return True


def _describe(dist: Any, args: tuple, kwargs: dict) -> str:
    if dist is None:  # the categorical's distribution is never recorded when its value is refused
        choices = kwargs.get("choices", args[0] if args else ())
        return f"choices {tuple(choices)!r}"
    if hasattr(dist, "choices"):
        return f"choices {tuple(dist.choices)!r}"
    return f"[{dist.low:g}, {dist.high:g}]" + (" log" if getattr(dist, "log", False) else "")


def default_config(method: Any, task: Task, pinned: dict[str, Any] | None = None) -> dict[str, Any]:
    """The configuration a method's defaults give on ``task`` (values the user pinned win): what the
    core uses when tuning is off. Raises :class:`ConfigError` naming a default that does not fit."""
    pinned = dict(pinned or {})
    trial = DefaultsTrial(defaults_for(method.info, task), method.name, task.kind, pinned)
    config = method.search_space(trial, task)
    return {**config, **{k: v for k, v in pinned.items() if k not in config}}


# Configuration keys the toolkit's training loop reads (``TrainConfig``) whether or not a method's
# space suggests them, and the values each accepts: (type, lowest allowed, lowest is allowed itself).
_TRAIN_KEYS: dict[str, tuple[type, float, bool]] = {
    "lr": (float, 0.0, False), "weight_decay": (float, 0.0, True), "momentum": (float, 0.0, True),
    "batch_size": (int, 1, True), "epochs": (int, 1, True), "warmup_epochs": (float, 0.0, True),
    "patience": (int, 1, True), "grad_clip": (float, 0.0, True),
}


class RecordingTrial:
    """A real trial that records each parameter's distribution and checks the values the user pinned
    against it: a value outside the space, or of the wrong type, is a one-line error naming the
    method, the parameter and the allowed range (before any trial runs, not after the budget)."""

    def __init__(self, trial: Any, method: str, pinned: dict[str, Any]):
        self._trial, self._method, self._pinned = trial, method, dict(pinned)
        self.distributions: dict[str, Any] = {}

    def __getattr__(self, name: str):
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(param: str, *args, **kwargs):
            value = attr(param, *args, **kwargs)
            dist = self._trial.distributions.get(param)
            self.distributions[param] = dist
            if param not in self._pinned:
                return value
            pinned = self._pinned[param]
            if dist is not None and not _fits(dist, pinned, param):
                raise ConfigError(f"{self._method}: pinned {param}={pinned!r} is not in its search space "
                                  f"({_describe(dist, (), {})}" + (", integers" if _is_int(dist) else "") + ")")
            return pinned

        return suggest


def _is_int(dist: Any) -> bool:
    import optuna.distributions as od

    return isinstance(dist, od.IntDistribution)


def _fits(dist: Any, value: Any, param: str = "") -> bool:
    """Whether a pinned ``value`` is one a method can take for ``param``.

    A range bounds what is valid (``lr=-5``, ``n_neighbors`` beyond the training set), so a pinned
    number must lie in it, except zero in a log range: the value that turns a scale off (no weight
    decay). Choices often list only what tuning *searches*: a row may pin ``batch_size: 16`` beside
    ``(32, 64, 128)``, ``model: lenet`` beside ``(cnn, mlp)`` or an optimiser the space leaves out.
    So a number of the choices' kind fits (not negative where they are not), a name fits where the
    toolkit knows it (a registered network, ``timm:<arch>``, an optimiser), any other string must be
    one of the choices (``optimizer=banana`` is refused before anything runs), and ``None`` (the
    method's own default) always fits."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not hasattr(dist, "choices"):
        if not number or (_is_int(dist) and not isinstance(value, int)):
            return False
        return not _outside(dist, value) or (value == 0 and getattr(dist, "log", False))
    if any(value == c and type(value) is type(c) or (value == c and isinstance(c, float) and number)
           for c in dist.choices):
        return True
    if value is None:
        return True
    if isinstance(value, str):
        return _toolkit_name(param, value)
    searched = [c for c in dist.choices if c is not None]
    if not searched:  # the space leaves it to the method's default
        return True
    numbers = [c for c in searched if isinstance(c, (int, float)) and not isinstance(c, bool)]
    if not number or len(numbers) != len(searched):
        return False
    if all(isinstance(c, int) for c in numbers) and not isinstance(value, int):
        return False
    return value >= 0 or min(numbers) < 0  # zero turns a count or scale off (mc_samples: 0)


def _toolkit_name(param: str, value: str) -> bool:
    """A network or optimiser name the shared toolkit can build, outside a space's searched choices."""
    if param == "model":
        from harness.toolkit.models import list_models

        return value.startswith("timm:") or value in list_models()
    if param == "optimizer":
        from harness.toolkit.spaces import OPTIMIZERS

        return value in OPTIMIZERS
    return False


def check_pinned(method: Any, task: Task, pinned: dict[str, Any], samples: int = 8) -> set[str]:
    """Check values pinned for ``method`` against its search space on ``task`` (sampled ``samples``
    times with a :class:`RecordingTrial`); return the pinned keys the method knows (an Optuna
    parameter, a key of its configuration, or a training-loop key when it trains with the toolkit).
    A CASH method's spaces are its members': nothing is checked for it."""
    import optuna

    if not pinned or hasattr(method, "default_trials"):
        return set(pinned)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    known: set[str] = set()
    for _ in range(samples):
        trial = study.ask()
        recorder = RecordingTrial(trial, method.name, pinned)
        try:
            config = method.search_space(recorder, task)
        except ConfigError:
            raise
        except Exception:  # the plugin's own failure shows, named, in the first trial
            return set(pinned)
        known |= set(recorder.distributions) | set(config or {})
        study.tell(trial, 0.0)
    if known & {"lr", "optimizer", "batch_size"}:
        known |= set(_TRAIN_KEYS) | {"optimizer", "schedule", "restore_best"}
    if "model" in known and isinstance(pinned.get("model"), str):
        from harness.toolkit.models import model_arguments

        known |= model_arguments(pinned["model"])  # a pinned network's own arguments (lenet's hidden)
    for key, value in pinned.items():
        if key in _TRAIN_KEYS and key in known:
            kind, low, inclusive = _TRAIN_KEYS[key]
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if (not number or (kind is int and not isinstance(value, int))
                    or value < low or (value == low and not inclusive)):
                what = "an integer" if kind is int else "a number"
                bound = f"≥ {low:g}" if inclusive else f"> {low:g}"
                raise ConfigError(f"{method.name}: pinned {key}={value!r} must be {what} {bound}")
    return known & set(pinned)


__all__ = ["check_serialisable", "check_pinned", "defaults_for", "default_config", "DefaultsTrial", "RecordingTrial"]
