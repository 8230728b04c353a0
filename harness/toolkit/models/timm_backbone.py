"""timm backbones as :class:`Classifier` encoders."""
from __future__ import annotations

import torch
from torch import nn

from harness.errors import ConfigError
from harness.task import Task
from harness.toolkit.models.classifier import Classifier


def create_timm(arch: str, task: Task, pretrained: bool = False, **kwargs) -> Classifier:
    """A timm model with its classifier removed (``num_classes=0`` gives pooled features).

    Image size and channels follow the task; ViT-style models get ``img_size`` so they accept
    small images. ``pretrained=True`` loads weights from timm's local cache; nothing is fetched
    unless the user's environment allows it.
    """
    import timm

    if task.kind != "image":
        raise ConfigError(f"timm:{arch} needs an image task")
    if not timm.list_models(arch) and not timm.is_model(arch):
        raise ConfigError(f"timm has no model {arch!r}")
    channels, height, _ = task.input_shape
    extra = dict(kwargs)
    if any(k in arch for k in ("vit", "deit", "swin", "mixer", "beit", "eva")):
        extra.setdefault("img_size", height)
    try:
        encoder = timm.create_model(arch, pretrained=pretrained, num_classes=0, in_chans=channels, **extra)
    except Exception as exc:
        raise ConfigError(f"cannot build timm:{arch}: {' '.join(str(exc).split())}") from None
    with torch.no_grad():
        dim = encoder(torch.zeros(2, *task.input_shape)).shape[-1]
    return Classifier(encoder, int(dim), task.num_classes)


__all__ = ["create_timm", "nn"]
