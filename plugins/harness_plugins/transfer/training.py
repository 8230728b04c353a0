"""How the transfer methods pre-train, adapt and predict; :mod:`harness_plugins.transfer.methods`' hooks import this on first use."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from harness.data.tasks import load_related_task, parse_classes
from harness.task import Task
from harness.toolkit.augment import augment_from_config
from harness.toolkit.models import Classifier, network_from_config
from harness.toolkit.pretrain import PRETRAIN_DEFAULTS, cached_pretrain, data_digest, encoder_spec, fit_probe, freeze, pretrain_supervised, stage_seed, standardized_head
from harness.toolkit.train import TrainConfig, predict_proba, train, val_accuracy
from harness_plugins.transfer.adapters import insert_adapters, insert_prompts
from harness_plugins.transfer.methods import _BASE, _SOURCE_KEYS


def source_backbone(config: dict[str, Any], task: Task, ctx) -> Classifier:
    """The network pre-trained on the configured source task (from the cache when it ran before),
    with a fresh standardised linear head for ``task``'s classes."""
    c = {**_BASE, **config}
    classes = parse_classes(c["source_classes"]) if c.get("source_classes") not in (None, "", "all") else None
    source = load_related_task(c["source"], task, classes=classes)
    source_net, _ = cached_pretrain(
        lambda: network_from_config(c, source, default="cnn"),
        lambda net, stage_ctx: pretrain_supervised(net, source, {**PRETRAIN_DEFAULTS, **c}, stage_ctx),
        what={"stage": "supervised source", **encoder_spec(c), **{k: c[k] for k in _SOURCE_KEYS},
              "classes": classes, "shape": list(task.input_shape)},
        data=data_digest(source.train.x, source.train.y, source.val.x, source.val.y),
        seed=stage_seed(ctx), ctx=ctx,
    )
    model = Classifier(source_net.encoder, source_net.feature_dim, task.num_classes).to(ctx.device)
    model.head = standardized_head(model.encoder, task, ctx)
    return model


def fit(method: str, task: Task, config: dict[str, Any], ctx) -> Classifier:
    model = source_backbone(config, task, ctx)
    if method == "pretrained_probe":
        return fit_probe(model, task, config, ctx)
    if method == "adapters":
        freeze(model.encoder)
        insert_adapters(model.encoder, task.train.x[:2], reduction=int(config.get("reduction", 8)))
    elif method == "prefix_tuning":
        freeze(model.encoder)
        insert_prompts(model.encoder, task.train.x[:2], prompts=config.get("prompts", 8))
    x, y = task.train.x, task.train.y
    aug = augment_from_config(config.get("augment", "none"), bool(task.meta.get("hflip", False)))

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:
        xb = x[idx] if aug is None else aug(x[idx])
        return F.cross_entropy(model(xb), y[idx])

    train(model, step, len(x), TrainConfig.from_config(config, ctx), ctx,
          val_fn=lambda: val_accuracy(model, task.val, ctx))
    return model


def evaluate(method: str, fitted: Classifier, split, ctx) -> torch.Tensor:
    return predict_proba(fitted, split.x, ctx)

