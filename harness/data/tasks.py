"""Build a :class:`Task` from a data-set name: load, split, standardise, apply a label budget."""
from __future__ import annotations

from typing import Any

import torch

from harness.errors import DataError
from harness.info import DatasetRequest, RawDataset
from harness.data.splits import label_budget, stratified_split
from harness.task import Split, Task

_RAW_CACHE: dict[tuple, RawDataset] = {}


def load_raw(registry, spec: str, options: dict[str, Any] | None = None, root: str | None = None) -> RawDataset:
    """Load a data set by name through the plugin that provides it (cached per process)."""
    info, arg = registry.dataset(spec)
    options = dict(options or {})
    key = (spec, tuple(sorted((k, str(v)) for k, v in options.items())), root)
    if key not in _RAW_CACHE:
        request = DatasetRequest(name=info.name, argument=arg, options=options,
                                 **({"root": root} if root else {}))
        raw = info.load(request)
        if not isinstance(raw, RawDataset):
            raise DataError(f"data set {spec!r}: its loader returned {type(raw).__name__}, not a RawDataset")
        if raw.y.ndim != 1 or raw.x.shape[0] != raw.y.shape[0]:
            raise DataError(f"data set {spec!r}: {raw.x.shape[0]} inputs but {raw.y.shape[0]} labels")
        _RAW_CACHE[key] = raw
    return _RAW_CACHE[key]


def load_task(
    registry,
    spec: str,
    *,
    options: dict[str, Any] | None = None,
    data_seed: int = 0,
    val_frac: float = 0.2,
    test_frac: float = 0.2,
    labels_per_class: int | None = None,
    label_fraction: float | None = None,
    device: torch.device | str = "cpu",
    root: str | None = None,
) -> Task:
    """The task for ``spec`` with its fixed splits, on ``device``.

    Splits are stratified and drawn from ``data_seed`` unless the data set fixes them. Tabular
    features are standardised with train statistics only. With a label budget, train keeps the
    labelled examples and the rest of train becomes ``task.unlabeled`` with labels hidden.
    """
    raw = load_raw(registry, spec, options, root)
    y = raw.y.long()
    num_classes = int(y.max().item()) + 1
    idx = raw.splits or stratified_split(y, val_frac, test_frac, data_seed)
    x = raw.x.float()
    if raw.kind == "tabular":
        mean = x[idx["train"]].mean(0)
        std = x[idx["train"]].std(0).clamp_min(1e-6)
        x = (x - mean) / std

    def split(positions: torch.Tensor, labelled: bool = True) -> Split:
        return Split(x[positions], y[positions] if labelled else None, positions)

    train_pos = idx["train"]
    unlabeled = None
    meta = dict(raw.meta)
    if labels_per_class is not None or label_fraction is not None:
        keep, rest = label_budget(y[train_pos], labels_per_class, label_fraction, data_seed)
        unlabeled = split(train_pos[rest], labelled=False)
        train_pos = train_pos[keep]
        meta["label_budget"] = (
            f"{labels_per_class} per class" if labels_per_class is not None else f"{label_fraction:g} of train"
        )
    task = Task(
        name=spec,
        kind=raw.kind,
        num_classes=num_classes,
        input_shape=tuple(x.shape[1:]),
        train=split(train_pos),
        val=split(idx["val"]),
        test=split(idx["test"]),
        unlabeled=unlabeled,
        graph=raw.graph,
        class_names=raw.class_names or tuple(str(i) for i in range(num_classes)),
        meta={**meta, "data_seed": data_seed, "hflip": raw.hflip},
    )
    return task.to(device)
