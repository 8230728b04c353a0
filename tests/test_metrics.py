import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, log_loss

from harness import metrics


def test_hand_computed_ece_nll_brier():
    # Three predictions: conf 0.9 correct, conf 0.6 wrong, conf 1.0 correct.
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0])
    # Bins of width 1/15: 0.9 → bin 13 (0.8667, 0.9333], 0.6 → bin 8 (0.5333, 0.6], 1.0 → bin 14.
    expected_ece = (abs(1 - 0.9) + abs(0 - 0.6) + abs(1 - 1.0)) / 3
    assert metrics.ece(probs, labels) == pytest.approx(expected_ece)
    assert metrics.accuracy(probs, labels) == pytest.approx(2 / 3)
    assert metrics.nll(probs, labels) == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(1.0)) / 3)
    brier = ((0.1**2 + 0.1**2) + (0.6**2 + 0.6**2) + 0.0) / 3
    assert metrics.brier(probs, labels) == pytest.approx(brier)


def test_confidence_one_falls_in_last_bin_and_zero_gap_when_right():
    probs = torch.tensor([[1.0, 0.0]] * 4, dtype=torch.float64)
    bins = metrics.reliability(probs, torch.zeros(4, dtype=torch.long))
    assert bins.count.tolist() == [0] * 14 + [4]
    assert bins.ece() == 0.0


def test_bin_edges_are_closed_on_the_right():
    # 0.6 == 9/15 belongs to bin 8, (8/15, 9/15]
    probs = torch.tensor([[0.6, 0.4]], dtype=torch.float64)
    bins = metrics.reliability(probs, torch.tensor([0]))
    assert bins.count[8] == 1


def _random_predictions(n=500, k=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, k, (n,), generator=g)
    return logits.softmax(1), labels


def test_against_scikit_learn():
    probs, labels = _random_predictions()
    assert metrics.accuracy(probs, labels) == pytest.approx(accuracy_score(labels, probs.argmax(1)))
    assert metrics.nll(probs, labels) == pytest.approx(log_loss(labels, probs.numpy(), labels=list(range(7))))
    onehot = np.eye(7)[labels.numpy()]
    assert metrics.brier(probs, labels) == pytest.approx(((probs.numpy() - onehot) ** 2).sum(1).mean())


def test_ece_against_torchmetrics():
    tm = pytest.importorskip("torchmetrics.classification")
    for seed in range(3):
        probs, labels = _random_predictions(seed=seed)
        ref = tm.MulticlassCalibrationError(num_classes=7, n_bins=15, norm="l1")(probs.float(), labels)
        assert metrics.ece(probs, labels) == pytest.approx(ref.item(), abs=1e-5)


def test_entropy_and_mutual_information():
    uniform = torch.full((1, 4), 0.25)
    assert metrics.entropy(uniform).item() == pytest.approx(math.log(4))
    # Two confident members that disagree: all the entropy is epistemic.
    members = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert metrics.mutual_information(members).item() == pytest.approx(math.log(2), abs=1e-6)
    agree = torch.tensor([[[0.5, 0.5]], [[0.5, 0.5]]])
    assert metrics.mutual_information(agree).item() == pytest.approx(0.0, abs=1e-9)


def test_classification_metrics_keys():
    probs, labels = _random_predictions(n=50)
    assert set(metrics.classification_metrics(probs, labels)) == {"accuracy", "ece", "nll", "brier"}


# -- the registry --------------------------------------------------------------------------------
import pandas as pd  # noqa: E402

from harness.plugins import load_plugins  # noqa: E402
from harness.report.latex import summary_latex  # noqa: E402
from harness.report.stats import average_ranks, pairwise_comparisons  # noqa: E402
from harness.report.tables import aggregate, display_frame, per_seed_frame  # noqa: E402

from conftest import run_cli  # noqa: E402


@pytest.fixture
def install():
    """Register metrics as plugins would, and take them away again afterwards."""
    yield lambda *ms: metrics.set_plugin_metrics(ms)
    metrics.set_plugin_metrics(())


def test_each_builtin_is_declared_once():
    names = [m.name for m in metrics.all_metrics()]
    assert names == ["accuracy", "ece", "nll", "brier"]
    assert not set(names) & set(metrics.COLUMNS)
    for m in metrics.all_metrics():
        assert metrics.column(m.name) is m and m.fn is getattr(metrics, m.name)
    ece_before = metrics.column("ece_uncalibrated")  # derived from the one ECE declaration
    assert (ece_before.label, ece_before.higher_is_better, ece_before.digits) == ("ECE before TS", False, 4)
    with pytest.raises(ValueError, match="the core's"):
        metrics.set_plugin_metrics([metrics.Metric(name="ece", fn=metrics.ece, higher_is_better=False, label="x")])


def _frame(values: dict[str, list[float]], metric: str) -> pd.DataFrame:
    rows = [{"dataset": ds, "method": m, "seed": s, "status": "ok", metric: v + 0.01 * s, "accuracy": 0.5, "ece": 0.1,
             "nll": 1.0, "brier": 0.5}
            for ds in ("d1", "d2", "d3") for m, vs in values.items() for s, v in enumerate(vs)]
    return per_seed_frame(rows)


