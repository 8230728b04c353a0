"""Self-supervised pre-training evaluated by a linear probe on the frozen encoder.

* ``simclr``: contrastive pre-training on the training images without their labels (two augmented
  views, projection head, NT-Xent loss; Chen et al., ICML 2020), then a linear probe trained on the
  labelled training data with the encoder frozen. With a label budget, pre-training also sees
  ``task.unlabeled``.
* ``byol``: the non-contrastive sibling: an online network with a predictor regresses an EMA
  target's projection of the other view, no negatives (Grill et al., NeurIPS 2020); same probe.
* ``linear_probe``: the same probe on a randomly initialised frozen encoder, the row that shows what
  pre-training bought.

The encoder is any model of the registry (``cnn3`` at width 16 by default, ``cnn``, ``mlp``,
``timm:<name>``; set
``pretrained: true`` to start a timm model from weights already in the local hub cache). The
probe's softmax gives the probabilities; the parameter columns count the frozen encoder and the
probe, of which only the probe trains. Pre-trained encoders are cached under ``ctx.cache_dir`` by
configuration, data and seed, so tuning the probe does not pre-train again.

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
OBJECTIVES = {"simclr": "contrastive", "byol": "byol"}


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
        MethodInfo("linear_probe", ("image",), "linear probe on a randomly initialised frozen encoder "
                   "(the no-pre-training baseline)", "Alain & Bengio, Understanding intermediate layers "
                   "using linear classifier probes, 2016", defaults=probe),
    ]


@hookimpl
def harness_search_space(method: str, trial, task: Task) -> dict[str, Any]:
    cfg: dict[str, Any] = {"model": trial.suggest_categorical("model", ["cnn3", "cnn"]),
                           "pretrained": trial.suggest_categorical("pretrained", [False])}
    if cfg["model"] in ("cnn", "cnn3"):
        cfg["width"] = trial.suggest_categorical("width", [16, 32])
    cfg.update(suggest_probe(trial))
    if method == "linear_probe":
        return cfg
    cfg["pretrain_epochs"] = trial.suggest_int("pretrain_epochs", 10, 40, step=5)
    cfg["pretrain_lr"] = trial.suggest_float("pretrain_lr", 3e-4, 5e-3, log=True)
    cfg["pretrain_batch_size"] = trial.suggest_categorical("pretrain_batch_size", [128, 256, 512])
    cfg["pretrain_weight_decay"] = trial.suggest_float("pretrain_weight_decay", 1e-6, 1e-3, log=True)
    cfg["proj_dim"] = trial.suggest_categorical("proj_dim", [32, 64, 128])
    cfg["views"] = trial.suggest_categorical("views", list(VIEW_STRENGTHS))
    if method == "simclr":
        cfg["temperature"] = trial.suggest_float("temperature", 0.05, 1.0, log=True)
    else:
        cfg["ema_decay"] = trial.suggest_float("ema_decay", 0.9, 0.999, log=True)
    return cfg


# torch loads with the first fit, not with the listing
harness_fit, harness_evaluate = lazy_hooks("harness_plugins.representation.training")
