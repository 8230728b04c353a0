"""CASH: the method as a searched choice, each method's space under its own prefix, one study."""
from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from harness.cash import CashMethod, per_method_best
from harness.errors import ConfigError
from harness.plugins import load_plugins
from harness.runner import run_suite
from harness.phases import PhaseSettings, TuneSettings, tune
from harness.records import best_trial
from harness.samplers import make_sampler
from harness.suite import from_mapping


@pytest.fixture(scope="module")
def reg():
    return load_plugins(modules=["fixture_plugins.centroid", "fixture_plugins.broken"])


def _tune(reg, names, digits, trials):
    study = optuna.create_study(direction="maximize", sampler=make_sampler("random", 0))
    tune(study, CashMethod(reg, names), digits.without_test(), TuneSettings(trials=trials, phase=PhaseSettings(epochs=1, device=torch.device("cpu"))))
    return study


def test_each_method_keeps_its_own_parameters(reg, digits):
    study = _tune(reg, ["centroid", "centroid_b", "logreg"], digits, 12)
    names = set().union(*(t.params for t in study.trials))
    # Both centroid methods call their parameter `temperature`: prefixed, they stay two distributions.
    assert {"method", "centroid:temperature", "centroid_b:temperature", "logreg:C"} <= names
    for t in study.trials:
        chosen = t.params["method"]
        assert all(k == "method" or k.startswith(chosen + ":") for k in t.params)
        assert t.user_attrs["config"]["method"] == chosen
    assert len({t.params["method"] for t in study.trials}) == 3


def test_a_failing_method_is_recorded_and_the_search_goes_on(reg, digits):
    study = _tune(reg, ["raises", "centroid"], digits, 8)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all(t.params["method"] == "raises" for t in failed)
    assert all("deliberate failure" in t.user_attrs["fail_reason"] for t in failed)
    assert best_trial(study).params["method"] == "centroid"
    table = per_method_best(study).set_index("method")
    assert table.loc["raises", "trials_failed"] == len(failed) and pd.isna(table.loc["raises", "best_val_accuracy"])
    assert table.loc["centroid", "best_val_accuracy"] > 0.8


def test_the_table_reports_the_winner_and_the_best_of_each_method(reg, tmp_path):
    suite = from_mapping({"name": "c", "datasets": ["digits"], "methods": ["centroid"], "cash": ["centroid", "logreg"],
                          "trials": 6, "seeds": 2, "epochs": 1, "sampler": "random", "device": "cpu"})
    result = run_suite(suite, reg, tmp_path, progress=False)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.method) == ["centroid", "cash"] and (summary.status == "ok").all()
    per_method = pd.read_csv(tmp_path / "cash_digits.csv")
    assert set(per_method.method) == {"centroid", "logreg"}
    study = optuna.load_study(study_name="c/digits/cash", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))))
    # Every method is tried first at its defaults.
    assert study.trials[0].params == {"method": "centroid", "centroid:temperature": 1.0}
    assert study.trials[1].params["method"] == "logreg"
    for _, row in per_method.iterrows():
        mine = [t.user_attrs["val"]["accuracy"] for t in study.trials
                if t.state == TrialState.COMPLETE and t.params["method"] == row.method]
        assert row.best_val_accuracy == pytest.approx(max(mine))
    (winner,) = per_method[per_method.winner].method
    assert json.loads(pd.read_csv(tmp_path / "per_seed.csv").query("method == 'cash'").config.iloc[0])["method"] == winner
    assert per_method.best_val_accuracy.iloc[0] == per_method.best_val_accuracy.max()  # sorted best first
    assert "cash_digits_md" in result.paths and "# CASH" in (tmp_path / "cash_digits.md").read_text()


@pytest.mark.parametrize("data, message", [
    ({"cash": ["centroid"]}, "two or more different methods"),
    ({"cash": ["centroid", "centroid"]}, "two or more different methods"),
    ({"cash": "centroid"}, "must be a list"),
    ({"cash": ["centroid", "logreg"], "methods": [{"method": "centroid", "name": "cash"}]}, "clashes"),
])
def test_bad_cash_settings_are_one_line_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping({"name": "x", "datasets": ["digits"], "methods": [], **data})


def test_cash_alone_needs_no_methods_list():
    suite = from_mapping({"name": "x", "datasets": ["digits"], "cash": ["centroid", "logreg"]})
    assert [r.name for r in suite.all_rows()] == ["cash"]
