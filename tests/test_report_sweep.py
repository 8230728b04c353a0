"""Training-size sweeps in the report: sweep.csv/md, the paired gaps per size and the page's figure."""
import numpy as np
import pandas as pd
import pytest

from harness.report.pipeline import build
from harness.report.sweep import size_of

SIZES = {"m@10pc": 100, "m@50pc": 500, "m": 3000}


def _rows(gaps=(0.2, 0.05, 0.01), seeds=4):
    """Method ``wide`` ahead of ``narrow`` by ``gaps`` at the three sizes, with seed noise."""
    rng = np.random.default_rng(0)
    rows = []
    for (ds, n), gap in zip(SIZES.items(), gaps):
        for method, shift in (("wide", gap), ("narrow", 0.0)):
            for seed in range(seeds):
                rows.append(dict(dataset=ds, method=method, seed=seed, status="ok", n_train=n,
                                 accuracy=0.7 + 0.1 * np.log10(n) / 3.5 + shift + rng.normal(0, 0.005),
                                 ece=0.05 + rng.normal(0, 0.005), nll=0.5, brier=0.3, config={}))
    rows.append(dict(dataset="other", method="wide", seed=0, status="ok", n_train=50, accuracy=0.5, ece=0.1,
                     nll=1.0, brier=0.5, config={}))
    return rows


def test_size_of_reads_the_label_budget():
    assert size_of("mnist5k@10pc") == ("mnist5k", "10/class")
    assert size_of("mnist5k[classes=5-9]@0.1") == ("mnist5k[classes=5-9]", "0.1 of train")
    assert size_of("mnist5k") == ("mnist5k", "all")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    paths = build(_rows(), {"suite": "syn"}).write(out)
    return out, paths


def test_sweep_table_has_each_size_and_method_smallest_first(written):
    out, paths = written
    sweep = pd.read_csv(paths["sweep_csv"])
    assert list(sweep["n_train"]) == [100, 100, 500, 500, 3000, 3000]
    assert set(sweep["size"]) == {"10/class", "50/class", "all"}
    assert "other" not in set(sweep["dataset"])  # a data set at one size is no sweep
    assert (sweep["accuracy_ci_low"] <= sweep["accuracy_mean"]).all()


def test_sweep_markdown_gives_the_paired_gap_per_size(written):
    out, paths = written
    text = paths["sweep_md"].read_text()
    gap_lines = [line for line in text.splitlines() if "wide − narrow" in line]
    assert len(gap_lines) == 3
    # At 10 per class the built-in gap of 20 points is far outside seed noise: its CI excludes zero.
    low = float(gap_lines[0].split("[")[1].split(",")[0])
    assert gap_lines[0].split("|")[2].strip() == "10/class" and low > 10


def test_page_shows_the_sweep_figure(written):
    out, paths = written
    assert paths["plot:sweep_m"].is_file()
    assert "Training size" in paths["html"].read_text()


def test_no_sweep_no_files(tmp_path):
    rows = [r for r in _rows() if r["dataset"] in ("m", "other")]
    paths = build(rows, {"suite": "syn"}).write(tmp_path)
    assert "sweep_csv" not in paths and not (tmp_path / "sweep.csv").exists()
