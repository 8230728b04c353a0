"""Optuna samplers and pruners by name: each name declared once, here.

The command line's help and checks, the suite validation and the study factory all read
:data:`SAMPLERS` and :data:`PRUNERS`. A sampler factory takes the sampler seed; a pruner factory takes
the row's training epochs (its resource) and the pruner's settings, :data:`PRUNER_SETTINGS`:

- `median`: `n_startup_trials=1, n_warmup_steps=0, interval_steps=1, n_min_trials=1`
- `hyperband`: `min_resource=1, reduction_factor=3, bootstrap_count=0`
- `successive_halving`: `min_resource=1, reduction_factor=3, min_early_stopping_rate=0, bootstrap_count=0`

Steps are epochs counted from 0 (``n_warmup_steps=0``: judged from the first epoch on, once one trial
has completed); Hyperband's ``max_resource`` is the row's epochs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from harness.errors import ConfigError

if TYPE_CHECKING:
    import optuna

# Optuna is imported when a factory runs, so that the command line's help stays fast.


def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)


def _random(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _cmaes(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    try:
        import cmaes  # noqa: F401
    except ImportError:
        raise ConfigError("the cmaes sampler needs the `cmaes` package: pip install cmaes") from None
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def _gp(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=5, warn_independent_sampling=False)


def _nsga2(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed)


# The settings each pruner name builds with, declared once: the command line, suites, the pruning
# benchmark and its tables read them here. Chosen where pruning has something to cut, a search space in
# which many configurations are bad from their first epoch (README "Speed"; results/pruning/verywide_*):
# a median pruner that waits for one complete trial and judges from the first epoch reached the unpruned
# best within half its epochs on 5 of 5 selection seeds and 4 of 5 held-out ones; waiting for three
# trials and judging from the second epoch (the earlier defaults) spent whole 30-epoch trials on bad
# configurations (2 of 5 selection seeds). Hyperband: reduction factor 3 beat 4, yet held on 2 of 5 held-out seeds.
# Hyperband's ``max_resource`` is the row's epochs.
PRUNER_SETTINGS: dict[str, dict[str, int | float]] = {
    "median": {"n_startup_trials": 1, "n_warmup_steps": 0, "interval_steps": 1, "n_min_trials": 1},
    "hyperband": {"min_resource": 1, "reduction_factor": 3, "bootstrap_count": 0},
    "successive_halving": {"min_resource": 1, "reduction_factor": 3, "min_early_stopping_rate": 0,
                           "bootstrap_count": 0},
    "none": {},
}


def _median(epochs: int, **settings) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.MedianPruner(**settings)


def _hyperband(epochs: int, **settings) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.HyperbandPruner(max_resource=max(2, epochs), **settings)


def _successive_halving(epochs: int, **settings) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(**settings)


def _nop(epochs: int, **settings) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.NopPruner()


SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe, "random": _random, "cmaes": _cmaes, "gp": _gp, "nsga2": _nsga2,
}
PRUNERS: dict[str, Callable[..., optuna.pruners.BasePruner]] = {
    "median": _median, "hyperband": _hyperband, "successive_halving": _successive_halving, "none": _nop,
}

# Samplers that optimise one objective only.
SINGLE_OBJECTIVE = ("cmaes",)


def check_sampler(name: str) -> str:
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r} (known: {', '.join(SAMPLERS)})")
    return name


def check_pruner(name: str) -> str:
    if name not in PRUNERS:
        raise ConfigError(f"unknown pruner {name!r} (known: {', '.join(PRUNERS)})")
    return name


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    return SAMPLERS[check_sampler(name)](seed)


def make_pruner(name: str, epochs: int, **settings: int | float) -> optuna.pruners.BasePruner:
    """The pruner ``name`` for trials of ``epochs`` epochs, with :data:`PRUNER_SETTINGS` unless
    ``settings`` overrides some of them (the pruning benchmark compares settings this way)."""
    known = PRUNER_SETTINGS[check_pruner(name)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigError(f"pruner {name!r} has no setting {', '.join(unknown)} (its settings: {', '.join(known) or 'none'})")
    return PRUNERS[name](epochs, **{**known, **settings})
