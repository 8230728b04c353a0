"""Optuna samplers and pruners by name: each name declared once, here.

The command line's help and checks, the suite validation and the study factory all read
:data:`SAMPLERS` and :data:`PRUNERS`. A sampler factory takes the sampler seed; a pruner factory takes
the row's training epochs (its resource).
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


def _median(epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    # Judged from the second epoch on, after three whole trials: in a wide space the hopeless
    # configurations (a learning rate that does not move, or one that diverges) show after one epoch,
    # and every further epoch spent on them is lost (results/pruning/wide/ measures what it saves).
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1, interval_steps=1)


def _hyperband(epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(2, epochs), reduction_factor=3)


def _nop(epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.NopPruner()


SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe, "random": _random, "cmaes": _cmaes, "gp": _gp, "nsga2": _nsga2,
}
PRUNERS: dict[str, Callable[[int], optuna.pruners.BasePruner]] = {
    "median": _median, "hyperband": _hyperband, "none": _nop,
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


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    return PRUNERS[check_pruner(name)](epochs)
