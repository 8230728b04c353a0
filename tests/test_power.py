"""Seeds needed per comparison (harness.report.power), checked against computations that share
nothing with it: the noncentral t's tails by quadrature over the χ² of the SD, and Monte-Carlo
runs of the paired t-test on synthetic paired differences."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from harness.report import power as pw
from harness.report.comparisons import comparisons_markdown, terminal_lines
from harness.report.stats import pairwise_comparisons


def reference_power(n: int, effect: float, alpha: float = 0.05) -> float:
    """P(|T| > t_crit), T = (Z + effect·√n) / sqrt(V/(n−1)), V ~ χ²ₙ₋₁, by adaptive quadrature."""
    df, nc = n - 1, effect * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)

    def inner(v: float) -> float:
        s = crit * math.sqrt(v / df)
        return (stats.norm.cdf(nc - s) + stats.norm.cdf(-nc - s)) * stats.chi2.pdf(v, df)

    return integrate.quad(inner, 0, np.inf, limit=200)[0]


def simulated_rejections(n: int, effect: float, runs: int, seed: int) -> float:
    """The paired t-test (scipy.stats.ttest_rel) on ``runs`` synthetic experiments of n pairs."""
    rng = np.random.default_rng(seed)
    b = rng.normal(0.9, 0.05, (runs, n))                      # one method's results
    a = b + effect + rng.standard_normal((runs, n))           # the other's: differences N(effect, 1)
    return float((stats.ttest_rel(a, b, axis=1).pvalue < 0.05).mean())


@pytest.mark.parametrize("n, effect", [(2, 3.0), (3, 1.5), (5, 0.8), (12, 0.5), (40, 0.3), (3, 6.0)])
def test_power_matches_quadrature(n, effect):
    assert pw.power(n, effect) == pytest.approx(reference_power(n, effect), abs=1e-6)


def test_power_far_in_the_tail_where_scipy_nct_gives_nan():
    # few degrees of freedom and a large noncentrality: the lower tail is where nct returns NaN
    for n, effect in [(2, 6.0), (2, 12.0), (3, 7.0)]:
        got = pw.power(n, effect)
        assert got == got and got == pytest.approx(reference_power(n, effect), abs=1e-4)


def test_seeds_needed_is_the_smallest_n_with_the_power():
    for effect in (0.3, 0.5, 1.0, 2.0):
        n = pw.seeds_for(effect)
        assert pw.power(n, effect) >= 0.8
        assert n == 2 or pw.power(n - 1, effect) < 0.8
    assert pw.seeds_for(0.5) == 34  # Cohen (1988), the paired t-test at d = 0.5: 34 pairs
    assert pw.seeds_for(1e-4) is None and pw.seeds_for(0.0) is None


@pytest.mark.parametrize("effect", [0.5, 1.2])
def test_predicted_power_matches_simulated_rejection_rate(effect):
    n = pw.seeds_for(effect)
    rate = simulated_rejections(n, effect, runs=20000, seed=1)
    assert rate == pytest.approx(pw.power(n, effect), abs=0.02)
    assert rate == pytest.approx(0.8, abs=0.03)


def test_false_positive_rate_at_alpha():
    assert simulated_rejections(6, 0.0, runs=20000, seed=2) == pytest.approx(0.05, abs=0.01)


def test_smallest_detectable_difference_is_found_with_power_point_eight():
    for n in (2, 3, 10):
        e = pw.min_detectable_effect(n)
        assert pw.power(n, e) == pytest.approx(0.8, abs=1e-6)
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.9, 0.01, 8), rng.normal(0.9, 0.01, 8)
    plan = pw.seed_plan(a, b)
    d = a - b
    assert plan.min_detectable == pytest.approx(pw.min_detectable_effect(8) * d.std(ddof=1))
    assert plan.power_check_method == pw.BOOTSTRAP


def test_small_n_is_checked_by_simulation_and_says_so():
    a, b = np.array([0.978, 0.975, 0.981]), np.array([0.972, 0.979, 0.970])
    plan = pw.seed_plan(a, b)
    assert plan.power_check_method == pw.ASSURANCE
    assert plan.seeds_needed == pw.seeds_for((a - b).mean() / (a - b).std(ddof=1))
    assert 0 < plan.power_check < 1


@pytest.mark.parametrize("a, b, says", [
    ([0.9], [0.8], "fewer than 2 pairs"),
    ([0.9, 0.8, 0.7], [0.9, 0.8, 0.7], "identical on every pair"),
    ([0.9, 0.8, 0.7], [0.8, 0.7, 0.6], "the same difference on every pair"),
    ([0.9, 0.8, 0.7, 0.6], [0.8, 0.9, 0.6, 0.7], "no difference observed"),
])
def test_nothing_to_plan_from_is_said_in_words_not_inf_or_nan_noise(a, b, says):
    plan = pw.seed_plan(a, b)
    assert says in plan.seeds_note
    assert plan.seeds_needed != plan.seeds_needed  # NaN in the CSV, the words beside it
    assert all(not (isinstance(v, float) and math.isinf(v)) for v in plan.as_dict().values())


def test_out_of_reach_is_said_in_words():
    rng = np.random.default_rng(4)
    noise = rng.normal(0, 1, 5)
    plan = pw.seed_plan(noise + 1e-4 - noise.mean() + rng.normal(0, 1e-9, 5), np.zeros(5))
    assert "more than" in plan.seeds_note or plan.seeds_needed > 1000


def _per_seed() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for seed in range(4):
        for method, shift in (("erm", 0.0), ("mixup", 0.004), ("twin", 0.0)):
            acc = 0.95 + shift + rng.normal(0, 0.003) if method != "twin" else None
            rows.append({"dataset": "digits", "method": method, "seed": seed, "status": "ok", "accuracy": acc})
    frame = pd.DataFrame(rows)
    erm = frame.loc[frame["method"] == "erm", "accuracy"].to_numpy()
    frame.loc[frame["method"] == "twin", "accuracy"] = erm
    return frame


def test_comparisons_carry_the_figures_in_csv_markdown_and_words():
    comp = pairwise_comparisons(_per_seed(), {"accuracy": "higher"})
    assert {"min_detectable", "seeds_needed", "power_check", "power_check_method", "seeds_note"} <= set(comp)
    row = comp[(comp["method_a"] == "erm") & (comp["method_b"] == "mixup")].iloc[0]
    assert row["seeds_needed"] == pw.seeds_for(row["effect"])  # d_z of the paired t-test (4 pairs)
    lines = terminal_lines(comp)
    assert any(line.startswith("digits · erm vs mixup: ") and f"needs ≈ {int(row['seeds_needed'])} seeds to tell apart"
               in line and " pts" in line for line in lines)
    assert any("erm vs twin" in line and "identical on every pair" in line for line in lines)
    md = comparisons_markdown(comp, {}, "t")
    assert "seeds needed" in md and "scipy.stats.nct" in md and "assurance" in md


def test_the_terminal_keeps_the_comparisons_against_the_best_row_when_there_are_many():
    from harness.report.pipeline import build

    rng = np.random.default_rng(1)
    rows = [{"suite": "s", "dataset": "digits", "method": m, "seed": seed, "status": "ok",
             "accuracy": 0.90 + 0.01 * i + rng.normal(0, 0.003)}
            for i, m in enumerate(["a", "b", "c", "d", "e"]) for seed in range(4)]
    lines = build(rows, {}).seed_lines()
    assert len(lines) == 4 and all(" e: " in line or "e vs " in line for line in lines)  # 10 pairs → 4 with e
    assert len(build(rows, {}).seed_lines(all_pairs=10)) == 10
    twice = rows + [{**r, "dataset": "iris"} for r in rows]  # adds the comparison over all data sets
    assert len(build(twice, {}).seed_lines()) == 3 * 4
