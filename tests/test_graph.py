"""Graph tasks: Planetoid loading (vendored Cora, any folder by path, PyG by name), the GCN and GAT
methods against the feature-only MLP, and one-line errors for incomplete folders."""
from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import run_cli
from harness.conformance import check_plugin
from harness.context import FitContext, seed_everything
from harness.data import load_task
from harness.data.planetoid import PLANETOID_PARTS
from harness.errors import ConfigError, DataError
from harness.info import DatasetInfo, RawDataset
from harness.metrics import accuracy
from harness_plugins.graph.stopping import LossAccuracyPatience, WindowStopping, stopping_rule

pytest.importorskip("torch_geometric")

VENDORED = Path(str(resources.files("harness.data") / "_data" / "planetoid"))


@pytest.fixture(scope="module")
def cora(registry):
    return load_task(registry, "cora")


@pytest.fixture
def cora_dir(tmp_path) -> Path:
    folder = tmp_path / "cora_files"
    folder.mkdir()
    for part in PLANETOID_PARTS:
        shutil.copy(VENDORED / f"ind.cora.{part}", folder)
    return folder


def _test_accuracy(registry, task, method: str, config: dict, epochs: int) -> float:
    m = registry.methods[method]
    ctx = FitContext(device=torch.device("cpu"), seed=0, epochs=epochs)
    seed_everything(0)
    fitted = m.fit(task.without_test(), config, ctx)
    assert ctx.samples_seen > 0
    return accuracy(m.evaluate(fitted, task.test.without_labels(), ctx), task.test.y)


