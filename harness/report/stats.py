"""Statistics over seeds and data sets: bootstrap CIs, paired comparisons with effect sizes, average
ranks with the Friedman test and the Nemenyi critical difference.

Two methods run on the same seeds and the same splits give paired results, so every comparison here
is paired: the Wilcoxon signed-rank test where there are enough seeds for it to decide anything, else
the paired t-test, each with the paired-bootstrap CI of the mean difference and an effect size.
Across data sets, methods are ranked per data set and compared by average rank (Demšar 2006).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import stats

from harness.metrics import all_metrics, column
from harness.report.power import seed_plan
from harness.robustness import attacked_columns

# The exact two-sided Wilcoxon signed-rank p-value is at least 2 / 2**n, which is above 0.05 for
# n <= 5 pairs; below this many pairs the test could never reject, so the paired t-test is used.
WILCOXON_MIN_PAIRS = 6
ALPHA = 0.05
NO_VARIANCE = "the same difference on every pair: no variance to test it against"


def compared_metrics(columns: Iterable[str] = ()) -> dict[str, str]:
    """Every registered metric, compared head-to-head, with which way is better (``higher``/``lower``);
    then the accuracies under attack among ``columns`` (``robust_acc@ε``, ``fgsm_acc@ε``)."""
    return {**{m.name: m.sense for m in all_metrics()}, **{c: "higher" for c in attacked_columns(columns)}}


def sense_of(metric: str) -> str:
    """``higher`` or ``lower`` (is better) for a registered metric or column; ``higher`` if unknown."""
    declared = column(metric)
    return declared.sense if declared is not None and declared.sense else "higher"


def bootstrap_ci(values, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (fixed resampling seed, so tables are
    reproducible). With one value the interval is that value."""
    x = np.asarray([v for v in values if v == v], dtype=float)
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


@dataclass
class PairedResult:
    """One paired comparison of method ``a`` against ``b`` on the seeds both completed."""

    n: int                      # pairs (seeds both methods completed)
    mean_diff: float            # mean of a − b, in the metric's units
    ci_low: float               # 95 % paired-bootstrap CI of the mean difference
    ci_high: float
    test: str                   # which test gave the p-value
    statistic: float
    p_value: float
    effect: float               # effect size (see effect_name)
    effect_name: str
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_test_name(n: int) -> str:
    """The test :func:`paired_compare` uses for ``n`` pairs."""
    if n < 2:
        return "none (fewer than 2 pairs)"
    return "Wilcoxon signed-rank" if n >= WILCOXON_MIN_PAIRS else "paired t-test"


