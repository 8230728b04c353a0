"""Transfer methods: class-subset tasks, adapters on every backbone family, frozen weights that stay
frozen, and each method learning a target task from a source task (digits 0–4 → 5–9)."""
from __future__ import annotations

import pytest
import torch

from harness.context import FitContext, seed_everything
from harness.data import load_task
from harness.data.tasks import load_related_task, parse_classes
from harness.errors import ConfigError, DataError
from harness.metrics import accuracy
from harness.toolkit.models import create_model
from harness.toolkit.pretrain import cached_pretrain, freeze
from harness_plugins.transfer.adapters import BottleneckAdapter, insert_adapters
from harness_plugins.transfer.training import source_backbone

TINY = {"model": "cnn", "width": 32, "stages": 2, "source": "digits", "source_classes": "0-4",
        "pretrain_epochs": 5, "batch_size": 32, "lr": 3e-3, "reduction": 4}


@pytest.fixture(scope="module")
def target(registry):
    return load_task(registry, "digits", options={"classes": [5, 6, 7, 8, 9]})


def _fit(registry, method, task, config, tmp_path, epochs=8):
    m = registry.method(method)
    ctx = FitContext(device=torch.device("cpu"), seed=0, epochs=epochs, cache_dir=tmp_path, phase="final")
    seed_everything(0)
    fitted = m.fit(task.without_test(), {**m.info.defaults, **config}, ctx)
    probs = m.evaluate(fitted, task.test.without_labels(), ctx)
    return fitted, ctx, accuracy(probs.double(), task.test.y)


def test_class_subset_is_relabelled(registry, target):
    assert target.num_classes == 5 and target.class_names == ("5", "6", "7", "8", "9")
    assert set(target.train.y.tolist()) == {0, 1, 2, 3, 4}
    full = load_task(registry, "digits")
    # the subset holds exactly the examples of those classes
    n_subset = sum(len(s) for s in (target.train, target.val, target.test))
    n_full = sum(int((s.y >= 5).sum()) for s in (full.train, full.val, full.test))
    assert n_subset == n_full
    assert parse_classes("0-2,7") == [0, 1, 2, 7]
    for bad in ("a-b", [1, 1], [], 3.5):
        with pytest.raises(DataError):
            parse_classes(bad)
    with pytest.raises(DataError, match="has no class 10"):
        load_task(registry, "digits", options={"classes": "10-12"})


def test_related_task_is_resized_to_the_target(registry, target):
    source = load_related_task("mnist5k", target, classes="0-4", registry=registry)
    assert source.input_shape == target.input_shape == (1, 8, 8)
    assert source.num_classes == 5 and source.train.x.shape[1:] == (1, 8, 8)


@pytest.mark.parametrize("arch,kwargs,blocks", [
    ("cnn", {}, 4),
    ("timm:resnet10t", {}, 4),
    ("timm:vit_tiny_patch16_224", {"patch_size": 4, "depth": 4}, 4),  # ViT-tiny, fewer blocks for speed
])
def test_adapters_start_as_identity_and_train_few_parameters(registry, arch, kwargs, blocks):
    task = load_task(registry, "mnist5k", options={"classes": "0-4"})
    model = create_model(arch, task, **kwargs).eval()
    x = task.train.x[:4]
    before = model(x)
    freeze(model.encoder)
    adapters = insert_adapters(model.encoder, x, reduction=8)
    assert len(adapters) == blocks and all(isinstance(a, BottleneckAdapter) for a in adapters)
    assert torch.allclose(model(x), before, atol=1e-5)  # zero-initialised up-projection
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == sum(p.numel() for p in adapters.parameters()) + sum(p.numel() for p in model.head.parameters())
    assert 0 < trainable / total <= 0.10


def test_adapter_needs_blocks():
    with pytest.raises(ConfigError, match="cannot find blocks"):
        insert_adapters(torch.nn.Linear(3, 3), torch.zeros(1, 3))


def test_adapters_learn_with_the_backbone_frozen(registry, target, tmp_path):
    fitted, ctx, acc = _fit(registry, "adapters", target, TINY, tmp_path)
    assert acc > 0.6, acc  # chance is 0.2
    # The source backbone comes back from the cache: every frozen weight and statistic is unchanged.
    source = source_backbone({**registry.method("adapters").info.defaults, **TINY}, target,
                             FitContext(device=torch.device("cpu"), seed=0, cache_dir=tmp_path, phase="final"))
    adapted = fitted.encoder.state_dict()
    for name, value in source.encoder.state_dict().items():
        key = next(k for k in adapted if k.replace(".block.", ".").replace(".block", "") == name or k == name)
        assert torch.equal(adapted[key], value), name
    total, trainable = ctx.parameter_counts()
    # the counted parameters are exactly those of the network that predicts
    assert {id(p) for m in ctx.modules for p in m.parameters()} == {id(p) for p in fitted.parameters()}
    assert trainable / total <= 0.10
    assert not any(p.requires_grad for n, p in fitted.encoder.named_parameters() if ".adapter." not in n)


