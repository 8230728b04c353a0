"""Statistics of the report: paired tests against hand-worked cases and scipy, Holm, ranks, Friedman,
the Nemenyi critical difference, and comparisons over the per-seed rows of several data sets."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.report.stats import (
    RankResult, average_ranks, bootstrap_ci, holm, methods_text, nemenyi_critical_difference, paired_compare,
    paired_test_name, pairwise_comparisons,
)


def test_bootstrap_ci_keeps_its_contract():
    assert bootstrap_ci([0.5]) == (0.5, 0.5)
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    lo, hi = bootstrap_ci([0.1, 0.2, 0.3, 0.4])
    assert 0.1 <= lo < 0.25 < hi <= 0.4
    assert bootstrap_ci([0.1, 0.2, 0.3, 0.4]) == (lo, hi)  # fixed resampling seed


def test_test_choice_follows_the_smallest_reachable_wilcoxon_p():
    # The exact two-sided Wilcoxon p is at least 2 / 2**n: 0.0625 for 5 pairs, 0.03125 for 6.
    assert sps.wilcoxon([1, 2, 3, 4, 5], method="exact").pvalue == pytest.approx(2 / 2 ** 5)
    assert sps.wilcoxon([1, 2, 3, 4, 5, 6], method="exact").pvalue == pytest.approx(2 / 2 ** 6)
    assert paired_test_name(1).startswith("none")
    assert [paired_test_name(n) for n in (2, 3, 5)] == ["paired t-test"] * 3
    assert [paired_test_name(n) for n in (6, 10)] == ["Wilcoxon signed-rank"] * 2


def test_known_difference_over_three_seeds_is_significant_and_matches_scipy():
    a = [0.951, 0.962, 0.958]
    b = [0.921, 0.930, 0.929]                  # differences 0.030, 0.032, 0.029
    r = paired_compare(a, b)
    d = np.array(a) - np.array(b)
    ref = sps.ttest_rel(a, b)
    assert r.test == "paired t-test" and r.n == 3
    assert r.statistic == pytest.approx(ref.statistic) and r.p_value == pytest.approx(ref.pvalue)
    # by hand: mean 0.030333, sd 0.0015275 → t = mean / (sd / √3) = 34.39, two-sided p with 2 df
    assert r.mean_diff == pytest.approx(0.0303333, abs=1e-6)
    assert r.statistic == pytest.approx(0.0303333 / (0.00152753 / math.sqrt(3)), rel=1e-4)
    assert r.p_value < 0.001
    assert r.effect_name == "d_z" and r.effect == pytest.approx(d.mean() / d.std(ddof=1))
    assert r.ci_low <= r.mean_diff <= r.ci_high and r.ci_low > 0


def test_identical_pair_is_not_significant():
    r = paired_compare([0.9, 0.91, 0.92], [0.9, 0.91, 0.92])
    assert r.p_value == 1.0 and r.mean_diff == 0.0 and r.effect == 0.0 and "identical" in r.note


def test_pairing_finds_a_consistent_difference_an_unpaired_test_misses():
    # Seeds differ a lot from each other; b is always 0.01 below a on the same seed.
    a = np.array([0.80, 0.90, 0.85, 0.95, 0.82])
    b = a - np.array([0.010, 0.011, 0.009, 0.010, 0.012])
    assert sps.ttest_ind(a, b).pvalue > 0.5
    assert paired_compare(a, b).p_value < 0.001


def test_wilcoxon_with_enough_seeds_matches_scipy_and_hand_worked_values():
    a = np.array([0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97])
    b = a - np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08])
    r = paired_compare(a, b)
    assert r.test == "Wilcoxon signed-rank (exact)" and r.n == 8
    assert r.p_value == pytest.approx(2 / 2 ** 8)        # all 8 differences positive
    assert r.p_value == pytest.approx(sps.wilcoxon(a - b, method="exact").pvalue)
    assert r.statistic == 0.0                            # W− = 0
    assert r.effect_name == "rank-biserial r" and r.effect == 1.0
    # One negative difference with the smallest rank: W+ = 35, W− = 1 → r = 34 / 36.
    mixed = paired_compare(a, a - np.array([-0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]))
    assert mixed.effect == pytest.approx(34 / 36)
    assert mixed.p_value == pytest.approx(sps.wilcoxon([-0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08],
                                                       method="exact").pvalue)
    assert mixed.p_value == pytest.approx(4 / 256)  # rank sums ≤ 1 on either side: 2 of 256 sign patterns each


def test_constant_difference_has_no_test_and_one_pair_none():
    r = paired_compare([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    assert math.isnan(r.p_value) and math.isnan(r.effect) and "same difference" in r.note
    assert r.mean_diff == pytest.approx(0.1) and (r.ci_low, r.ci_high) == pytest.approx((0.1, 0.1))
    one = paired_compare([0.5], [0.4])
    assert one.n == 1 and math.isnan(one.p_value)
    with pytest.raises(ValueError):
        paired_compare([1, 2], [1])


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 → 3·0.01 = 0.03, 2·0.03 = 0.06, max(0.06, 1·0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.2, float("nan"), 0.9])
    assert out[0] == pytest.approx(0.4) and math.isnan(out[1]) and out[2] == pytest.approx(0.9)


def test_nemenyi_critical_difference_matches_demsar():
    # Demšar (2006): q_0.05 = 2.343, 2.569, 2.728 for k = 3, 4, 5; 4 methods on 14 data sets: CD = 1.25.
    for k, q in ((3, 2.343), (4, 2.569), (5, 2.728)):
        assert nemenyi_critical_difference(k, 6) == pytest.approx(q * math.sqrt(k * (k + 1) / 36), abs=2e-3)
    assert nemenyi_critical_difference(4, 14) == pytest.approx(1.25, abs=5e-3)


def _frame(means: dict[str, dict[str, float]], seeds=(0, 1, 2), noise=0.0, metric="accuracy") -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [{"dataset": ds, "method": m, "seed": s, "status": "ok", metric: v + noise * rng.normal()}
            for ds, by_method in means.items() for m, v in by_method.items() for s in seeds]
    return pd.DataFrame(rows)


def test_average_ranks_friedman_and_iman_davenport_by_hand():
    means = {"d1": {"a": 0.9, "b": 0.8, "c": 0.7}, "d2": {"a": 0.8, "b": 0.9, "c": 0.7},
             "d3": {"a": 0.95, "b": 0.85, "c": 0.75}, "d4": {"a": 0.9, "b": 0.8, "c": 0.8}}
    res = average_ranks(_frame(means))
    assert isinstance(res, RankResult)
    # ranks: d1 1,2,3; d2 2,1,3; d3 1,2,3; d4 1,2.5,2.5 → averages 1.25, 1.875, 2.875
    assert res.average == pytest.approx({"a": 1.25, "b": 1.875, "c": 2.875})
    assert list(res.average) == ["a", "b", "c"]
    cols = [[means[d][m] for d in means] for m in "abc"]
    ref = sps.friedmanchisquare(*cols)
    assert res.friedman_statistic == pytest.approx(ref.statistic) and res.friedman_p == pytest.approx(ref.pvalue)
    n, k, chi2 = 4, 3, ref.statistic
    assert res.iman_davenport_f == pytest.approx((n - 1) * chi2 / (n * (k - 1) - chi2))
    assert res.iman_davenport_p == pytest.approx(sps.f.sf(res.iman_davenport_f, k - 1, (k - 1) * (n - 1)))
    assert res.critical_difference == pytest.approx(nemenyi_critical_difference(3, 4))
    # lower-is-better metrics rank the other way round
    ece = average_ranks(_frame(means, metric="ece"), "ece")
    assert ece.average == pytest.approx({"c": 1.125, "b": 2.125, "a": 2.75}) and list(ece.average) == ["c", "b", "a"]


def test_friedman_needs_three_methods_and_two_data_sets():
    one_ds = average_ranks(_frame({"d1": {"a": 0.9, "b": 0.8, "c": 0.7}}))
    assert one_ds.average == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert math.isnan(one_ds.friedman_p) and math.isnan(one_ds.critical_difference)
    assert "at least 2 data sets" in one_ds.note
    two = average_ranks(_frame({"d1": {"a": 0.9, "b": 0.8}, "d2": {"a": 0.9, "b": 0.8}}))
    assert math.isnan(two.friedman_p) and "at least 3 methods" in two.note
    missing = _frame({"d1": {"a": 0.9, "b": 0.8, "c": 0.7, "x": 0.5}, "d2": {"a": 0.9, "b": 0.8, "c": 0.7}})
    res = average_ranks(missing)
    assert res.dropped == ["x"] and set(res.average) == {"a", "b", "c"} and res.n_datasets == 2


def test_cliques_join_methods_within_the_critical_difference():
    res = RankResult("accuracy", pd.DataFrame(), {"a": 1.0, "b": 1.5, "c": 3.0, "d": 3.2}, 10, 4,
                     critical_difference=1.0)
    assert res.cliques() == [["a", "b"], ["c", "d"]]
    res.critical_difference = 1.6   # a–c differs by 2.0, b–d by 1.7: significant; the rest are not
    assert res.cliques() == [["a", "b"], ["b", "c"], ["c", "d"]]
    res.critical_difference = 2.5
    assert res.cliques() == [["a", "b", "c", "d"]]
    res.critical_difference = 0.1
    assert res.cliques() == []


def test_pairwise_comparisons_pair_by_seed_per_data_set():
    rows = []
    for ds, gap in (("d1", 0.05), ("d2", 0.0)):
        for s, base in zip((3, 1, 2), (0.80, 0.90, 0.85)):   # unordered seeds, large seed-to-seed spread
            rows.append({"dataset": ds, "method": "good", "seed": s, "status": "ok", "accuracy": base + gap,
                         "ece": 0.05})
            rows.append({"dataset": ds, "method": "plain", "seed": s, "status": "ok", "accuracy": base + 0.001 * s,
                         "ece": 0.05})
    rows.append({"dataset": "d1", "method": "good", "seed": 9, "status": "ok", "accuracy": 0.1, "ece": 0.05})
    rows.append({"dataset": "d1", "method": "plain", "seed": 8, "status": "FAIL", "accuracy": None, "ece": None})
    comp = pairwise_comparisons(pd.DataFrame(rows), {"accuracy": "higher", "ece": "lower"})
    acc = comp[comp["metric"] == "accuracy"].set_index("dataset")
    assert set(acc.index) == {"d1", "d2", "all data sets"}
    d1 = acc.loc["d1"]
    assert d1["n"] == 3 and d1["pairs"] == "1,2,3"         # seed 9 has no partner, seed 8 failed
    assert d1["paired_over"] == "seeds"
    assert d1["mean_diff"] == pytest.approx(0.05 - 0.002)
    ref = sps.ttest_rel([0.95, 0.90, 0.85], [0.901, 0.852, 0.803])
    assert d1["p_value"] == pytest.approx(ref.pvalue) and d1["better"] == "good"
    d2 = acc.loc["d2"]
    assert d2["better"] == "no significant difference" and d2["mean_diff"] < 0
    ece = comp[comp["metric"] == "ece"]
    assert (ece["p_value"] == 1.0).all() and (ece["better"] == "no significant difference").all()
    # across data sets: paired by data set on the means over seeds (d1 includes good's unpartnered seed 9)
    across = acc.loc["all data sets"]
    assert across["paired_over"] == "data sets" and across["pairs"] == "d1,d2" and across["n"] == 2
    good = {"d1": np.mean([0.85, 0.95, 0.90, 0.1]), "d2": np.mean([0.80, 0.90, 0.85])}
    plain = {"d1": np.mean([0.803, 0.901, 0.852]), "d2": np.mean([0.803, 0.901, 0.852])}
    ref = sps.ttest_rel([good["d1"], good["d2"]], [plain["d1"], plain["d2"]])
    assert across["p_value"] == pytest.approx(ref.pvalue) and across["test"] == "paired t-test"


def test_methods_text_says_which_test_on_how_many_seeds():
    text = methods_text(_frame({"d1": {"a": 0.9, "b": 0.8}}, noise=0.01))
    assert "3 seeds" in text and "paired t-test" in text and "cannot reach p < 0.05" in text and "0.25" in text
    many = methods_text(_frame({"d1": {"a": 0.9, "b": 0.8}}, seeds=range(8), noise=0.01))
    assert "Wilcoxon signed-rank" in many and "8 seeds" in many and "cannot reach" not in many
