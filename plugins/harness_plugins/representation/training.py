"""How the representation methods pre-train, probe and predict; :mod:`harness_plugins.representation.methods`' hooks import this on first use."""
from __future__ import annotations

from typing import Any

import torch

from harness.task import Task
from harness.toolkit.models import Classifier, network_from_config
from harness.toolkit.pretrain import PRETRAIN_DEFAULTS, SelfSupervised, cached_pretrain, data_digest, encoder_spec, fit_probe, pretrain_self_supervised, stage_seed
from harness.toolkit.mae import MAE_DEFAULTS, MaskedAutoencoder, layer_decay_groups, pretrain_masked
from harness.toolkit.recipes import fit_supervised
from harness.toolkit.train import predict_proba
from harness_plugins.representation.methods import MAE_KEYS, MAE_METHODS, OBJECTIVES, _SSL_KEYS


def pretraining_images(task: Task) -> torch.Tensor:
    """Every training image, labelled or not, in data-set order: the same tensor (and so the same
    cache entry) whatever label budget splits it."""
    parts = [task.train] + ([task.unlabeled] if task.unlabeled is not None else [])
    x = torch.cat([p.x for p in parts])
    if all(p.index is not None for p in parts):
        x = x[torch.argsort(torch.cat([p.index for p in parts]))]
    return x


def _masked_autoencoder(task: Task, config: dict[str, Any], ctx) -> torch.nn.Module:
    """The ViT encoder after masked-autoencoder pre-training on every training image, from the
    cache when this stage ran before (so the probe and fine-tuning rows share it)."""
    x = pretraining_images(task)
    stage = {k: config.get(k, {**PRETRAIN_DEFAULTS, **MAE_DEFAULTS}.get(k)) for k in MAE_KEYS}

    def build() -> MaskedAutoencoder:
        net = network_from_config(config, task)
        return MaskedAutoencoder(net.encoder, task.input_shape[0], float(stage["mask_ratio"]), int(stage["decoder_dim"]),
                                 int(stage["decoder_depth"]), bool(stage["norm_pix_loss"]))

    mae, _ = cached_pretrain(
        build, lambda net, stage_ctx: pretrain_masked(net, x, stage, stage_ctx),
        what={"stage": "masked-autoencoder", **encoder_spec(config), **stage, "shape": list(task.input_shape)},
        data=data_digest(x), seed=stage_seed(ctx), ctx=ctx,
    )
    return mae.encoder


def fit(method: str, task: Task, config: dict[str, Any], ctx) -> Classifier:
    model = network_from_config(config, task, default="cnn")
    if method in MAE_METHODS:
        if int(config.get("pretrain_epochs", 1)) > 0:  # 0: the same ViT and recipe without pre-training
            model.encoder = _masked_autoencoder(task, config, ctx)
        model = fit_probe(model, task, config, ctx)
        if method == "mae":
            return model
        # Fine-tuning starts from the probe's head (LP-FT, Kumar et al., ICLR 2022): a random head's
        # first gradients would otherwise wreck the pre-trained features before it learns anything.
        for p in model.parameters():
            p.requires_grad_(True)
        groups = layer_decay_groups(model, float(config.get("lr", 1e-3)), float(config.get("weight_decay", 0.0)),
                                    float(config.get("layer_decay", 1.0)))
        return fit_supervised(task, config, ctx, model=model, params=groups)
    if method in OBJECTIVES:
        objective = OBJECTIVES[method]
        x = pretraining_images(task)
        hflip = bool(task.meta.get("hflip", False))
        stage = {k: config.get(k, PRETRAIN_DEFAULTS[k]) for k in _SSL_KEYS}
        stage.update(temperature=config.get("temperature") if objective in ("contrastive", "moco") else None,
                     ema_decay=config.get("ema_decay") if objective in ("byol", "moco") else None)
        if objective == "moco":
            stage["queue_size"] = int(config.get("queue_size", 1024))

        def build() -> SelfSupervised:
            net = network_from_config(config, task, default="cnn")
            return SelfSupervised(net.encoder, net.feature_dim, objective, proj_dim=int(stage["proj_dim"]))

        ssl, _ = cached_pretrain(
            build, lambda net, stage_ctx: pretrain_self_supervised(net, x, config, stage_ctx, hflip),
            what={"stage": "self-supervised", "objective": objective, **encoder_spec(config), **stage,
                  "hflip": hflip, "shape": list(task.input_shape)},
            data=data_digest(x), seed=stage_seed(ctx), ctx=ctx,
        )
        ctx.extras["proj_spread"] = ssl.spread(x, ctx)  # ≈ 1 healthy, → 0 collapsed
        model.encoder = ssl.encoder
    return fit_probe(model, task, config, ctx)


def evaluate(method: str, fitted: Classifier, split, ctx) -> torch.Tensor:
    return predict_proba(fitted, split.x, ctx)