def test_finetune_and_probe_reuse_the_source_stage(registry, target, tmp_path):
    _fit(registry, "adapters", target, TINY, tmp_path, epochs=1)
    cached = list((tmp_path / "pretrain").glob("*.pt"))
    assert len(cached) == 1
    fitted, ctx, acc = _fit(registry, "finetune", target, TINY, tmp_path)
    assert acc > 0.8, acc
    total, trainable = ctx.parameter_counts()
    assert trainable == total
    _, ctx, acc = _fit(registry, "pretrained_probe", target, TINY, tmp_path)
    assert acc > 0.6, acc
    total, trainable = ctx.parameter_counts()
    assert trainable == 64 * 5 + 5  # the probe only: feature_dim × classes + bias
    assert list((tmp_path / "pretrain").glob("*.pt")) == cached  # no second source training


def test_cache_is_keyed_by_content(tmp_path):
    ctx = FitContext(device=torch.device("cpu"), seed=0, cache_dir=tmp_path)
    runs = []

    def pretrain(net, stage_ctx):
        runs.append(stage_ctx.seed)
        with torch.no_grad():
            net.weight.add_(1.0)

    build = lambda: torch.nn.Linear(2, 2)  # noqa: E731
    a, hit_a = cached_pretrain(build, pretrain, what={"x": 1}, data="d", seed=3, ctx=ctx)
    b, hit_b = cached_pretrain(build, pretrain, what={"x": 1}, data="d", seed=3, ctx=ctx)
    _, hit_c = cached_pretrain(build, pretrain, what={"x": 2}, data="d", seed=3, ctx=ctx)
    _, hit_d = cached_pretrain(build, pretrain, what={"x": 1}, data="e", seed=3, ctx=ctx)
    assert (hit_a, hit_b, hit_c, hit_d) == (False, True, False, False)
    assert runs == [3, 3, 3] and torch.equal(a.weight, b.weight)


def test_prompts_keep_the_sequence_and_train_only_themselves(registry):
    from harness_plugins.transfer.adapters import Prompted, insert_prompts

    task = load_task(registry, "mnist5k", options={"classes": "0-4"})
    model = create_model("timm:vit_tiny_patch16_224", task, patch_size=4, depth=2).eval()
    x = task.train.x[:3]
    freeze(model.encoder)
    prompts = insert_prompts(model.encoder, x, prompts=5)
    assert len(prompts) == 2 and all(p.shape == (5, 192) for p in prompts)
    assert all(isinstance(b, Prompted) for b in model.encoder.blocks)
    tokens = model.encoder.forward_features(x)
    assert tokens.shape == (3, 1 + 49, 192)  # class token + 7×7 patches: the prompts are gone again
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in [*prompts, *model.head.parameters()]}
    before = model(x)
    with torch.no_grad():
        prompts[0].add_(torch.randn(prompts[0].shape, generator=torch.Generator().manual_seed(0)))
    assert not torch.allclose(model(x), before)  # the prompts reach the prediction
    with pytest.raises(ConfigError, match="ViT-style backbone"):
        insert_prompts(create_model("cnn", task).encoder, x)
    with pytest.raises(ConfigError, match="positive integer"):
        insert_prompts(create_model("timm:vit_tiny_patch16_224", task, patch_size=4, depth=1).encoder, x, prompts=0)


VIT = {"model": "timm:vit_tiny_patch16_224", "patch_size": 2, "depth": 2, "width": None, "source": "digits",
       "source_classes": "0-4", "pretrain_epochs": 10, "batch_size": 32}


def test_prefix_tuning_learns_with_the_vit_frozen(registry, target, tmp_path):
    fitted, ctx, acc = _fit(registry, "prefix_tuning", target, VIT, tmp_path)
    assert acc > 0.4, acc  # chance is 0.2
    source = source_backbone({**registry.method("prefix_tuning").info.defaults, **VIT}, target,
                             FitContext(device=torch.device("cpu"), seed=0, cache_dir=tmp_path, phase="final"))
    tuned = {k.replace(".block.", "."): v for k, v in fitted.encoder.state_dict().items() if not k.endswith("prompts")}
    for name, value in source.encoder.state_dict().items():
        assert torch.equal(tuned[name], value), name
    total, trainable = ctx.parameter_counts()
    assert trainable == 2 * 8 * 192 + 192 * 5 + 5 and trainable / total < 0.01
