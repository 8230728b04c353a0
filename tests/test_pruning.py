"""Pruner defaults are the documented ones; the pruning benchmark compares settings without bending its measure."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from harness import samplers
from harness.errors import ConfigError
from harness.samplers import PRUNER_SETTINGS, PRUNERS, make_pruner

REPO = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("pruning_benchmark", REPO / "benchmarks" / "pruning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _plain(pruner: optuna.pruners.BasePruner) -> dict:
    """A pruner's settings as Optuna stores them (private fields, without the leading underscore)."""
    return {k.lstrip("_"): v for k, v in vars(pruner).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _described(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


@pytest.mark.parametrize("name", [n for n in PRUNERS if n != "none"])
def test_every_pruner_builds_with_its_declared_settings(name):
    built = _plain(make_pruner(name, 20))
    assert {k: built[k] for k in PRUNER_SETTINGS[name]} == PRUNER_SETTINGS[name]


@pytest.mark.parametrize("name", [n for n in PRUNERS if n != "none"])
def test_the_default_settings_are_the_documented_ones(name):
    line = f"`{name}`: `{_described(PRUNER_SETTINGS[name])}`"
    assert line in samplers.__doc__
    assert line in (REPO / "README.md").read_text()


def test_hyperbands_largest_resource_is_the_rows_epochs():
    assert make_pruner("hyperband", 20)._max_resource == 20


def test_settings_can_be_overridden_by_name_and_unknown_ones_are_refused():
    assert make_pruner("median", 10, n_warmup_steps=4)._n_warmup_steps == 4
    assert make_pruner("median", 10)._n_warmup_steps == PRUNER_SETTINGS["median"]["n_warmup_steps"]
    with pytest.raises(ConfigError, match="no setting reduction_factor"):
        make_pruner("median", 10, reduction_factor=3)


def test_benchmark_pruner_specs_parse_and_bad_ones_are_refused():
    parse = _benchmark().parse_pruner
    assert parse("median") == ("median", {})
    assert parse("hyperband:reduction_factor=4,min_resource=2") == ("hyperband", {"reduction_factor": 4, "min_resource": 2})
    for bad in ("median:n_warmup_steps", "median:n_warmup_steps=two", "median:eta=3", "asha"):
        with pytest.raises(ConfigError):
            parse(bad)


def _sweep(out: Path, *extra: str) -> pd.DataFrame:
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "pruning.py"), "--space", "wide", "--trials", "2",
                    "--epochs", "3", "--seeds", "0", "--pruners", "median:n_startup_trials=1,n_warmup_steps=0",
                    "successive_halving", "--out", str(out), *extra], check=True, capture_output=True, cwd=REPO)
    return pd.read_csv(out / "pruning.csv")


def test_stopping_at_the_target_and_reusing_runs_keep_the_measure(tmp_path):
    full = _sweep(tmp_path / "full")
    short = _sweep(tmp_path / "short", "--stop-at-target")
    columns = ["seed", "pruner", "unpruned_best_val", "epochs_to_unpruned_best", "share_of_unpruned_epochs"]
    pd.testing.assert_frame_equal(full[columns], short[columns])
    assert (short.epochs_total <= full.epochs_total).all()
    # Runs stopped at the target stand only for runs stopped there: here the unpruned run is reused, the
    # pruned ones train again, and every number is the full run's.
    again = _sweep(tmp_path / "again", "--reuse", str(tmp_path / "short" / "pruning_trials.csv"))
    pd.testing.assert_frame_equal(again, full)
    assert json.loads((tmp_path / "again" / "provenance.json").read_text())["reused"][0]["runs"] == ["seed 0 none"]
    # The tables again from the stored trials, training nothing, are the same tables.
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "pruning.py"), "--recompute", "--out",
                    str(tmp_path / "short")], check=True, capture_output=True, cwd=REPO)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "short" / "pruning.csv"), short)


def test_the_very_wide_space_draws_its_optimisers_and_ranges_and_leaves_the_rest_alone():
    from harness.data import load_task
    from harness.plugins import load_plugins

    bench = _benchmark()
    space = bench.SPACES["verywide"]
    registry = load_plugins()
    method, task = registry.method("erm"), load_task(registry, "digits").without_test()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = [bench.WideSpace(method, space).search_space(study.ask(), task) for _ in range(40)]
    assert {c["optimizer"] for c in configs} == set(space.optimizers)
    for key in ("lr", "weight_decay"):
        low, high = getattr(space, key)
        assert all(low <= c[key] <= high for c in configs)
        assert max(c[key] for c in configs) > 10 * min(c[key] for c in configs)  # log-uniform over decades
    own = method.search_space(optuna.create_study().ask(), task)
    assert {k for c in configs for k in c} >= set(own) - {"hidden", "width"}
