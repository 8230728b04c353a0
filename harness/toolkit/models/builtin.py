"""Small networks for the embedded data sets: an MLP for any input and a BatchNorm CNN for images."""
from __future__ import annotations

import math

from torch import nn

from harness.task import Task
from harness.toolkit.models.registry import register_model
from harness.toolkit.models.classifier import Classifier


def _norm1d(width: int, batchnorm: bool) -> nn.Module:
    return nn.BatchNorm1d(width) if batchnorm else nn.Identity()


@register_model("mlp")
def mlp(task: Task, hidden: int = 256, depth: int = 2, dropout: float = 0.0, batchnorm: bool = True) -> Classifier:
    """``depth`` hidden layers of ``hidden`` units (Linear → BatchNorm → ReLU → Dropout)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(task.input_shape)
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), _norm1d(hidden, batchnorm), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    return Classifier(nn.Sequential(*layers), width, task.num_classes)


def _conv_block(c_in: int, c_out: int, batchnorm: bool, kernel: int = 3) -> list[nn.Module]:
    """A same-size convolution (no bias under BatchNorm), BatchNorm when asked, ReLU."""
    return [
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=not batchnorm),
        nn.BatchNorm2d(c_out) if batchnorm else nn.Identity(),
        nn.ReLU(inplace=True),
    ]


@register_model("cnn")
def cnn(task: Task, width: int = 32, batchnorm: bool = True, dropout: float = 0.0, stages: int | None = None) -> Classifier:
    """Stages of two 3×3 convolutions, each halving the resolution (VGG-style), then global
    average pooling. The number of stages follows the image size (2 for 8×8, 3 for 28×28)."""
    if task.kind != "image":
        raise ValueError("the cnn model needs an image task; use mlp for tabular data")
    channels, size = task.input_shape[0], min(task.input_shape[1:])
    stages = stages or max(1, min(4, int(math.log2(size)) - 2))
    layers: list[nn.Module] = []
    c = channels
    for s in range(stages):
        c_out = width * 2**s
        layers += _conv_block(c, c_out, batchnorm) + _conv_block(c_out, c_out, batchnorm)
        if s < stages - 1:
            layers.append(nn.MaxPool2d(2))
        c = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout)]
    return Classifier(nn.Sequential(*layers), c, task.num_classes)


@register_model("lenet")
def lenet(task: Task, width: int = 32, hidden: int = 128, batchnorm: bool = False, dropout: float = 0.0) -> Classifier:
    """LeNet-5-style: two 5×5 convolutions (``width``, ``2·width`` channels), each followed by 2×2
    max pooling, then a fully connected layer of ``hidden`` units. The network used for MNIST in the
    uncertainty literature (Ovadia et al., 2019); unlike :func:`cnn`'s global average pooling its
    dense layer keeps where a stroke is, which is what rotations and dropout act on."""
    if task.kind != "image":
        raise ValueError("the lenet model needs an image task; use mlp for tabular data")
    channels, h, w = task.input_shape
    layers: list[nn.Module] = []
    c = channels
    for c_out in (width, 2 * width):
        layers += _conv_block(c, c_out, batchnorm, kernel=5) + [nn.MaxPool2d(2)]
        c, h, w = c_out, h // 2, w // 2
    layers += [nn.Flatten(), nn.Linear(c * h * w, hidden), _norm1d(hidden, batchnorm), nn.ReLU(inplace=True),
               nn.Dropout(dropout)]
    return Classifier(nn.Sequential(*layers), hidden, task.num_classes)


@register_model("cnn3")
def _cnn3(task: Task, **kwargs) -> Classifier:
    """The built-in CNN with three stages at any image size: at width 16 a 64-feature encoder for
    28×28 images that costs less than two stages at width 32 (for pre-training on a CPU budget)."""
    return cnn(task, **{**kwargs, "stages": 3})


@register_model("conv4")
def conv4(task: Task, width: int = 32, batchnorm: bool = True, dropout: float = 0.0) -> Classifier:
    """The few-shot literature's Conv-4 (Vinyals et al. 2016; Snell et al. 2017): four blocks of a
    3×3 convolution of ``width`` channels, BatchNorm, ReLU and 2×2 max pooling (pooling stops at
    1×1 on small images), then global average pooling: ``width`` features, cheap on a CPU."""
    if task.kind != "image":
        raise ValueError("the conv4 model needs an image task; use mlp for tabular data")
    size = min(task.input_shape[1:])
    layers: list[nn.Module] = []
    c = task.input_shape[0]
    for _ in range(4):
        layers += _conv_block(c, width, batchnorm)
        if size >= 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        c = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout)]
    return Classifier(nn.Sequential(*layers), width, task.num_classes)
