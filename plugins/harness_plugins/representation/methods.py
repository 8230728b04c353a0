"""Self-supervised pre-training evaluated by a linear probe on the frozen encoder (or, for MAE, fine-tuning).

* ``simclr``: contrastive pre-training on the training images without their labels (two augmented
  views, projection head, NT-Xent loss; Chen et al., ICML 2020), then a linear probe trained on the
  labelled training data with the encoder frozen. With a label budget, pre-training also sees
  ``task.unlabeled``.
* ``byol``: the non-contrastive sibling: an online network with a predictor regresses an EMA
  target's projection of the other view, no negatives (Grill et al., NeurIPS 2020); same probe.
* ``simsiam``: two views, a predictor on one side and a stop-gradient on the other, negative cosine;
  no negatives and no target network (Chen & He, CVPR 2021); the paper's wide projection (2048)
  and predictor bottleneck (512); same probe.
* ``moco``: a momentum (EMA) key encoder and a queue of earlier keys as negatives, InfoNCE with a
  temperature and MoCo v2's MLP projection head (He et al., CVPR 2020; Chen et al., 2020); same probe.
* ``mae`` and ``mae_finetune``: a small ViT (timm, patch 7 on 28×28 by default) pre-trained to
  reconstruct randomly masked patches through a light decoder, the loss on the masked patches only
  (He et al., CVPR 2022); then the same linear probe, or that probe followed by fine-tuning of the
  whole network on the labels (LP-FT) with layer-wise learning-rate decay (``layer_decay``: the
  blocks nearer the input, which hold the most general pre-trained features, move least). Both rows
  read one cached pre-training; ``pretrain_epochs: 0`` gives the same ViT and recipe without
  pre-training, the from-scratch reference (there ``layer_decay: 1``: nothing to preserve).
* ``linear_probe``: the same probe on a randomly initialised frozen encoder, the row that shows what
  pre-training bought.

The encoder is any model of the registry (``cnn3`` at width 16 by default, ``cnn``, ``mlp``,
``timm:<name>``; set
``pretrained: true`` to start a timm model from weights already in the local hub cache). The
probe's softmax gives the probabilities; the parameter columns count the frozen encoder and the
probe, of which only the probe trains. Pre-trained encoders are cached under ``ctx.cache_dir`` by
configuration, data and seed, so tuning the probe does not pre-train again. Each siamese row
records ``proj_spread``, the spread of its normalised projections (≈ 1 healthy, → 0 collapsed).

The hooks in this module describe the methods and sample their spaces without importing torch; pre-training
and the probe are in :mod:`harness_plugins.representation.training`, imported with the first fit.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness import hookimpl
from harness.hookspecs import lazy_hooks
from harness.info import MethodInfo
from harness.toolkit.spaces import PRETRAIN_DEFAULTS, PROBE_DEFAULTS, VIEW_STRENGTHS, suggest_probe

if TYPE_CHECKING:
    from harness.task import Task

_ENCODER_DEFAULTS = {"model": "cnn3", "width": 16, "pretrained": False}
_SSL_KEYS = ("pretrain_epochs", "pretrain_lr", "pretrain_batch_size", "pretrain_weight_decay", "proj_dim", "views")
OBJECTIVES = {"simclr": "contrastive", "byol": "byol", "simsiam": "simsiam", "moco": "moco"}
MAE_METHODS = ("mae", "mae_finetune")
MAE_KEYS = ("pretrain_epochs", "pretrain_lr", "pretrain_batch_size", "pretrain_weight_decay", "mask_ratio",
            "decoder_dim", "decoder_depth", "norm_pix_loss")
# SimSiam wants a wide projection (Chen & He, 2021, sec. 4: 2048 dimensions, the predictor's
# bottleneck a quarter of it); at SimCLR's 64 its probe lost points here.
SIMSIAM_PROJ_DIM = 2048
# SimSiam's and MoCo's default pre-training: 80 epochs (960 steps of 256 on MNIST-5k's 3,000 training
# images), the longest budget measured (benchmarks/representation_wave2.yaml). Each doubling from 120
# steps still lifted the probe there (SimSiam +4.4, +4.3, +4.1 points; MoCo +2.6, +1.5, +1.7), so
# it is not yet a plateau; the shared default of 20 epochs left 8.4 and 3.2 points on seed 0.
SIAMESE_PRETRAIN_EPOCHS = 80
# A small ViT for 28×28 inputs: timm's ViT-Tiny at a third of its width (64, 2 heads), patch 7, depth 4; MAE's
# pre-training recipe (AdamW, weight decay 0.05) and fine-tuning (warm-up, average-pooled patch
# features: the class token carries little after masked pre-training, He et al., 2022, sec. A.1).
_VIT = {"model": "timm:vit_tiny_patch16_224", "patch_size": 7, "depth": 4, "embed_dim": 64, "num_heads": 2,
        "global_pool": "avg", "pretrained": False}
_MAE_STAGE = {"pretrain_epochs": 100, "pretrain_lr": 1e-3, "pretrain_batch_size": 128, "pretrain_weight_decay": 0.05,
              "mask_ratio": 0.75, "decoder_dim": 64, "decoder_depth": 1, "norm_pix_loss": True}
_FINETUNE = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "batch_size": 16, "augment": "light",
             "warmup_epochs": 3, "layer_decay": 0.75}


@hookimpl
def harness_methods() -> list[MethodInfo]:
    probe = {**_ENCODER_DEFAULTS, **PROBE_DEFAULTS}
    ssl = {**probe, **{k: PRETRAIN_DEFAULTS[k] for k in _SSL_KEYS}}
    return [
        MethodInfo("simclr", ("image",), "SimCLR contrastive pre-training (NT-Xent), then a linear probe on the "
                   "frozen encoder", "Chen et al., A Simple Framework for Contrastive Learning of Visual "
                   "Representations, ICML 2020", defaults={**ssl, "temperature": PRETRAIN_DEFAULTS["temperature"]}),
        MethodInfo("byol", ("image",), "BYOL non-contrastive pre-training (online predictor vs EMA target), "
                   "then a linear probe on the frozen encoder", "Grill et al., Bootstrap Your Own Latent, "
                   "NeurIPS 2020", defaults={**ssl, "ema_decay": PRETRAIN_DEFAULTS["ema_decay"]}),
        MethodInfo("simsiam", ("image",), "SimSiam pre-training (predictor, stop-gradient, negative cosine), "
                   "then a linear probe on the frozen encoder", "Chen & He, Exploring Simple Siamese "
                   "Representation Learning, CVPR 2021",
                   defaults={**ssl, "proj_dim": SIMSIAM_PROJ_DIM, "pretrain_epochs": SIAMESE_PRETRAIN_EPOCHS}),
        MethodInfo("moco", ("image",), "MoCo v2 pre-training (momentum key encoder, queue of negatives, InfoNCE), "
                   "then a linear probe on the frozen encoder", "He et al., Momentum Contrast for Unsupervised "
                   "Visual Representation Learning, CVPR 2020; Chen et al., Improved Baselines with Momentum "
                   "Contrastive Learning, 2020",
                   defaults={**ssl, "temperature": PRETRAIN_DEFAULTS["temperature"], "ema_decay": 0.99,
                             "queue_size": 1024, "pretrain_epochs": SIAMESE_PRETRAIN_EPOCHS}),
        MethodInfo("mae", ("image",), "masked-autoencoder pre-training of a ViT, then a linear probe on the "
                   "frozen encoder", "He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022",
                   defaults={**_VIT, **PROBE_DEFAULTS, **_MAE_STAGE}),
        MethodInfo("mae_finetune", ("image",), "masked-autoencoder pre-training of a ViT, then a linear probe and "
                   "fine-tuning of the whole network on the labels", "He et al., Masked Autoencoders Are Scalable Vision Learners, "
                   "CVPR 2022", defaults={**_VIT, **PROBE_DEFAULTS, **_FINETUNE, **_MAE_STAGE}),
        MethodInfo("linear_probe", ("image",), "linear probe on a randomly initialised frozen encoder "
                   "(the no-pre-training baseline)", "Alain & Bengio, Understanding intermediate layers "
                   "using linear classifier probes, 2016", defaults=probe),
    ]


@hookimpl
def harness_search_space(method: str, trial, task: Task) -> dict[str, Any]:
    if method in MAE_METHODS:
        return _mae_space(method, trial)
    cfg: dict[str, Any] = {"model": trial.suggest_categorical("model", ["cnn3", "cnn"]),
                           "pretrained": trial.suggest_categorical("pretrained", [False])}
    if cfg["model"] in ("cnn", "cnn3"):
        cfg["width"] = trial.suggest_categorical("width", [16, 32])
    cfg.update(suggest_probe(trial))
    if method == "linear_probe":
        return cfg
    # up to 80 epochs (960 steps of 256 on 3,000 images), the longest pre-training measured
    cfg["pretrain_epochs"] = trial.suggest_int("pretrain_epochs", 10, 80, step=5)
    cfg["pretrain_lr"] = trial.suggest_float("pretrain_lr", 3e-4, 5e-3, log=True)
    cfg["pretrain_batch_size"] = trial.suggest_categorical("pretrain_batch_size", [128, 256, 512])
    cfg["pretrain_weight_decay"] = trial.suggest_float("pretrain_weight_decay", 1e-6, 1e-3, log=True)
    cfg["proj_dim"] = trial.suggest_categorical("proj_dim", [512, 1024, 2048] if method == "simsiam" else [32, 64, 128])
    cfg["views"] = trial.suggest_categorical("views", list(VIEW_STRENGTHS))
    if method in ("simclr", "moco"):
        cfg["temperature"] = trial.suggest_float("temperature", 0.05, 1.0, log=True)
    if method in ("byol", "moco"):
        cfg["ema_decay"] = trial.suggest_float("ema_decay", 0.9, 0.999, log=True)
    if method == "moco":
        cfg["queue_size"] = trial.suggest_categorical("queue_size", [256, 1024, 2048])
    return cfg


def _mae_space(method: str, trial) -> dict[str, Any]:
    cfg: dict[str, Any] = {"model": trial.suggest_categorical("model", [_VIT["model"]]),
                           "pretrained": trial.suggest_categorical("pretrained", [False]),
                           "patch_size": trial.suggest_categorical("patch_size", [4, 7]),
                           "depth": trial.suggest_int("depth", 2, 6, step=2),
                           "embed_dim": trial.suggest_categorical("embed_dim", [64, 96, 192]),
                           "num_heads": trial.suggest_categorical("num_heads", [2, 4]),
                           "global_pool": trial.suggest_categorical("global_pool", ["avg", "token"]),
                           # 0 epochs: no pre-training, the reference the pre-training must beat
                           "pretrain_epochs": trial.suggest_int("pretrain_epochs", 0, 200, step=20),
                           "pretrain_lr": trial.suggest_float("pretrain_lr", 2e-4, 3e-3, log=True),
                           "pretrain_batch_size": trial.suggest_categorical("pretrain_batch_size", [64, 128, 256]),
                           "pretrain_weight_decay": trial.suggest_float("pretrain_weight_decay", 1e-3, 0.1, log=True),
                           "mask_ratio": trial.suggest_float("mask_ratio", 0.5, 0.9),
                           "decoder_dim": trial.suggest_categorical("decoder_dim", [32, 64, 128]),
                           "decoder_depth": trial.suggest_int("decoder_depth", 1, 2),
                           "norm_pix_loss": trial.suggest_categorical("norm_pix_loss", [True, False])}
    cfg.update(suggest_probe(trial))
    if method == "mae":
        return cfg
    # MAE's fine-tuning recipe: AdamW with a transformer's weight decay
    cfg["optimizer"] = trial.suggest_categorical("optimizer", ["adamw"])
    cfg["lr"] = trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    cfg["weight_decay"] = trial.suggest_float("weight_decay", 1e-3, 0.1, log=True)
    cfg["batch_size"] = trial.suggest_categorical("batch_size", [16, 32, 64])
    cfg["augment"] = trial.suggest_categorical("augment", ["none", "light"])
    # few labels make short epochs: a warm-up of 5 % of a 1,000-step budget may be 10 epochs or more
    cfg["warmup_epochs"] = trial.suggest_int("warmup_epochs", 0, 20)
    # layer-wise lr decay: each block nearer the input trains at this factor of the one above (1: off)
    cfg["layer_decay"] = trial.suggest_float("layer_decay", 0.5, 1.0)
    return cfg


# torch loads with the first fit, not with the listing
harness_fit, harness_evaluate = lazy_hooks("harness_plugins.representation.training")
