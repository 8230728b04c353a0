"""The network registry: ``create_model("cnn", task)``, ``create_model("timm:resnet18", task)``.

Every model is a :class:`Classifier`: an ``encoder`` that maps inputs to a feature vector of size
``feature_dim`` and a linear ``head``. Methods that pre-train, probe or adapt encoders rely on that
split; everything else just calls the model.
"""
from __future__ import annotations

import fnmatch
from typing import Callable

from torch import nn

from harness.errors import ConfigError
from harness.task import Task
from harness.toolkit.models.classifier import Classifier

_REGISTRY: dict[str, Callable[..., Classifier]] = {}


def register_model(name: str):
    """Decorator adding a builder ``fn(task, **kwargs) -> Classifier`` under ``name``."""

    def deco(fn):
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def model_arguments(name: str) -> set[str]:
    """The keyword arguments the registered network ``name`` takes (a configuration may pin any of
    them); empty for ``timm:`` names and unknown names."""
    import inspect

    builder = _REGISTRY.get(name)
    if builder is None:
        return set()
    return {p.name for p in list(inspect.signature(builder).parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def create_model(name: str, task: Task, **kwargs) -> Classifier:
    """Build the model ``name`` for ``task``. ``timm:<arch>`` builds any timm model (not pretrained
    unless ``pretrained=True``, which needs timm's weights in the local cache)."""
    if name.startswith("timm:"):
        from harness.toolkit.models.timm_backbone import create_timm

        return create_timm(name[5:], task, **kwargs)
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r} (known: {', '.join(list_models())}, timm:<name>)") from None
    return builder(task, **kwargs)


def network_from_config(config: dict, task: Task, default: str = "mlp") -> Classifier:
    """The network a method's configuration names, read the same way by every method: ``model``
    (``mlp``, ``cnn``, ``cnn3``, ``lenet`` or ``timm:<arch>``), ``batchnorm``, ``dropout``, the MLP's
    and LeNet's ``hidden``, the CNNs' ``width``, ``cnn``'s ``stages``, a ViT's ``patch_size``,
    ``depth`` (blocks), ``embed_dim`` (width), ``num_heads`` and ``global_pool`` (``token``, ``avg``),
    and ``pretrained`` (timm weights from the local hub cache; nothing is downloaded unless the
    environment allows)."""
    name = config.get("model", default)
    if name.startswith("timm:"):
        extra = {k: int(config[k]) for k in ("patch_size", "depth", "embed_dim", "num_heads") if config.get(k)}
        if config.get("global_pool"):
            extra["global_pool"] = str(config["global_pool"])
        return create_model(name, task, pretrained=bool(config.get("pretrained", False)), **extra)
    kwargs = {"batchnorm": bool(config.get("batchnorm", True)), "dropout": float(config.get("dropout", 0.0))}
    if name == "mlp":
        kwargs["hidden"] = int(config.get("hidden", 256))
    elif name in ("cnn", "cnn3", "conv4"):
        kwargs["width"] = int(config.get("width", 32))
        if name == "cnn" and config.get("stages"):
            kwargs["stages"] = int(config["stages"])
    elif name == "lenet":
        kwargs["width"] = int(config.get("width", 32))
        kwargs["hidden"] = int(config.get("hidden", 128))
    else:
        kwargs = {}
    return create_model(name, task, **kwargs)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in module.parameters())
    return total, sum(p.numel() for p in module.parameters() if p.requires_grad)