@pytest.mark.parametrize("higher, best", [(True, "big"), (False, "small")])
def test_directions_drive_ranks_and_verdicts(install, higher, best):
    install(metrics.Metric(name="score", fn=metrics.accuracy, higher_is_better=higher, label="score"))
    per_seed = _frame({"small": [0.1, 0.11, 0.12], "mid": [0.3, 0.33, 0.31], "big": [0.6, 0.64, 0.62]}, "score")
    ranks = average_ranks(per_seed, "score")
    assert next(iter(ranks.average)) == best and ranks.average[best] == 1.0
    comp = pairwise_comparisons(per_seed)
    assert "score" in set(comp["metric"])
    pair = comp[(comp["metric"] == "score") & (comp["dataset"] == "d1") & (comp["method_a"] == "small")
                & (comp["method_b"] == "big")]
    assert pair["better"].item() == best and pair["better_is"].item() == ("higher" if higher else "lower")


def test_formats_drive_the_tables(install):
    install(metrics.Metric(name="hit_rate", fn=metrics.accuracy, higher_is_better=True, label="hit rate",
                           scale=100.0, digits=1, unit="%"))
    per_seed = _frame({"a": [0.4, 0.6], "b": [0.1, 0.3]}, "hit_rate")
    assert list(per_seed.columns[:9]) == ["dataset", "method", "seed", "status", "accuracy", "ece", "nll", "brier",
                                           "hit_rate"]
    summary = aggregate(per_seed)
    shown = display_frame(summary)
    assert list(shown.columns[:8]) == ["data set", "method", "accuracy %", "95% CI", "ECE", "NLL", "Brier", "hit rate %"]
    # mean 0.5, sample std 0.1414 of (0.40, 0.61) and (0.41, 0.62) shifted by 0.01 per seed: see _frame
    assert shown["hit rate %"].iloc[0] == f"{100 * np.mean([0.40, 0.61]):.1f} ± {100 * np.std([0.40, 0.61], ddof=1):.1f}"
    tex = summary_latex(summary)
    assert r"Hit rate (\%)" in tex and r"\textbf{50.5}" in tex


def test_a_metric_that_does_not_apply_is_left_out(install):
    install(metrics.Metric(name="binary_only", fn=metrics.accuracy, higher_is_better=True, label="b",
                           applies=lambda k: k == 2))
    three, labels = _random_predictions(n=20, k=3)
    assert "binary_only" not in metrics.classification_metrics(three, labels)
    two = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    assert metrics.classification_metrics(two, torch.tensor([0, 1]))["binary_only"] == 1.0


def test_a_failing_plugin_metric_is_named(install):
    def broken(probs, labels):
        raise ZeroDivisionError("no")

    install(metrics.Metric(name="broken", fn=broken, higher_is_better=True, label="broken"))
    probs, labels = _random_predictions(n=10)
    with pytest.raises(metrics.PluginError, match="metric 'broken' raised ZeroDivisionError"):
        metrics.classification_metrics(probs, labels)


def test_plugin_metrics_are_collected_and_clashes_are_problems():
    try:
        reg = load_plugins(["fixture_plugins.ranking_metrics", "fixture_plugins.metric_clash"], entry_points=False)
        assert [m.name for m in metrics.all_metrics()][4:] == ["auroc", "top2_accuracy"]
        assert reg.plugins["fixture_plugins.ranking_metrics"].metrics == ["auroc", "top2_accuracy"]
        problems = " | ".join(map(str, reg.problems))
        assert "metric 'ece' is a built-in name" in problems
        assert "metric 'auroc' is already provided by plugin 'fixture_plugins.ranking_metrics'" in problems
        assert "not a harness.metrics.Metric" in problems
        # AUROC by hand: positives score 0.9 and 0.3, negatives 0.8 and 0.2; 3 of 4 pairs ordered right.
        probs = torch.tensor([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.8, 0.2]], dtype=torch.float64)
        scored = metrics.classification_metrics(probs, torch.tensor([1, 0, 1, 0]))
        assert scored["auroc"] == pytest.approx(0.75) and "top2_accuracy" not in scored
    finally:
        metrics.set_plugin_metrics(())


def test_a_plugin_metric_reaches_every_table(tmp_path):
    plugins = ("--plugin", "fixture_plugins.centroid", "--plugin", "fixture_plugins.ranking_metrics")
    done = run_cli("--threads", "1", *plugins, "run", "centroid", "centroid_b", "--dataset", "breast_cancer",
                   "--dataset", "iris", "--trials", "2", "--seeds", "2", "--no-progress", "--out", "o", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "o"
    summary = pd.read_csv(out / "summary.csv").set_index(["dataset", "method"])
    binary, three = summary.loc["breast_cancer"], summary.loc["iris"]
    assert binary["auroc_mean"].between(0.5, 1).all() and three["auroc_mean"].isna().all()
    assert three["top2_accuracy_mean"].notna().all() and binary["top2_accuracy_mean"].isna().all()
    assert (three["top2_accuracy_mean"] >= three["accuracy_mean"]).all()  # the label in the top 2 if it is the top 1
    comp = pd.read_csv(out / "comparisons.csv")
    assert {"auroc", "top2_accuracy"} <= set(comp["metric"])
    assert set(comp.loc[comp["metric"] == "auroc", "dataset"]) == {"breast_cancer"}
    assert {"auroc", "top2_accuracy"} <= set(pd.read_csv(out / "ranks.csv")["metric"])
    page = (out / "index.html").read_text()
    assert "Pairwise comparisons: AUROC (higher is better)" in page and "<th scope='col'>AUROC</th>" in page
    assert "<th scope='col'>top-2 accuracy %</th>" in page
    assert "| top-2 accuracy % |" in (out / "summary.md").read_text()
    assert "AUROC" in done.stdout                       # the terminal table
    # `harness report` rebuilds the same summary from the storage.
    again = run_cli("--threads", "1", *plugins, "report", "--out", "o", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert pd.read_csv(out / "summary.csv").set_index(["dataset", "method"])["auroc_mean"].equals(summary["auroc_mean"])
