"""Tuning: samplers and pruners by name, pinned values, failures recorded with reasons, no test leak."""
import optuna
import pytest
import torch
from optuna.trial import TrialState

from harness.errors import ConfigError
from harness.plugins import load_plugins
from harness.phases import PhaseSettings, PinnedTrial, TuneSettings, tune
from harness.records import best_trial
from harness.samplers import make_pruner, make_sampler
from harness.storage import budget_used, make_storage, reap_dead_trials, redact


@pytest.fixture(scope="module")
def reg():
    return load_plugins(modules=["fixture_plugins.centroid", "fixture_plugins.broken"])


def _study(tmp_path, name="s", sampler="tpe", seed=0):
    storage = make_storage(None, tmp_path)
    return optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True,
                               sampler=make_sampler(sampler, seed), pruner=make_pruner("median", 5))


def _settings(trials, **kw):
    return TuneSettings(trials=trials, phase=PhaseSettings(epochs=2, device=torch.device("cpu")), **kw)


def test_same_sampler_seed_proposes_the_same_configurations(reg, digits, tmp_path):
    method = reg.method("centroid")
    params = []
    for run in range(2):
        study = _study(tmp_path / str(run))
        tune(study, method, digits.without_test(), _settings(7))
        params.append([t.params for t in study.trials])
    assert params[0] == params[1] and len(params[0]) == 7


def test_tuning_never_sees_the_test_split(reg, digits, tmp_path):
    with pytest.raises(ValueError, match="never see the test split"):
        tune(_study(tmp_path), reg.method("centroid"), digits, _settings(1))
    # The fixture plugin itself asserts task.test is None in fit and split.y is None in evaluate.
    study = _study(tmp_path, "ok")
    tune(study, reg.method("centroid"), digits.without_test(), _settings(2))
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert best_trial(study).value > 0.8


@pytest.mark.parametrize("method, reason", [
    ("raises", "RuntimeError: deliberate failure in fit"),
    ("bad_shape", "expected 360×10"),
    ("not_normalised", "do not sum to one"),
    ("nan_loss", "loss became nan in epoch 1"),
])
def test_failing_trials_are_recorded_with_their_reason(reg, digits, tmp_path, method, reason):
    study = _study(tmp_path)
    tune(study, reg.method(method), digits.without_test(), _settings(2))
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    assert all(reason in t.user_attrs["fail_reason"] for t in study.trials)
    assert all(t.user_attrs["fail_kind"] == "method" for t in study.trials)
    assert best_trial(study) is None


def test_pinned_values_bypass_the_sampler(reg, digits, tmp_path):
    study = _study(tmp_path)
    tune(study, reg.method("centroid"), digits.without_test(), _settings(3, pinned={"temperature": 2.5}))
    assert [t.user_attrs["config"]["temperature"] for t in study.trials] == [2.5] * 3


def test_resume_counts_finished_trials(reg, digits, tmp_path):
    study = _study(tmp_path)
    tune(study, reg.method("centroid"), digits.without_test(), _settings(3))
    tune(_study(tmp_path), reg.method("centroid"), digits.without_test(), _settings(5))
    assert budget_used(_study(tmp_path)) == 5 and len(_study(tmp_path).trials) == 5


def test_trial_of_a_dead_worker_is_failed_and_retried(tmp_path):
    study = _study(tmp_path)
    trial = study.ask({"temperature": optuna.distributions.FloatDistribution(0.1, 10, log=True)})
    trial.set_user_attr("worker", f"{__import__('socket').gethostname()}:999999999")
    assert reap_dead_trials(study) == 1
    frozen = study.trials[0]
    assert frozen.state == TrialState.FAIL and frozen.user_attrs["fail_kind"] == "infrastructure"
    assert study.trials[1].state == TrialState.WAITING  # the same configuration, queued again
    assert study.trials[1].system_attrs["fixed_params"] == frozen.params
    assert budget_used(study) == 0


def test_live_trial_of_another_process_is_left_alone(tmp_path):
    import os

    study = _study(tmp_path)
    trial = study.ask()
    trial.set_user_attr("worker", f"{__import__('socket').gethostname()}:{os.getppid()}")
    assert reap_dead_trials(study) == 0 and study.trials[0].state == TrialState.RUNNING


@pytest.mark.parametrize("name", ["tpe", "random", "gp", "nsga2"])
def test_samplers_by_name(name):
    assert isinstance(make_sampler(name, 0), optuna.samplers.BaseSampler)


def test_unknown_sampler_pruner_storage():
    with pytest.raises(ConfigError):
        make_sampler("annealing", 0)
    with pytest.raises(ConfigError):
        make_pruner("sometimes", 5)
    with pytest.raises(ConfigError, match="unrecognised storage"):
        make_storage("mysterious", None)


def test_passwords_are_redacted():
    assert redact("postgresql://alice:s3cret@db.example/harness") == "postgresql://alice:***@db.example/harness"
    assert redact("postgresql://alice@db/h") == "postgresql://alice@db/h"


def test_pinned_trial_passes_other_calls_through():
    study = optuna.create_study()
    trial = PinnedTrial(study.ask(), {"a": 3})
    assert trial.suggest_int("a", 0, 10) == 3
    assert 0 <= trial.suggest_int("b", 0, 10) <= 10
    assert trial.number == 0 and "a" in trial.used
