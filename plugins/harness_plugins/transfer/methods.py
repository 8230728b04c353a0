"""Transfer from a source task to the target task, with a backbone pre-trained inside the harness.

The backbone is trained with cross-entropy on a source task (``source``: a data-set name,
``source_classes``: a class subset such as ``"0-4"``; by default MNIST-5k digits 0–4, images resized
to the target's size) and cached by configuration, data and seed, so tuning the target stage does
not pre-train again. Then, on the target task:

* ``adapters``: the backbone is frozen (BatchNorm statistics included) and residual bottleneck
  adapters after each of its blocks train together with a new head (Rebuffi et al., NeurIPS 2017;
  Houlsby et al., ICML 2019);
* ``finetune``: every weight trains, starting from the source backbone;
* ``pretrained_probe``: a linear probe on the frozen source backbone;
* ``prefix_tuning`` (ViT backbones): the backbone is frozen and ``prompts`` learned tokens per
  transformer block train together with a new head (deep visual prompt tuning, Jia et al., ECCV
  2022, the vision form of Li & Liang's prefix tuning); by default a 4-block ViT-tiny with 4×4
  patches, the ViT that the other methods take with ``model: timm:vit_tiny_patch16_224``.

The parameter columns count the backbone, adapters and head; the fraction trained says what
each method paid. Works on the built-in CNN and on timm ResNets and ViTs by name
(``model: timm:resnet10t``; ``model: timm:vit_tiny_patch16_224, patch_size: 4`` for 28×28 images,
``depth`` for fewer blocks).

The hooks in this module describe the methods and sample their spaces without importing torch; training
is in :mod:`harness_plugins.transfer.training`, imported with the first fit.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness import hookimpl
from harness.hookspecs import lazy_hooks
from harness.info import MethodInfo
from harness.toolkit.spaces import PROBE_DEFAULTS, suggest_optimizer, suggest_probe

if TYPE_CHECKING:
    from harness.task import Task

_SOURCE_KEYS = ("source", "source_classes", "pretrain_epochs", "pretrain_lr", "pretrain_weight_decay")
_BASE = {"model": "cnn", "width": 32, "stages": None, "patch_size": None, "depth": None, "pretrained": False,
         "source": "mnist5k", "source_classes": "0-4", "pretrain_epochs": 10, "pretrain_lr": 2e-3,
         "pretrain_weight_decay": 1e-4}
_VIT = {**_BASE, "model": "timm:vit_tiny_patch16_224", "width": None, "patch_size": 4, "depth": 4,
        "pretrain_lr": 1e-3}


def _base(method: str) -> dict[str, Any]:
    return _VIT if method == "prefix_tuning" else _BASE


_TARGET = {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 64, "augment": "none"}


@hookimpl
def harness_methods() -> list[MethodInfo]:
    return [
        MethodInfo("adapters", ("image",), "residual bottleneck adapters (+ head) trained on a frozen backbone "
                   "pre-trained on a source task", "Rebuffi et al., Learning multiple visual domains with "
                   "residual adapters, NeurIPS 2017; Houlsby et al., ICML 2019",
                   defaults={**_BASE, **_TARGET, "lr": 1e-2, "reduction": 4}),
        MethodInfo("finetune", ("image",), "fine-tune every weight of a backbone pre-trained on a source task",
                   "Yosinski et al., How transferable are features in deep neural networks?, NeurIPS 2014",
                   defaults={**_BASE, **_TARGET, "lr": 1e-3}),
        MethodInfo("pretrained_probe", ("image",), "linear probe on the frozen backbone pre-trained on a "
                   "source task", "Kornblith et al., Do Better ImageNet Models Transfer Better?, CVPR 2019",
                   defaults={**_BASE, **PROBE_DEFAULTS}),
        MethodInfo("prefix_tuning", ("image",), "learned prompt tokens in every block (+ head) of a frozen ViT "
                   "pre-trained on a source task", "Jia et al., Visual Prompt Tuning, ECCV 2022; Li & Liang, "
                   "Prefix-Tuning, ACL 2021", defaults={**_VIT, **_TARGET, "lr": 1e-2, "prompts": 8}),
    ]


@hookimpl
def harness_search_space(method: str, trial, task: Task) -> dict[str, Any]:
    # The backbone and its source stage are usually pinned by the suite; they sit in the space so
    # that a pinned value is recorded with the trial like any other.
    cfg: dict[str, Any] = {k: trial.suggest_categorical(k, [v]) for k, v in _base(method).items()
                           if k not in ("pretrain_lr", "pretrain_weight_decay", "pretrain_epochs")}
    cfg["pretrain_epochs"] = trial.suggest_int("pretrain_epochs", 5, 30, step=5)
    cfg["pretrain_lr"] = trial.suggest_float("pretrain_lr", 5e-4, 5e-3, log=True)
    cfg["pretrain_weight_decay"] = trial.suggest_float("pretrain_weight_decay", 1e-6, 1e-3, log=True)
    if method == "pretrained_probe":
        return {**cfg, **suggest_probe(trial)}
    cfg.update(suggest_optimizer(trial, ("adamw", "adam", "momentum")))
    cfg["batch_size"] = trial.suggest_categorical("batch_size", [32, 64, 128])
    cfg["augment"] = trial.suggest_categorical("augment", ["none", "light"])
    if method == "adapters":
        cfg["reduction"] = trial.suggest_categorical("reduction", [4, 8, 16])
    if method == "prefix_tuning":
        cfg["prompts"] = trial.suggest_categorical("prompts", [4, 8, 16])
    return cfg


# torch loads with the first fit, not with the listing
harness_fit, harness_evaluate = lazy_hooks("harness_plugins.transfer.training")
