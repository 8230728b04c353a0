"""Budgets are decided once: command-line flag > row > suite file > method default."""
from __future__ import annotations

import optuna
import pytest
from rich.console import Console

from harness.cli import _suite_from_args, build_parser
from harness.phases import default_config
from harness.plugins import load_plugins
from harness.records import Budget, harness_studies
from harness.runner import run_suite
from harness.storage import make_storage
from harness.suite import Overrides, from_mapping, suite_from_spec, suite_spec

SUITE = {"name": "b", "datasets": ["digits"], "trials": 2, "seeds": 2, "epochs": 3, "params": {"lr": 0.1, "wd": 0.0},
         "methods": ["centroid", {"method": "centroid", "name": "own", "trials": 4, "seeds": 3, "epochs": 7,
                                  "params": {"lr": 0.5}}]}


@pytest.fixture(scope="module")
def reg():
    return load_plugins(modules=["fixture_plugins.centroid"])


def _budgets(suite):
    return {row.name: suite.budget(row) for row in suite.rows}


@pytest.mark.parametrize("key", ["trials", "seeds", "epochs"])
def test_a_row_beats_the_suite_file(key):
    budgets = _budgets(from_mapping(SUITE))
    assert getattr(budgets["centroid"], key) == SUITE[key]
    assert getattr(budgets["own"], key) == SUITE["methods"][1][key]


@pytest.mark.parametrize("key", ["trials", "seeds", "epochs"])
def test_a_flag_beats_the_row_and_the_suite_file(key):
    suite = from_mapping(SUITE).replace(overrides=Overrides(**{key: 11}))
    assert {getattr(b, key) for b in _budgets(suite).values()} == {11}


def test_pinned_parameters_flag_over_row_over_suite_file():
    suite = from_mapping(SUITE)
    assert _budgets(suite)["centroid"].params == {"lr": 0.1, "wd": 0.0}
    assert _budgets(suite)["own"].params == {"lr": 0.5, "wd": 0.0}
    flagged = suite.replace(overrides=Overrides(params={"lr": 0.9}))
    assert {b.params["lr"] for b in _budgets(flagged).values()} == {0.9}


def test_pinned_parameters_beat_the_method_default(reg, digits):
    method = reg.method("centroid")
    free = default_config(method, digits.without_test(), {})
    assert free["temperature"] == method.info.defaults["temperature"]
    assert default_config(method, digits.without_test(), {"temperature": 0.25})["temperature"] == 0.25


def test_command_line_flags_beat_the_suite_file(tmp_path, reg):
    path = tmp_path / "s.yaml"
    path.write_text("name: b\ndatasets: [digits]\nepochs: 3\nmethods:\n"
                    "  - {method: centroid, epochs: 7, trials: 4, params: {temperature: 0.5}}\n")
    args = build_parser().parse_args(["run", "--suite", str(path), "--epochs", "5", "--trials", "1",
                                      "--param", "temperature=0.25"])
    (budget,) = _budgets(_suite_from_args(args, reg)).values()
    assert (budget.epochs, budget.trials, budget.params) == (5, 1, {"temperature": 0.25})


def test_the_overrides_travel_to_a_worker():
    suite = from_mapping(SUITE).replace(overrides=Overrides(epochs=5, params={"lr": 0.9}))
    assert _budgets(suite_from_spec(suite_spec(suite))) == _budgets(suite)


def test_the_budget_a_row_had_is_stored_and_in_the_provenance(tmp_path, reg):
    suite = from_mapping({"name": "b", "datasets": ["digits"], "trials": 1, "seeds": 1, "epochs": 1, "device": "cpu",
                          "sampler": "random", "pruner": "none",
                          "methods": [{"method": "centroid", "seeds": 2, "params": {"temperature": 0.5}}]})
    suite = suite.replace(overrides=Overrides(trials=2))
    out = tmp_path / "out"
    run_suite(suite, reg, out, console=Console(quiet=True), progress=False)
    ((summary, meta),) = harness_studies(make_storage(None, out), "b")
    assert meta.budget == Budget(trials=2, seeds=2, epochs=1, params={"temperature": 0.5})
    study = optuna.load_study(study_name=summary.study_name, storage=make_storage(None, out))
    assert len(study.trials) == 2
    import json

    prov = json.loads((out / "provenance.json").read_text())
    assert prov["budgets"]["digits · centroid"]["trials"] == 2
