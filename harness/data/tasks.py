"""Build a :class:`Task` from a data-set name: load, split, standardise, apply a label budget."""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F

from harness.errors import DataError
from harness.info import DatasetRequest, RawDataset
from harness.data.splits import label_budget, stratified_split
from harness.task import Split, Task

_RAW_CACHE: dict[tuple, RawDataset] = {}
_LABEL_KEYS = ("y", "train_mask", "val_mask", "test_mask")


def load_raw(registry, spec: str, options: dict[str, Any] | None = None, root: str | None = None) -> RawDataset:
    """Load a data set by name through the plugin that provides it (cached per process)."""
    info, arg = registry.dataset(spec)
    options = dict(options or {})
    if info.options is not None:
        unknown = sorted(set(options) - set(info.options))
        if unknown:
            takes = ", ".join(("classes", *info.options))
            raise DataError(f"data set {spec!r} has no option {unknown[0]!r} (its options: {takes})")
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

    Splits are stratified and drawn from ``data_seed`` unless the data set fixes them. The option
    ``classes`` (a list, or a string such as ``"5-9"`` or ``"0,2,4"``) keeps only those classes,
    relabelled 0.. in the order given, before splitting. Tabular
    features are standardised with train statistics only; graph features are left as loaded and the
    graph loses any labels or split masks its loader left on it. With a label budget, train keeps the
    labelled examples and the rest of train becomes ``task.unlabeled`` with labels hidden.
    """
    options = dict(options or {})
    classes = options.pop("classes", None)
    raw = load_raw(registry, spec, options, root)
    if classes is not None:
        raw = select_classes(raw, classes, spec)
    y = raw.y.long()
    num_classes = int(y.max().item()) + 1
    idx = raw.splits or stratified_split(y, val_frac, test_frac, data_seed)
    x = raw.x.float()
    if raw.kind == "tabular":
        mean = x[idx["train"]].mean(0)
        std = x[idx["train"]].std(0).clamp_min(1e-6)
        x = (x - mean) / std
    graph = raw.graph
    if graph is not None and any(k in graph for k in _LABEL_KEYS):
        # A graph handed to methods carries structure and features only: labels reach them via splits.
        graph = graph.clone()
        for key in _LABEL_KEYS:
            if key in graph:
                del graph[key]

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
        graph=graph,
        class_names=raw.class_names or tuple(str(i) for i in range(num_classes)),
        meta={**meta, "data_seed": data_seed, "hflip": raw.hflip},
    )
    return task.to(device)


def parse_classes(classes: Any) -> list[int]:
    """``[5, 6, 7]``, ``"5-9"``, ``"0,2,4"`` or ``"0-2,7"`` → a list of distinct class ids."""
    if isinstance(classes, str):
        out: list[int] = []
        try:
            for part in classes.split(","):
                lo, sep, hi = part.strip().partition("-")
                out += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
        except ValueError:
            raise DataError(f"cannot read classes {classes!r}: use a list or a string like '0-4' or '0,2,4'") from None
    elif isinstance(classes, (list, tuple)) and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        out = list(classes)
    else:
        raise DataError(f"classes must be a list of integers or a string like '0-4', got {classes!r}")
    if not out or len(set(out)) != len(out):
        raise DataError(f"classes {classes!r} must name at least one class, each once")
    return out


def select_classes(raw: RawDataset, classes: Any, spec: str = "data set") -> RawDataset:
    """The examples of ``classes`` only, relabelled 0.. in the order given (a class-subset task,
    e.g. the source or target half of a transfer pair)."""
    wanted = parse_classes(classes)
    if raw.graph is not None:
        raise DataError(f"{spec}: a class subset of a graph data set is not supported")
    present = set(raw.y.unique().tolist())
    missing = [c for c in wanted if c not in present]
    if missing:
        raise DataError(f"{spec} has no class {missing[0]} (classes: {sorted(present)})")
    relabel = torch.full((int(raw.y.max()) + 1,), -1, dtype=torch.long)
    relabel[torch.tensor(wanted)] = torch.arange(len(wanted))
    new_y = relabel[raw.y.long()]
    keep = torch.nonzero(new_y >= 0).squeeze(1)
    splits = None
    if raw.splits is not None:
        position = torch.full((len(raw.y),), -1, dtype=torch.long)
        position[keep] = torch.arange(len(keep))
        splits = {k: position[v][position[v] >= 0] for k, v in raw.splits.items()}
    names = tuple(raw.class_names[c] for c in wanted) if raw.class_names else tuple(map(str, wanted))
    return dataclasses.replace(raw, x=raw.x[keep], y=new_y[keep], class_names=names, splits=splits,
                               meta={**raw.meta, "classes": wanted})


def load_related_task(spec: str, like: Task, *, classes: Any = None, registry=None) -> Task:
    """Another data set prepared for use beside ``like``: same data seed and device, images resized
    to ``like``'s size. How a method that pre-trains on a source task gets that task."""
    from harness.plugins import load_plugins

    registry = registry or load_plugins()
    task = load_task(registry, spec, options={"classes": classes} if classes is not None else None,
                     data_seed=int(like.meta.get("data_seed", 0)), device=like.device)
    if task.kind != like.kind:
        raise DataError(f"{spec} is a {task.kind} data set, but the task it should serve is {like.kind}")
    if task.kind == "image" and task.input_shape != like.input_shape:
        if task.input_shape[0] != like.input_shape[0]:
            raise DataError(f"{spec} has {task.input_shape[0]} channels, the target task {like.input_shape[0]}")
        size = tuple(like.input_shape[1:])

        def resize(s: Split | None) -> Split | None:
            if s is None:
                return None
            return Split(F.interpolate(s.x, size=size, mode="area"), s.y, s.index)

        task = dataclasses.replace(task, train=resize(task.train), val=resize(task.val), test=resize(task.test),
                                   unlabeled=resize(task.unlabeled), input_shape=like.input_shape)
    return task
