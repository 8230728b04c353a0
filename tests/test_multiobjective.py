"""Multi-objective tuning: directions by name, no pruning, the Pareto front as CSV, Markdown and PNG,
and the Pareto trial with the best validation accuracy re-trained over seeds."""
from __future__ import annotations

import optuna
import pandas as pd
import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.multiobjective import directions, objective_values, parse_objectives
from harness.plugins import load_plugins
from harness.runner import run_suite
from harness.records import best_trial
from harness.storage import make_storage
from harness.suite import from_mapping


def test_objectives_by_name():
    assert parse_objectives("accuracy, ece,throughput") == ("accuracy", "ece", "throughput")
    assert directions(("accuracy", "ece", "throughput")) == ["maximize", "minimize", "maximize"]
    assert objective_values({"accuracy": 0.9, "ece": 0.1, "infer_samples_per_s": 5.0}, ("ece", "throughput")) == [0.1, 5.0]
    with pytest.raises(ConfigError, match="unknown objective"):
        parse_objectives("accuracy,speed")
    with pytest.raises(ConfigError, match="repeat"):
        parse_objectives("ece,ece")


def test_pruning_is_refused_with_several_objectives_and_off_by_default():
    base = {"name": "m", "datasets": ["digits"], "methods": ["centroid"], "objectives": ["accuracy", "ece"]}
    assert from_mapping(base).pruner == "none"
    with pytest.raises(ConfigError, match="multi-objective studies cannot prune"):
        from_mapping({**base, "pruner": "median"})
    with pytest.raises(ConfigError, match="cmaes"):
        from_mapping({**base, "sampler": "cmaes", "pruner": "none"})


def test_the_cli_says_so_in_one_line(tmp_path, capsys):
    assert main(["run", "erm", "--objectives", "accuracy,ece", "--pruner", "hyperband", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "harness: error: multi-objective studies cannot prune: use pruner none, not 'hyperband'\n"


def test_the_retrained_trial_is_the_pareto_trial_with_the_best_accuracy():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for acc, ece in ((0.90, 0.01), (0.95, 0.05), (0.80, 0.20), (0.95, 0.04)):
        trial = study.ask()
        trial.set_user_attr("val", {"accuracy": acc, "ece": ece, "nll": 0.3})
        study.tell(trial, [acc, ece])
    assert sorted(t.number for t in study.best_trials) == [0, 3]
    assert best_trial(study).number == 3


def test_a_multi_objective_run_writes_the_pareto_front(tmp_path):
    suite = from_mapping({"name": "mo", "datasets": ["digits"], "methods": ["centroid"], "trials": 8, "seeds": 2,
                          "epochs": 1, "objectives": "accuracy,nll,throughput", "sampler": "nsga2", "device": "cpu"})
    result = run_suite(suite, load_plugins(modules=["fixture_plugins.centroid"]), tmp_path, progress=False)
    assert [o.status for o in result.outcomes] == ["ok"]
    front = pd.read_csv(tmp_path / "pareto_digits_centroid.csv")
    assert list(front.columns) == ["trial", "accuracy", "nll", "throughput", "retrained", "config"]
    study = optuna.load_study(study_name="mo/digits/centroid", storage=make_storage(None, tmp_path))
    assert sorted(front.trial) == sorted(t.number for t in study.best_trials)
    (chosen,) = front[front.retrained].trial
    assert chosen == study.user_attrs["best_trial"] == best_trial(study).number
    assert front.loc[front.retrained, "accuracy"].item() == front.accuracy.max()
    assert (tmp_path / "pareto_digits_centroid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "retrained" in (tmp_path / "pareto_digits_centroid.md").read_text()
    per_seed = pd.read_csv(tmp_path / "per_seed.csv")
    assert sorted(per_seed.seed) == [0, 1] and (per_seed.accuracy > 0.8).all()
    # The front is rebuilt from the storage alone.
    (tmp_path / "pareto_digits_centroid.csv").unlink()
    assert main(["report", "--out", str(tmp_path)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "pareto_digits_centroid.csv"), front)
