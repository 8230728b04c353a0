"""Focal loss (Lin et al., 2017) as a harness method: a network from its configuration, trained by the
shared loop with a custom loss, with on-device augmentation for images, scored by its softmax."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import MethodInfo, hookimpl
from harness.toolkit.augment import augment_from_config
from harness.toolkit.models import network_from_config
from harness.toolkit.train import TrainConfig, predict_proba, suggest_optimizer, train, val_accuracy


def focal_loss(logits: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    """Cross-entropy scaled by (1 − p_y)^γ, so well-classified examples count less; γ = 0 is plain CE."""
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, y[:, None]).squeeze(1)
    return (-((1 - log_p.exp()) ** gamma) * log_p).mean()


# The paper's γ = 2, as Optuna parameter names (the names given to trial.suggest_*). An MLP suits both
# task kinds; a method whose best default differs by kind gives a callable instead:
# defaults=lambda task: {...} (see harness.info.MethodInfo).
DEFAULTS = {"model": "mlp", "hidden": 256, "gamma": 2.0, "optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-4,
            "augment": "none"}


@hookimpl
def harness_methods():
    return [MethodInfo("focal", ("image", "tabular"), "cross-entropy down-weighting easy examples by (1 − p)^γ",
                       citation="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017", defaults=DEFAULTS)]


@hookimpl
def harness_search_space(method, trial, task):
    config = {"model": trial.suggest_categorical("model", ["cnn", "mlp"] if task.kind == "image" else ["mlp"]),
              "gamma": trial.suggest_float("gamma", 0.0, 5.0),
              **suggest_optimizer(trial, ("adamw", "momentum"))}
    if config["model"] == "mlp":
        config["hidden"] = trial.suggest_categorical("hidden", [128, 256])
    if task.kind == "image":
        config["augment"] = trial.suggest_categorical("augment", ["none", "light"])
    return config


@hookimpl
def harness_fit(method, task, config, ctx):
    model = network_from_config(config, task)            # mlp / cnn / timm:<arch> from the config's keys
    x, y = task.train.x, task.train.y                    # resident on ctx.device; batches are index slices
    augment = augment_from_config(config.get("augment", "none"), task.meta.get("hflip", False))

    def step(idx: torch.Tensor, progress: float) -> torch.Tensor:  # the loss of one batch: any loss you like
        xb = x[idx] if augment is None else augment(x[idx])
        return focal_loss(model(xb), y[idx], config["gamma"])

    # The shared loop: optimiser and schedule from the config, AMP, pruning reports, early stopping,
    # best-weight restoring on val accuracy, throughput counting.
    train(model, step, len(x), TrainConfig.from_config(config, ctx), ctx,
          val_fn=lambda: val_accuracy(model, task.val, ctx))
    return model


@hookimpl
def harness_evaluate(method, fitted, split, ctx):
    return predict_proba(fitted, split.x, ctx)           # softmax, eval mode, batched: N × K
