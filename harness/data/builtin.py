"""The built-in data sets, provided through the same ``harness_datasets`` hook as any plugin's."""
from __future__ import annotations

import gzip
import inspect
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import DataError
from harness.hookspecs import hookimpl
from harness.info import DatasetInfo, DatasetRequest, RawDataset

if TYPE_CHECKING:
    import pandas as pd

# numpy, pandas and torch are imported by each loader: listing the data sets must not load them.
_SKLEARN_SETS = {
    "digits": ("image", "scikit-learn digits: 1797 8×8 grey images of handwritten digits, 10 classes"),
    "iris": ("tabular", "scikit-learn iris: 150 flowers, 4 features, 3 classes"),
    "wine": ("tabular", "scikit-learn wine: 178 wines, 13 features, 3 classes"),
    "breast_cancer": ("tabular", "scikit-learn breast cancer Wisconsin: 569 cases, 30 features, 2 classes"),
}


def _sklearn(request: DatasetRequest) -> RawDataset:
    import torch
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{request.name}")()
    x = torch.as_tensor(bunch.data, dtype=torch.float32)
    if request.name == "digits":
        x = (x / 16.0).reshape(-1, 1, 8, 8)  # pixel counts 0..16 → [0, 1] images
    names = tuple(str(n) for n in getattr(bunch, "target_names", ()))
    return RawDataset(
        x=x, y=torch.as_tensor(bunch.target, dtype=torch.long), kind=_SKLEARN_SETS[request.name][0],
        class_names=names, meta={"source": f"sklearn.datasets.load_{request.name}"},
    )


