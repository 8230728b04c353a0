import pytest
import torch

from harness.errors import ConfigError
from harness.models import Classifier, count_parameters, create_model, list_models


def test_registry_lists_and_builds(digits, iris):
    assert {"mlp", "cnn"} <= set(list_models())
    assert list_models("c*") == ["cnn", "cnn3"]
    for name, task in (("mlp", digits), ("cnn", digits), ("mlp", iris)):
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
    with pytest.raises(ValueError):
        create_model("cnn", iris)


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
