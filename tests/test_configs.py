"""Configurations as the store holds them, and defaults that depend on the task."""
import numpy as np
import pytest
import torch

from harness import MethodInfo
from harness.configs import check_serialisable, default_config, defaults_for
from harness.errors import ConfigError, PluginError
from harness.plugins import load_plugins
from harness.task import WithheldSplitError


@pytest.mark.parametrize("value,named", [
    (np.float32(0.19), "config key 'lr' holds numpy.float32 (0.19)"),
    (torch.device("cpu"), "config key 'lr' holds torch.device (cpu)"),
    ([0.1, np.int64(3)], "config key 'lr' holds a list holding numpy.int64 (3)"),
    ({"a": torch.tensor(1.0)}, "config key 'lr' holds a dict whose key 'a' holds torch.Tensor"),
])
def test_a_value_json_cannot_hold_is_named_by_its_key(value, named):
    with pytest.raises(ConfigError, match=f"^m: {named}".replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        check_serialisable({"ok": 1.0, "lr": value}, "m")


def test_the_checked_configuration_is_what_the_store_hands_back():
    assert check_serialisable({"sizes": (1, 2), "lr": np.float64(0.5), "on": True}, "m") == \
        {"sizes": [1, 2], "lr": 0.5, "on": True}


def test_defaults_may_depend_on_the_task(digits, iris):
    info = MethodInfo("m", ("image", "tabular"), "", defaults=lambda task: {"model": "cnn" if task.kind == "image" else "mlp"})
    assert defaults_for(info, digits) == {"model": "cnn"} and defaults_for(info, iris) == {"model": "mlp"}
    assert defaults_for(MethodInfo("m", ("image",), ""), digits) == {}
    with pytest.raises(PluginError, match="defaults for a tabular task is list"):
        defaults_for(MethodInfo("m", ("tabular",), "", defaults=lambda task: ["mlp"]), iris)


def test_a_default_outside_the_space_names_parameter_and_kind(iris):
    reg = load_plugins(modules=["fixture_plugins.kind_defaults"])
    method = reg.method("kind_defaults")
    with pytest.raises(ConfigError, match=r"MethodInfo\.defaults for a tabular task: parameter 'model' = 'cnn' "
                                          r"is outside the search space \(choices \('mlp',\)\)"):
        default_config(method, iris.without_test())
    with pytest.raises(ConfigError, match="has no value for parameter 'temperature'"):
        method.info.defaults.pop("temperature")
        try:
            default_config(method, iris.without_test(), pinned={"model": "mlp"})
        finally:
            method.info.defaults["temperature"] = 1.0
    assert default_config(method, iris.without_test(), pinned={"model": "mlp"}) == {"model": "mlp", "temperature": 1.0}


def test_the_withheld_test_split_says_why(iris):
    plugin_task = iris.without_test()
    assert iris.has_test and not plugin_task.has_test
    with pytest.raises(WithheldSplitError, match="withheld from harness_fit .* by design; train on task.train"):
        plugin_task.test.x
    with pytest.raises(WithheldSplitError):
        len(plugin_task.test)
    assert "n_test" not in plugin_task.sizes() and plugin_task.to("cpu").has_test is False


@pytest.mark.parametrize("param, value, fits", [
    ("batch_size", 16, True),           # a number the searched choices leave out
    ("batch_size", 16.5, False),        # ... but of their kind
    ("mc_samples", 0, True),            # zero turns a count off
    ("model", "lenet", True),           # a registered network outside (cnn, mlp)
    ("model", "timm:resnet18", True),
    ("model", "lenett", False),
    ("optimizer", "sgd", True),
    ("optimizer", "banana", False),
    ("lr", 0.5, False),                 # a range bounds what is valid
    ("lr", -5, False),
    ("weight_decay", 0.0, True),        # zero in a log range: the scale off
    ("width", None, True),              # the method's own default
])
def test_pinned_values_fit_by_kind_not_only_by_membership(param, value, fits):
    import optuna.distributions as od

    from harness.configs import _fits

    dists = {"batch_size": od.CategoricalDistribution([32, 64, 128]),
             "mc_samples": od.CategoricalDistribution([20]),
             "model": od.CategoricalDistribution(["cnn", "mlp"]),
             "optimizer": od.CategoricalDistribution(["adam", "adamw"]),
             "lr": od.FloatDistribution(1e-3, 0.3, log=True),
             "weight_decay": od.FloatDistribution(1e-6, 1e-2, log=True),
             "width": od.CategoricalDistribution([32])}
    assert _fits(dists[param], value, param) is fits