def _mnist5k(request: DatasetRequest) -> RawDataset:
    import numpy as np
    import torch

    path = resources.files("harness.data") / "_data" / "mnist_5k.csv.gz"
    with resources.as_file(path) as p, gzip.open(p, "rt") as fh:
        arr = np.loadtxt(fh, delimiter=",", dtype=np.uint8)
    x = torch.as_tensor(arr[:, :784], dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    y = torch.as_tensor(arr[:, 784], dtype=torch.long)
    return RawDataset(
        x=x, y=y, kind="image", class_names=tuple(map(str, range(10))),
        meta={"source": "MNIST-5k (500 per class), vendored; see harness/data/_data/PROVENANCE.md",
              "licence": "CC BY-SA 3.0"},
    )


def _csv(request: DatasetRequest) -> RawDataset:
    import numpy as np
    import pandas as pd
    import torch

    path = Path(request.argument or "").expanduser()
    target = request.options.get("target")
    if not target:
        raise DataError("a CSV data set needs --target COLUMN (or `target:` in the suite)")
    if not path.is_file():
        raise DataError(f"CSV file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except Exception as exc:
        raise DataError(f"cannot read CSV {path}: {' '.join(str(exc).split())}") from None
    if target not in frame.columns:
        raise DataError(f"CSV {path} has no column {target!r} (columns: {', '.join(map(str, frame.columns))})")
    if frame.empty:
        raise DataError(f"CSV {path} has a header but no rows")
    if frame.shape[1] < 2:
        raise DataError(f"CSV {path} has no feature columns besides {target!r}")
    frame = frame.dropna(subset=[target])
    if frame.empty:
        raise DataError(f"CSV {path}: every row lacks a value in the target column {target!r}")
    labels, classes = pd.factorize(frame[target], sort=True)
    if len(classes) < 2:
        raise DataError(f"CSV {path}: the target column {target!r} holds one class only ({str(classes[0])!r}); "
                        "classification needs two or more")
    features = pd.get_dummies(frame.drop(columns=[target]), dummy_na=False, dtype=np.float32)
    if features.shape[1] == 0:
        raise DataError(f"CSV {path} has no feature columns besides {target!r}")
    _check_finite(features, path)
    values = features.to_numpy(dtype=np.float32)
    if np.isnan(values).any():
        col_means = np.nanmean(values, axis=0)
        values = np.where(np.isnan(values), np.nan_to_num(col_means), values)
    return RawDataset(
        x=torch.as_tensor(values), y=torch.as_tensor(labels, dtype=torch.long), kind="tabular",
        class_names=tuple(map(str, classes)), meta={"source": f"csv {path.name}", "target": target},
    )


# Features beyond this magnitude overflow float32 once squared (standardising, distances): refused.
_LARGEST = 1e18


def _check_finite(features: pd.DataFrame, path: Path) -> None:
    """Refuse ±inf and values too large for float32 arithmetic, naming the column and the row (NaN
    is a missing value and is filled with the column mean)."""
    import numpy as np

    values = features.to_numpy(dtype=np.float64)
    bad = np.isinf(values) | (np.abs(np.nan_to_num(values)) > _LARGEST)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise DataError(f"CSV {path}: column {features.columns[col]!r}, data row {int(features.index[row]) + 1} holds {float(values[row, col])!r}; "
                        f"features must be finite and within ±{_LARGEST:g}")


def _torchvision(request: DatasetRequest) -> RawDataset:
    """Any torchvision classification data set by class name (``tv:MNIST``, ``tv:CIFAR10``).

    Downloads into ``root`` where there is a network (``download: false`` to forbid it); train and
    test parts are pooled and re-split by the core so every data set follows the same protocol.
    ``max_examples`` caps the size. ``tv:FakeData`` needs no files at all.
    """
    import torch
    import torchvision
    from torchvision.transforms.functional import pil_to_tensor

    name = request.argument or ""
    cls = getattr(torchvision.datasets, name, None)
    if cls is None or not inspect.isclass(cls):
        raise DataError(f"torchvision has no data set {name!r}")
    opts = dict(request.options)
    cap = int(opts.pop("max_examples", 0)) or None
    opts.pop("target", None)
    root = Path(request.root).expanduser() / "torchvision"
    params = inspect.signature(cls).parameters
    kwargs = {}
    if "root" in params:
        kwargs["root"] = str(root)
    if "download" in params:
        kwargs["download"] = bool(opts.pop("download", True))
    if name == "FakeData":
        kwargs.update(size=int(opts.pop("size", 200)), image_size=tuple(opts.pop("image_size", (1, 16, 16))),
                      num_classes=int(opts.pop("num_classes", 4)), random_offset=int(opts.pop("random_offset", 0)))
    kwargs.update(opts)
    parts = [{"train": True}, {"train": False}] if "train" in params else [{}]
    xs, ys = [], []
    for part in parts:
        try:
            ds = cls(**kwargs, **part)
        except Exception as exc:
            raise DataError(f"cannot load torchvision {name}: {' '.join(str(exc).split())}") from None
        n = len(ds) if cap is None else min(len(ds), cap - sum(len(t) for t in ys))
        for i in range(n):
            img, label = ds[i]
            t = img if isinstance(img, torch.Tensor) else pil_to_tensor(img)
            xs.append(t.float() / (255.0 if t.dtype == torch.uint8 else 1.0))
            ys.append(torch.tensor([int(label)]))
    if not xs:
        raise DataError(f"torchvision {name} is empty")
    x = torch.stack(xs)
    if x.max() > 1.0:
        x = x / 255.0
    y = torch.cat(ys)
    if y.min() < 0:
        raise DataError(f"torchvision {name} has negative labels")
    return RawDataset(x=x, y=y, kind="image", class_names=tuple(getattr(ds, "classes", ()) or ()),
                      hflip=name not in {"MNIST", "FashionMNIST", "KMNIST", "EMNIST", "SVHN", "FakeData"},
                      meta={"source": f"torchvision.datasets.{name}"})


@hookimpl
def harness_datasets() -> list[DatasetInfo]:
    out = [
        DatasetInfo(name, kind, desc, _sklearn, source="scikit-learn", options=())
        for name, (kind, desc) in _SKLEARN_SETS.items()
    ]
    out += [
        DatasetInfo("mnist5k", "image", "MNIST-5k: 5000 real 28×28 MNIST digits, 500 a class (vendored)",
                    _mnist5k, source="MNIST (LeCun, Cortes, Burges), CC BY-SA 3.0", options=()),
        DatasetInfo("csv", "tabular", "a CSV file: csv:path/to/file.csv with --target COLUMN",
                    _csv, takes_argument=True, options=("target",)),
        DatasetInfo("tv", "image", "a torchvision data set by class name: tv:MNIST, tv:CIFAR10, tv:FakeData",
                    _torchvision, takes_argument=True, source="torchvision.datasets"),
    ]
    return out