def paired_compare(a: Iterable[float], b: Iterable[float]) -> PairedResult:
    """Compare paired samples ``a`` and ``b`` (same seeds, same order).

    n >= 6: two-sided Wilcoxon signed-rank (exact without zero or tied differences), effect size the
    matched-pairs rank-biserial correlation r = (W+ − W−) / (W+ + W−) in [−1, 1].
    2 <= n < 6: two-sided paired t-test, effect size Cohen's d_z = mean(d) / sd(d).
    Either way the CI is the percentile bootstrap of the mean difference, resampling pairs.
    """
    a, b = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} and {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    d = a[keep] - b[keep]
    n = int(d.size)
    mean = float(d.mean()) if n else float("nan")
    lo, hi = bootstrap_ci(d)
    test = paired_test_name(n)
    nan = float("nan")
    if n < 2:
        return PairedResult(n, mean, lo, hi, test, nan, nan, nan, "", "too few pairs for a test")
    # Differences at rounding level (means of equal values summed in another order) count as zero.
    tol = 1e-12 * max(1.0, float(np.abs(a[keep]).max()), float(np.abs(b[keep]).max()))
    d = np.where(np.abs(d) <= tol, 0.0, d)
    if np.all(d == 0):
        return PairedResult(n, 0.0, 0.0, 0.0, test, 0.0, 1.0, 0.0,
                            "rank-biserial r" if n >= WILCOXON_MIN_PAIRS else "d_z", "identical on every pair")
    if n >= WILCOXON_MIN_PAIRS:
        nonzero = d[d != 0]
        ranks = stats.rankdata(np.abs(nonzero))
        w_plus, w_minus = float(ranks[nonzero > 0].sum()), float(ranks[nonzero < 0].sum())
        exact = nonzero.size == n and np.unique(np.abs(nonzero)).size == n and n <= 50
        res = stats.wilcoxon(d, zero_method="wilcox", method="exact" if exact else "approx")
        return PairedResult(n, mean, lo, hi, test + (" (exact)" if exact else " (normal approximation)"),
                            float(res.statistic), float(res.pvalue), (w_plus - w_minus) / (w_plus + w_minus),
                            "rank-biserial r")
    sd = float(d.std(ddof=1))
    if sd <= tol:
        # Every pair shows the same difference: no variance to judge it against.
        return PairedResult(n, mean, lo, hi, test, nan, nan, nan, "d_z", NO_VARIANCE)
    res = stats.ttest_1samp(d, 0.0)  # the paired t-test: scipy.stats.ttest_rel(a, b) on the differences
    return PairedResult(n, mean, lo, hi, test, float(res.statistic), float(res.pvalue), mean / sd, "d_z")


def holm(p_values: Iterable[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (NaN stays NaN and does not count as a hypothesis)."""
    p = np.asarray(list(p_values), dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def _ok_rows(per_seed: pd.DataFrame) -> pd.DataFrame:
    if per_seed.empty or "status" not in per_seed:
        return per_seed.iloc[0:0]
    return per_seed[(per_seed["status"] == "ok") & per_seed["seed"].notna()]


ACROSS = "all data sets"  # the data-set label of comparisons paired over data sets


def pairwise_comparisons(per_seed: pd.DataFrame, metrics: dict[str, str] | None = None) -> pd.DataFrame:
    """Every pair of methods on every data set, paired by seed, for each metric; with several data
    sets also every pair across data sets (``dataset = "all data sets"``), paired by data set on the
    means over seeds.

    ``mean_diff`` is a − b; ``pairs`` lists the seeds (or data sets) both methods have; ``better``
    names the method ahead when the Holm-adjusted p-value (over the pairs of one data set and
    metric) is below 0.05, else ``no significant difference``.
    """
    ok = _ok_rows(per_seed)
    metrics = compared_metrics(ok.columns) if metrics is None else metrics
    methods = list(dict.fromkeys(ok["method"])) if not ok.empty else []
    out: list[dict[str, Any]] = []
    for metric, sense in metrics.items():
        if metric not in ok or ok[metric].isna().all():
            continue
        have = ok[ok[metric].notna()]  # a plugin's metric may apply to some data sets only
        for dataset, group in have.groupby("dataset", sort=False):
            wide = group.pivot_table(index="seed", columns="method", values=metric, aggfunc="first")
            wide.index = [str(int(s)) for s in wide.index]
            out.extend(_compare_all(wide, methods, dataset, metric, sense, "seeds"))
        if have["dataset"].nunique() > 1:
            means = have.groupby(["dataset", "method"], sort=False)[metric].mean().unstack("method")
            out.extend(_compare_all(means, methods, ACROSS, metric, sense, "data sets"))
    return pd.DataFrame(out)


def _compare_all(wide: pd.DataFrame, methods: list[str], dataset: str, metric: str, sense: str,
                 paired_over: str) -> list[dict[str, Any]]:
    """Each pair of columns of ``wide`` (rows: the pairing unit), Holm-adjusted together."""
    block: list[dict[str, Any]] = []
    present = [m for m in methods if m in wide]
    for i, ma in enumerate(present):
        for mb in present[i + 1:]:
            pair = wide[[ma, mb]].dropna()
            r = paired_compare(pair[ma], pair[mb])
            block.append({"dataset": dataset, "metric": metric, "better_is": sense, "method_a": ma, "method_b": mb,
                          **r.as_dict(), "paired_over": paired_over, "pairs": ",".join(map(str, pair.index)),
                          **seed_plan(pair[ma], pair[mb]).as_dict()})
    for row, p_adj in zip(block, holm(r["p_value"] for r in block)):
        row["p_holm"] = p_adj
        row["better"] = _verdict(row, sense)
    return block


def _verdict(row: dict[str, Any], sense: str) -> str:
    p = row["p_holm"]
    if p != p or p >= ALPHA:
        return "no significant difference" if p == p else "no test"
    a_ahead = row["mean_diff"] > 0 if sense == "higher" else row["mean_diff"] < 0
    return row["method_a"] if a_ahead else row["method_b"]


@dataclass
class RankResult:
    """Average ranks of methods over data sets, the Friedman test and the Nemenyi critical difference."""

    metric: str
    ranks: pd.DataFrame                    # data set × method, 1 = best (ties share the mean rank)
    average: dict[str, float]              # method → average rank, best first
    n_datasets: int
    n_methods: int
    dropped: list[str] = field(default_factory=list)  # methods without a result on every data set
    friedman_statistic: float = float("nan")
    friedman_p: float = float("nan")
    iman_davenport_f: float = float("nan")
    iman_davenport_p: float = float("nan")
    critical_difference: float = float("nan")
    note: str = ""

    def cliques(self) -> list[list[str]]:
        """Maximal runs of methods (in rank order) whose average ranks lie within the critical
        difference of each other: the bars of a critical-difference diagram."""
        if self.critical_difference != self.critical_difference:
            return []
        names, r = list(self.average), list(self.average.values())
        spans = []
        for i in range(len(names)):
            j = i
            while j + 1 < len(names) and r[j + 1] - r[i] < self.critical_difference:
                j += 1
            if j > i and not any(s <= i and j <= e for s, e in spans):
                spans.append((i, j))
        return [names[s:e + 1] for s, e in spans]


def nemenyi_critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """CD = q_α sqrt(k (k + 1) / (6 N)) for k methods on N data sets, q_α the studentized range
    quantile (infinite degrees of freedom) divided by √2."""
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n)))


def average_ranks(per_seed: pd.DataFrame, metric: str = "accuracy", sense: str | None = None) -> RankResult | None:
    """Rank methods per data set by their mean over seeds and average the ranks over data sets.

    The Friedman test and the Nemenyi critical difference are computed with at least 3 methods on at
    least 2 data sets; methods missing a data set are left out of the ranking (listed in ``dropped``).
    Returns None when no data set has a result for the metric.
    """
    sense = sense or sense_of(metric)
    ok = _ok_rows(per_seed)
    if ok.empty or metric not in ok:
        return None
    means = ok.groupby(["dataset", "method"], sort=False)[metric].mean().unstack("method")
    means = means[list(dict.fromkeys(ok["method"]))].dropna(how="all")
    if means.empty:
        return None
    complete = [m for m in means.columns if means[m].notna().all()]
    dropped = [m for m in means.columns if m not in complete]
    means = means[complete]
    signed = -means if sense == "higher" else means
    ranks = signed.rank(axis=1, method="average")
    average = ranks.mean().sort_values(kind="stable")
    n, k = len(means), len(complete)
    res = RankResult(metric, ranks, {m: float(v) for m, v in average.items()}, n, k, dropped)
    if k < 3 or n < 2:
        res.note = (f"Friedman test and critical difference need at least 3 methods on at least 2 data sets "
                    f"(here {k} method{'s' * (k != 1)} on {n} data set{'s' * (n != 1)}).")
        return res
    if (means.nunique(axis=1) == 1).all():
        res.note = "Every data set ties all methods, so there is nothing to test."
        return res
    chi2, p = stats.friedmanchisquare(*[means[m].to_numpy() for m in complete])
    res.friedman_statistic, res.friedman_p = float(chi2), float(p)
    if chi2 == chi2 and n * (k - 1) - chi2 > 0:
        f = (n - 1) * chi2 / (n * (k - 1) - chi2)
        res.iman_davenport_f = float(f)
        res.iman_davenport_p = float(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))
    elif chi2 == chi2:  # perfect agreement of the rankings: F is infinite
        res.iman_davenport_f, res.iman_davenport_p = math.inf, 0.0
    res.critical_difference = nemenyi_critical_difference(k, n)
    return res


def methods_text(per_seed: pd.DataFrame) -> str:
    """One paragraph saying which tests were used and on how many seeds and data sets."""
    ok = _ok_rows(per_seed)
    if ok.empty:
        return "No completed seeds to compare."
    counts = ok.groupby(["dataset", "method"]).size()
    lo, hi = int(counts.min()), int(counts.max())
    seeds = f"{lo}" if lo == hi else f"{lo}–{hi}"
    n_ds = ok["dataset"].nunique()
    tests = sorted({paired_test_name(n) for n in range(lo, hi + 1)})
    text = (f"Per data set, methods are compared pairwise on the seeds both completed ({seeds} seeds per method, "
            f"{n_ds} data set{'s' * (n_ds != 1)}); the comparisons are paired because both methods ran on the "
            f"same seeds and splits. Test used: {' and '.join(tests)}. ")
    if lo < WILCOXON_MIN_PAIRS:
        text += (f"With fewer than {WILCOXON_MIN_PAIRS} pairs the exact two-sided Wilcoxon signed-rank test "
                 f"cannot reach p < 0.05 (its smallest p-value is 2/2ⁿ = {2 / 2 ** max(lo, 1):.3g} for n = {lo}), "
                 "so those pairs use the two-sided paired t-test (effect size Cohen's d_z = mean/sd of the "
                 "differences); it assumes roughly normal differences, which few seeds cannot check. ")
    if hi >= WILCOXON_MIN_PAIRS:
        text += ("With 6 or more pairs the two-sided Wilcoxon signed-rank test is used (effect size: matched-pairs "
                 "rank-biserial correlation). ")
    if n_ds > 1:
        text += ("Each pair is also compared across all data sets, paired by data set on the means over seeds, "
                 f"with the same rule on the number of data sets ({n_ds}: {paired_test_name(n_ds)}). ")
    text += ("Every difference comes with the 95 % percentile-bootstrap CI of its mean (resampling the pairs); "
             "p-values are Holm-adjusted over the pairs of one data set and metric, and a method is called better "
             "when the adjusted p is below 0.05. Across data sets, methods are ranked per data set by their mean "
             "(1 = best) and compared by average rank with the Friedman test (χ², and the Iman–Davenport F) and "
             "the Nemenyi critical difference at α = 0.05.")
    return text


__all__ = ["bootstrap_ci", "paired_compare", "paired_test_name", "PairedResult", "holm", "pairwise_comparisons",
           "average_ranks", "RankResult", "nemenyi_critical_difference", "methods_text", "compared_metrics", "sense_of", "ACROSS",
           "WILCOXON_MIN_PAIRS"]
