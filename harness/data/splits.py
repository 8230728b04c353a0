"""Fixed stratified splits and per-class label budgets, both drawn from the data seed."""
from __future__ import annotations

import numpy as np
import torch

from harness.errors import ConfigError, DataError


def stratified_split(
    y: torch.Tensor, val_frac: float, test_frac: float, seed: int
) -> dict[str, torch.Tensor]:
    """Train / val / test index tensors with class proportions kept, fixed by ``seed``."""
    from sklearn.model_selection import train_test_split  # scikit-learn loads when a split is drawn

    if not (0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 1):
        raise ConfigError(f"split fractions val={val_frac}, test={test_frac} must be in (0, 1) and sum below 1")
    labels = y.cpu().numpy()
    idx = np.arange(len(labels))
    counts = np.bincount(labels)
    if (counts[counts > 0] < 3).any():
        raise DataError("every class needs at least 3 examples for a stratified train/val/test split")
    try:
        rest, test = train_test_split(idx, test_size=test_frac, stratify=labels, random_state=seed)
        train, val = train_test_split(
            rest, test_size=val_frac / (1 - test_frac), stratify=labels[rest], random_state=seed + 1
        )
    except ValueError as exc:
        raise DataError(f"cannot split the data set: {exc}") from None
    return {k: torch.as_tensor(np.sort(v)) for k, v in (("train", train), ("val", val), ("test", test))}


def label_budget(
    y: torch.Tensor, per_class: int | None, fraction: float | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split train positions into (labelled, unlabelled).

    ``per_class`` keeps that many labels in every class; ``fraction`` keeps that share of each
    class (at least one). The draw depends only on ``seed`` and the labels, so every method and
    every resume sees the same labelled subset.
    """
    if (per_class is None) == (fraction is None):
        raise ConfigError("give exactly one of labels_per_class and label_fraction")
    labels = y.cpu().numpy()
    rng = np.random.default_rng(seed)
    labelled = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if per_class is not None:
            if per_class <= 0:
                raise ConfigError(f"labels per class must be positive, got {per_class}")
            if per_class > len(members):
                raise ConfigError(
                    f"labels per class {per_class} exceeds the {len(members)} training examples of class {c}"
                )
            k = per_class
        else:
            if not 0 < fraction <= 1:
                raise ConfigError(f"label fraction must be in (0, 1], got {fraction}")
            k = max(1, int(round(fraction * len(members))))
        labelled.append(rng.choice(members, size=k, replace=False))
    keep = np.sort(np.concatenate(labelled))
    rest = np.setdiff1d(np.arange(len(labels)), keep)
    return torch.as_tensor(keep), torch.as_tensor(rest)
