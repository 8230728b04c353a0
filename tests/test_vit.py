"""The ``vit`` method: a small timm ViT whose shape comes from the configuration, trained from scratch."""
import optuna
import torch

from harness.context import FitContext, seed_everything
from harness.metrics import accuracy
from harness.toolkit.models import count_parameters, network_from_config


def test_shape_keys_reach_timm(digits):
    base = {"model": "timm:vit_tiny_patch16_224", "patch_size": 4, "depth": 2, "num_heads": 2}
    small = network_from_config({**base, "embed_dim": 32}, digits)
    wide = network_from_config({**base, "embed_dim": 64}, digits)
    assert small.feature_dim == 32 and wide.feature_dim == 64
    assert len(small.encoder.blocks) == 2 and small.encoder.blocks[0].attn.num_heads == 2
    assert count_parameters(wide)[0] > 2 * count_parameters(small)[0]


def test_space_samples_widths_the_heads_divide(registry, digits):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        cfg = registry.methods["vit"].search_space(study.ask(), digits)
        assert cfg["embed_dim"] % cfg["num_heads"] == 0 and cfg["model"].startswith("timm:vit")


def test_vit_learns_digits_well_above_chance(registry, digits):
    m = registry.methods["vit"]
    seed_everything(0)
    ctx = FitContext(device=torch.device("cpu"), seed=0, epochs=4)
    config = {**m.info.defaults, "patch_size": 4, "depth": 2, "embed_dim": 64, "num_heads": 2, "warmup_epochs": 0}
    fitted = m.fit(digits.without_test(), config, ctx)
    assert accuracy(m.evaluate(fitted, digits.test.without_labels(), ctx), digits.test.y) > 0.5  # chance: 0.1
