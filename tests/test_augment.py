import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from harness.toolkit.augment import (
    _COLOUR_OPS, RAND_AUGMENT_OPS, Augment, RandAugment, _geometric_theta, augment_from_config,
)


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


def test_rand_augment_keeps_shape_and_range_and_varies_per_example():
    x = torch.rand(1, 1, 28, 28).repeat(64, 1, 1, 1)  # one image, sixty-four times
    out = RandAugment(ops=2, cutout=0.0)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    distinct = {tuple(o.flatten().round(decimals=4).tolist()) for o in out}
    assert len(distinct) > 32  # operation and magnitude are drawn per example


def test_rand_augment_is_reproducible_under_a_seeded_generator():
    x = torch.rand(16, 3, 12, 12)
    ra = RandAugment(ops=3, cutout=0.5)
    a = ra(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, ra(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, ra(x, torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("name, reference", [
    ("autocontrast", lambda x: TF.autocontrast(x)),
    ("solarize", lambda x: TF.solarize(x, 0.5)),
    ("contrast", lambda x: TF.adjust_contrast(x, 1.475)),
    ("brightness", lambda x: TF.adjust_brightness(x, 1.475)),
    ("sharpness", lambda x: TF.adjust_sharpness(x, 1.475)),
    ("posterize", lambda x: TF.posterize((x * 255).to(torch.uint8), 6).float() / 255),
])
def test_colour_operations_match_torchvision_at_one_magnitude(name, reference):
    x = (torch.rand(8, 3, 10, 10) * 255).round() / 255
    m = torch.full((8,), 0.5)
    assert torch.allclose(_COLOUR_OPS[name](x, m).clamp(0, 1), reference(x), atol=1e-5)


def test_equalize_spreads_a_narrow_histogram_and_keeps_a_flat_image():
    x = torch.linspace(0.4, 0.6, 100).view(1, 1, 10, 10)
    out = _COLOUR_OPS["equalize"](x, torch.zeros(1))
    assert out.min() == 0 and out.max() == 1
    assert (out.flatten().diff() >= 0).all()  # monotone in the grey level
    flat = torch.full((1, 1, 4, 4), 0.3)
    assert torch.equal(_COLOUR_OPS["equalize"](flat, torch.zeros(1)), flat)


def test_geometric_operations_move_pixels_and_identity_does_not():
    x = torch.zeros(2, 1, 9, 9)
    x[:, :, 4, 2] = 1.0
    op = torch.tensor([RAND_AUGMENT_OPS.index("identity"), RAND_AUGMENT_OPS.index("translate_x")])
    theta = _geometric_theta(op, torch.tensor([1.0, 1.0]))
    out = torch.nn.functional.grid_sample(x, torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False),
                                          align_corners=False)
    assert torch.allclose(out[0], x[0], atol=1e-6)
    assert not torch.allclose(out[1], x[1], atol=1e-3)
