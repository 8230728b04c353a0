"""Two metrics a third party adds through ``harness_metrics``: AUROC for binary tasks and top-2
accuracy for tasks with three or more classes (each left out where it does not apply)."""
from __future__ import annotations

import torch
from sklearn.metrics import roc_auc_score

from harness import hookimpl
from harness.metrics import Metric


def auroc(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float(roc_auc_score(labels.numpy(), probs[:, 1].numpy()))


def top2_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    top2 = probs.topk(2, dim=1).indices
    return (top2 == labels[:, None]).any(1).double().mean().item()


@hookimpl
def harness_metrics():
    return [
        Metric(name="auroc", fn=auroc, higher_is_better=True, label="AUROC", digits=3,
               description="area under the ROC curve of the positive class's probability",
               applies=lambda num_classes: num_classes == 2),
        Metric(name="top2_accuracy", fn=top2_accuracy, higher_is_better=True, label="top-2 accuracy", scale=100.0,
               digits=1, unit="%", description="share of examples whose label is among the two most probable classes",
               applies=lambda num_classes: num_classes >= 3),
    ]