def test_cora_public_split(cora):
    assert cora.kind == "graph" and cora.num_classes == 7 and cora.input_shape == (1433,)
    assert cora.sizes() == {"n_train": 140, "n_val": 500, "n_test": 1000}
    assert torch.equal(cora.train.index, torch.arange(140))
    assert torch.equal(cora.val.index, torch.arange(140, 640))
    assert torch.equal(cora.train.y.bincount(), torch.full((7,), 20))
    g = cora.graph
    assert g.num_nodes == 2708 and g.edge_index.shape == (2, 10556)
    assert "y" not in g and "train_mask" not in g  # methods see labels only through the splits
    # Bag-of-words features arrive as loaded (binary), not standardised; splits slice the graph's rows.
    assert set(cora.train.x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(g.x[cora.test.index], cora.test.x)


def test_load_task_drops_labels_a_loader_left_on_the_graph():
    from torch_geometric.data import Data

    x, y = torch.rand(30, 4), torch.arange(30) % 3
    leaky = Data(x=x, edge_index=torch.tensor([[0, 1], [1, 0]]), y=y, train_mask=torch.ones(30, dtype=torch.bool))
    splits = {"train": torch.arange(10), "val": torch.arange(10, 20), "test": torch.arange(20, 30)}
    info = DatasetInfo("leaky", "graph", "", lambda req: RawDataset(x=x, y=y, kind="graph", splits=splits, graph=leaky))

    class OneDataset:
        def dataset(self, spec):
            return info, None

    task = load_task(OneDataset(), "leaky")
    assert "y" not in task.graph and "train_mask" not in task.graph and "y" in leaky
    assert torch.equal(task.train.x, x[:10])  # graph features are not standardised


def test_planetoid_folder_by_path_matches_vendored_cora(registry, cora, cora_dir):
    for spec in (f"planetoid:{cora_dir}", f"planetoid:{cora_dir}:cora"):
        task = load_task(registry, spec)
        assert task.sizes() == cora.sizes()
        assert torch.equal(task.test.x, cora.test.x) and torch.equal(task.test.y, cora.test.y)
        assert torch.equal(task.graph.edge_index, cora.graph.edge_index)


def test_pyg_by_name_reads_staged_raw_files_without_download(registry, cora, cora_dir, tmp_path):
    raw = tmp_path / "root" / "pyg" / "Cora" / "raw"
    shutil.copytree(cora_dir, raw)
    task = load_task(registry, "pyg:Cora", root=str(tmp_path / "root"))
    assert task.sizes() == cora.sizes() and torch.equal(task.test.y, cora.test.y)


@pytest.mark.parametrize("missing", PLANETOID_PARTS)
def test_folder_missing_a_file_names_it(registry, cora_dir, missing):
    (cora_dir / f"ind.cora.{missing}").unlink()
    with pytest.raises(DataError, match=f"lacks the file ind.cora.{missing}$"):
        load_task(registry, f"planetoid:{cora_dir}:cora")


def test_folder_missing_a_file_is_one_line_and_exit_2_through_the_cli(cora_dir):
    (cora_dir / "ind.cora.tx").unlink()
    proc = run_cli("run", "gcn", "--dataset", f"planetoid:{cora_dir}", "--no-progress", "--out", str(cora_dir / "o"))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("harness: error:") and "lacks the file ind.cora.tx" in lines[0]


def test_folder_absent_empty_or_with_two_data_sets(registry, cora_dir, tmp_path):
    with pytest.raises(DataError, match="Planetoid folder not found"):
        load_task(registry, f"planetoid:{tmp_path / 'nowhere'}")
    with pytest.raises(DataError, match="no Planetoid files"):
        load_task(registry, f"planetoid:{tmp_path}")
    shutil.copy(cora_dir / "ind.cora.x", cora_dir / "ind.other.x")
    with pytest.raises(DataError, match="several Planetoid data sets .cora, other."):
        load_task(registry, f"planetoid:{cora_dir}")


def test_gcn_and_gat_beat_the_feature_only_mlp(registry, cora):
    mlp = _test_accuracy(registry, cora, "erm", registry.methods["erm"].info.defaults, epochs=20)
    gcn = _test_accuracy(registry, cora, "gcn", registry.methods["gcn"].info.defaults, epochs=60)
    gat = _test_accuracy(registry, cora, "gat", registry.methods["gat"].info.defaults, epochs=60)
    assert mlp > 0.40  # node features alone carry signal: well above chance (1/7)
    assert gcn > mlp + 0.10 and gcn > 0.72, (gcn, mlp)
    assert gat > mlp + 0.10 and gat > 0.72, (gat, mlp)


def test_evaluate_uses_the_features_of_the_split_it_is_given(registry, cora):
    gcn = registry.methods["gcn"]
    ctx = FitContext(device=torch.device("cpu"), seed=0, epochs=3)
    fitted = gcn.fit(cora.without_test(), gcn.info.defaults, ctx)
    clean = gcn.evaluate(fitted, cora.test.without_labels(), ctx)
    blank = gcn.evaluate(fitted, type(cora.test)(torch.zeros_like(cora.test.x), None, cora.test.index), ctx)
    assert clean.shape == (1000, 7) and torch.allclose(clean.sum(1), torch.ones_like(clean[:, 0]))
    assert not torch.allclose(clean, blank)


def test_conformance_check_runs_on_cora(registry):
    reports = check_plugin(registry, "graph", epochs=2)
    assert {r.method for r in reports} == {"gcn", "gat"}
    assert all(r.ok and r.task == "cora" for r in reports), [r.problems for r in reports]


def test_cli_run_on_a_planetoid_folder(cora_dir, tmp_path):
    proc = run_cli("run", "gcn", "--dataset", f"planetoid:{cora_dir}", "--trials", "1", "--seeds", "1",
                   "--epochs", "60", "--no-progress", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(tmp_path / "o" / "summary.csv")
    assert summary.accuracy_mean.item() > 0.70
    assert summary.train_samples_per_s.item() > 0


def _write_planetoid(folder: Path, name: str, n_train: int, n_all: int, test_ids: list[int], dim: int = 6) -> None:
    """A small graph in the Planetoid file format (rows of tx/ty in the order of ``test_ids``): labels
    are node id modulo 3, the edges a ring."""
    import pickle

    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    onehot = lambda ids: np.eye(3)[np.asarray(ids) % 3]  # noqa: E731
    feats = lambda n: sp.csr_matrix((rng.random((n, dim)) < 0.3).astype(np.float32))  # noqa: E731
    parts = {"x": feats(n_train), "allx": feats(n_all), "tx": feats(len(test_ids)),
             "y": onehot(range(n_train)), "ally": onehot(range(n_all)), "ty": onehot(test_ids)}
    nodes = list(range(n_all)) + list(test_ids)
    parts["graph"] = {a: [b] for a, b in zip(nodes, nodes[1:] + nodes[:1])}
    folder.mkdir(parents=True)
    for part, value in parts.items():
        with open(folder / f"ind.{name}.{part}", "wb") as fh:
            pickle.dump(value, fh)
    (folder / f"ind.{name}.test.index").write_text("\n".join(map(str, test_ids)) + "\n")


def test_citeseer_style_folder_pads_isolated_test_nodes(registry, tmp_path):
    # CiteSeer's test ids have gaps (isolated nodes with no features); they get zero rows and no split.
    test_ids = [520 + i for i in range(32) if i not in (5, 17)][::-1]
    _write_planetoid(tmp_path / "cs", "citeseer", n_train=12, n_all=520, test_ids=test_ids)
    task = load_task(registry, f"planetoid:{tmp_path / 'cs'}")
    assert task.graph.num_nodes == 552 and task.sizes() == {"n_train": 12, "n_val": 500, "n_test": 30}
    assert sorted(task.test.index.tolist()) == sorted(test_ids)
    assert torch.equal(task.test.y, task.test.index % 3)
    assert task.graph.x[[525, 537]].abs().sum() == 0


def _decisions(rule, losses, accs=None):
    accs = accs if accs is not None else [0.5] * len(losses)
    return [rule.update(loss, acc) for loss, acc in zip(losses, accs)]


def test_window_stopping_waits_for_the_window_then_compares_with_its_mean():
    # Rising loss from the start: no stop until more than window + 1 = 4 epochs have run.
    stops = [d.stop for d in _decisions(WindowStopping(window=3), [1.0, 1.1, 1.2, 1.3, 1.4])]
    assert stops == [False, False, False, False, True]
    # Loss falling, then one epoch above the mean of the 3 before it (0.6, 0.5, 0.4 → 0.5).
    decisions = _decisions(WindowStopping(window=3), [1.0, 0.8, 0.6, 0.5, 0.4, 0.45, 0.55])
    assert [d.stop for d in decisions] == [False] * 6 + [True]
    assert not any(d.snapshot for d in decisions) and not WindowStopping.restores


def test_loss_accuracy_patience_counts_epochs_improving_neither():
    rule = LossAccuracyPatience(patience=2)
    losses = [1.0, 0.9, 0.95, 0.97, 0.96]
    accs = [0.5, 0.6, 0.7, 0.6, 0.6]
    decisions = _decisions(rule, losses, accs)
    # Epoch 2: loss worse but accuracy best → patience resets, no snapshot (only one of the two).
    assert [d.snapshot for d in decisions] == [True, True, False, False, False]
    assert [d.stop for d in decisions] == [False, False, False, False, True]
    assert LossAccuracyPatience.restores


def test_loss_accuracy_patience_snapshots_only_when_both_match_their_bests_ties_included():
    rule = LossAccuracyPatience(patience=3)
    decisions = _decisions(rule, [1.0, 0.8, 0.8, 0.7, 0.75, 0.9, 0.9, 0.9],
                           [0.5, 0.5, 0.6, 0.55, 0.6, 0.1, 0.1, 0.1])
    assert [d.snapshot for d in decisions] == [True, True, True, False, False, False, False, False]
    # Epoch 3 (loss best) and epoch 4 (accuracy ties the best) each reset the patience.
    assert [d.stop for d in decisions] == [False] * 7 + [True]


def test_unknown_stopping_rule_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown stopping rule 'best'"):
        stopping_rule("best", 10)
