import pytest
import torch

from harness.errors import ConfigError
from harness.toolkit.models import Classifier, count_parameters, create_model, list_models


def test_registry_lists_and_builds(digits, iris):
    assert {"mlp", "cnn", "lenet"} <= set(list_models())
    assert list_models("c*") == ["cnn", "cnn3", "conv4"]
    for name, task in (("mlp", digits), ("cnn", digits), ("lenet", digits), ("conv4", digits), ("mlp", iris)):
        model = create_model(name, task)
        assert isinstance(model, Classifier)
        out = model(task.train.x[:5])
        assert out.shape == (5, task.num_classes)
        assert model.features(task.train.x[:5]).shape == (5, model.feature_dim)


def test_batchnorm_switch(digits):
    with_bn = create_model("cnn", digits, batchnorm=True)
    without = create_model("cnn", digits, batchnorm=False)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in with_bn.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in without.modules())


def test_cnn_needs_images(iris):
    for name in ("cnn", "lenet"):
        with pytest.raises(ValueError):
            create_model(name, iris)


def test_lenet_from_a_configuration(registry):
    from harness.data import load_task
    from harness.toolkit.models import network_from_config

    task = load_task(registry, "mnist5k")
    model = network_from_config({"model": "lenet", "width": 8, "hidden": 32, "batchnorm": False, "dropout": 0.5}, task)
    assert model.feature_dim == 32 and model(task.train.x[:3]).shape == (3, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16] and all(c.kernel_size == (5, 5) for c in convs)
    # 28 → 14 → 7 after two poolings: the dense layer sees 16·7·7 inputs.
    assert any(isinstance(m, torch.nn.Linear) and m.in_features == 16 * 49 for m in model.modules())
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in model.modules())


def test_unknown_model():
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("transformer9000", None)


def test_timm_backbone_by_name(registry):
    from harness.data import load_task

    task = load_task(registry, "mnist5k")
    model = create_model("timm:resnet10t", task)
    assert model(task.train.x[:2]).shape == (2, 10)
    total, trainable = count_parameters(model)
    assert total == trainable > 100_000
    with pytest.raises(ConfigError, match="timm has no model"):
        create_model("timm:not_a_model_xyz", task)
