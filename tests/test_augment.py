import pytest
import torch

from harness.toolkit.augment import Augment, augment_from_config


def test_parameters_are_drawn_per_example():
    x = torch.zeros(16, 1, 8, 8)
    x[:, :, 2:6, 3:5] = 1.0  # the same image sixteen times
    torch.manual_seed(0)
    out = Augment(degrees=30, translate=0.2)(x)
    assert out.shape == x.shape
    distinct = {tuple(o.flatten().round(decimals=3).tolist()) for o in out}
    assert len(distinct) == 16


def test_identity_when_all_ranges_are_zero():
    x = torch.rand(4, 3, 8, 8)
    out = Augment(degrees=0, translate=0, scale=(1.0, 1.0))(x)
    assert torch.allclose(out, x, atol=1e-5)


def test_named_choices():
    assert augment_from_config("none") is None
    assert augment_from_config("strong", hflip_ok=True).hflip
    with pytest.raises(ValueError):
        augment_from_config("wild")
