"""Graph data sets for node classification: Planetoid citation graphs (Cora, CiteSeer, PubMed).

* ``cora``: the vendored Cora files with the public Planetoid split (140 train / 500 val / 1000 test).
* ``planetoid:DIR`` or ``planetoid:DIR:NAME``: any folder of Planetoid files
  ``ind.NAME.{x,tx,allx,y,ty,ally,graph,test.index}``, read locally with the same public split
  (the name is inferred from the files when the folder holds one data set).
* ``pyg:NAME``: a PyG data set by class or Planetoid name (``pyg:CiteSeer``), downloaded by PyG into
  ``root`` where there is a network; its masks give the splits when it has them.

Every loader returns node features as ``x`` and a PyG ``Data`` holding the same features and
``edge_index`` but no labels, so a method can only see labels through the task's splits.
"""
from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from harness.errors import DataError
from harness.hookspecs import hookimpl
from harness.info import DatasetInfo, DatasetRequest, RawDataset

if TYPE_CHECKING:
    import torch

PLANETOID_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
PLANETOID_NAMES = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
_SOURCE = "Planetoid (Yang, Cohen, Salakhutdinov, ICML 2016), public split"


def import_pyg() -> ModuleType:
    """``torch_geometric``, imported with its import-time deprecation warnings (torch.jit.script)
    silenced: they are PyG's business, not the user's, and would break one-line CLI errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import torch_geometric
        import torch_geometric.datasets
        import torch_geometric.io
        import torch_geometric.nn
    return torch_geometric


def _graph_dataset(data: Any, splits: dict[str, torch.Tensor] | None, meta: dict[str, Any]) -> RawDataset:
    """A RawDataset from a PyG ``Data`` with labels ``y``: the graph handed on keeps only x and edges."""
    Data = import_pyg().data.Data
    if getattr(data, "y", None) is None or data.x is None:
        raise DataError(f"{meta.get('source', 'graph data')} has no node features or no node labels")
    x = data.x.to_dense().float() if data.x.is_sparse else data.x.float()
    y = data.y.long().view(-1)
    graph = Data(x=x, edge_index=data.edge_index.long(), num_nodes=x.shape[0])
    meta = {**meta, "nodes": int(x.shape[0]), "edges": int(data.edge_index.shape[1]), "features": int(x.shape[1])}
    return RawDataset(x=x, y=y, kind="graph", class_names=tuple(str(c) for c in range(int(y.max()) + 1)),
                      splits=splits, graph=graph, meta=meta)


def _mask_splits(data: Any) -> dict[str, torch.Tensor] | None:
    """Node ids of the train/val/test masks (the first column where a data set ships several)."""
    masks = {s: getattr(data, f"{s}_mask", None) for s in ("train", "val", "test")}
    if any(m is None for m in masks.values()):
        return None
    return {s: (m[:, 0] if m.dim() > 1 else m).nonzero().view(-1) for s, m in masks.items()}


def read_planetoid(folder: Path, name: str | None = None) -> RawDataset:
    """Read the Planetoid files of ``name`` in ``folder`` (the one data set there when no name is given)."""
    read_planetoid_data = import_pyg().io.read_planetoid_data

    if not folder.is_dir():
        raise DataError(f"Planetoid folder not found: {folder}")
    if name is None:
        found = sorted({p.name.split(".")[1] for p in folder.glob("ind.*.*")})
        if not found:
            raise DataError(f"no Planetoid files ind.<name>.* in {folder}")
        if len(found) > 1:
            raise DataError(f"{folder} holds several Planetoid data sets ({', '.join(found)}): "
                            f"name one as planetoid:{folder}:<name>")
        name = found[0]
    name = name.lower()
    for part in PLANETOID_PARTS:
        if not (folder / f"ind.{name}.{part}").is_file():
            raise DataError(f"Planetoid folder {folder} lacks the file ind.{name}.{part}")
    try:
        data = read_planetoid_data(str(folder), name)
    except Exception as exc:
        raise DataError(f"cannot read Planetoid {name!r} in {folder}: {' '.join(str(exc).split())}") from None
    return _graph_dataset(data, _mask_splits(data), {
        "source": f"{_SOURCE}: {PLANETOID_NAMES.get(name, name)} from {folder}", "graph_name": name,
    })


def _cora(request: DatasetRequest) -> RawDataset:
    folder = resources.files("harness.data") / "_data" / "planetoid"
    with resources.as_file(folder) as path:
        raw = read_planetoid(Path(path), "cora")
    raw.meta.update(source=f"{_SOURCE}: Cora, vendored; see harness/data/_data/PROVENANCE.md", licence="MIT")
    return raw


def _planetoid_dir(request: DatasetRequest) -> RawDataset:
    arg = request.argument or ""
    if not arg:
        raise DataError("planetoid needs a folder: planetoid:path/to/dir or planetoid:path/to/dir:name")
    folder, name = Path(arg).expanduser(), None
    head, sep, tail = arg.rpartition(":")
    if sep and tail and "/" not in tail and not folder.is_dir():
        folder, name = Path(head).expanduser(), tail
    return read_planetoid(folder, name)


def _pyg(request: DatasetRequest) -> RawDataset:
    """A PyG data set by name: Planetoid names through ``Planetoid``, any other class by its name."""
    pyg_datasets = import_pyg().datasets
    name = request.argument or ""
    root = Path(request.root).expanduser() / "pyg"
    try:
        if name.lower() in PLANETOID_NAMES:
            ds = pyg_datasets.Planetoid(str(root), PLANETOID_NAMES[name.lower()])
        else:
            cls = getattr(pyg_datasets, name, None)
            if not isinstance(cls, type):
                raise DataError(f"torch_geometric.datasets has no data set {name!r}")
            ds = cls(str(root / name))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"cannot load PyG data set {name!r}: {' '.join(str(exc).split())}") from None
    if len(ds) != 1:
        raise DataError(f"PyG data set {name!r} holds {len(ds)} graphs; node classification needs one")
    return _graph_dataset(ds[0], _mask_splits(ds[0]), {"source": f"torch_geometric.datasets {name}"})


@hookimpl
def harness_datasets() -> list[DatasetInfo]:
    return [
        DatasetInfo("cora", "graph", "Cora citation graph (2708 papers, 7 classes), public split 140/500/1000 (vendored)",
                    _cora, source="Planetoid, MIT", options=()),
        DatasetInfo("planetoid", "graph", "a folder of Planetoid files: planetoid:path/to/dir[:name]",
                    _planetoid_dir, takes_argument=True, source="Planetoid"),
        DatasetInfo("pyg", "graph", "a PyG node-classification data set by name (downloads): pyg:CiteSeer",
                    _pyg, takes_argument=True, source="torch_geometric.datasets"),
    ]
