"""How many seeds a difference needs: power analysis of the paired comparisons.

For each paired comparison, from the n differences a − b (mean d̄, SD s):

* the **smallest detectable difference**: the |mean difference| the two-sided paired t-test at
  α = 0.05 finds with power 0.8 on n pairs, if the differences spread as they did (s);
* the **seeds needed** to detect the observed difference: the smallest n with that power at the
  standardised effect d̄ / s.

Power is exact under normal differences: the t statistic follows the noncentral t with n − 1
degrees of freedom and noncentrality (μ/σ)·√n (``scipy.stats.nct``). The SD of a few seeds is a
rough estimate, so each figure comes with a simulation check: with fewer than :data:`SMALL_N` pairs
the *assurance* (the power at the seeds needed, averaged over the true mean and SD drawn from what
the n seeds leave uncertain: σ² ~ (n − 1)s²/χ²ₙ₋₁, μ ~ N(d̄, σ²/n)); with more, a *bootstrap* (the
rejection rate at the seeds needed when the differences are resampled from the observed ones).
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np
from scipy import optimize, special, stats

ALPHA = 0.05
POWER = 0.8
SMALL_N = 5            # below this many pairs the check is the assurance, else the bootstrap
MAX_SEEDS = 100_000    # "needs more than this" beyond it
CHECK_DRAWS = 1000     # simulated experiments per check (fixed RNG seed: tables are reproducible)
CHECK_MAX_N = 1000     # no check when more seeds than this are needed (the figure is then "far out of reach")
ASSURANCE, BOOTSTRAP = "assurance (simulation)", "bootstrap"

NOTES = (f"Seeds needed: the paired t-test's power analysis (two-sided, α = {ALPHA:g}, power {POWER:g}), exact "
         "for normal differences through the noncentral t distribution (scipy.stats.nct, n − 1 degrees of freedom, "
         "noncentrality (mean/SD)·√n). 'smallest detectable' is the mean difference the run's n pairs find with "
         f"power {POWER:g} at the observed SD of the differences; 'seeds needed' is the smallest n that finds the "
         f"observed mean difference with power {POWER:g} (for comparisons over data sets: data sets needed). Where "
         "the Wilcoxon test was used (6 or more pairs), the t-test's figure is a close guide (the Wilcoxon test "
         "keeps ≥ 86 % of its efficiency, 95.5 % under normality). A few seeds estimate the SD poorly, so the power "
         f"at the seeds needed is checked by simulation ({CHECK_DRAWS} simulated experiments, fixed seed): with fewer "
         f"than {SMALL_N} pairs the assurance — true mean and SD drawn from their uncertainty given the observed "
         "pairs — and otherwise the bootstrap — differences resampled from the observed ones. An assurance well "
         "below 0.8 says the figure is a rough guide. No figure where there is nothing to plan from: fewer than 2 "
         "pairs, or the same difference on every pair.")


def power(n: int | np.ndarray, effect: float, alpha: float = ALPHA) -> np.ndarray | float:
    """Power of the two-sided one-sample (paired) t-test on ``n`` pairs at standardised effect
    ``effect`` = μ/σ of the differences."""
    n = np.asarray(n, dtype=float)
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) * np.sqrt(n)
    lower = np.asarray(stats.nct.cdf(-crit, df, nc), dtype=float)
    # scipy's nct can give NaN far in the lower tail; there P(T < −crit) <= P(Z + nc < 0) = Φ(−nc) is nil.
    lower = np.where(np.isnan(lower) & (special.ndtr(-nc) < 1e-12), 0.0, lower)
    out = np.asarray(stats.nct.sf(crit, df, nc) + lower, dtype=float)
    bad = np.isnan(out)  # anything else nct leaves NaN: the same tails by quadrature
    if bad.any():
        out = out.copy()
        out[bad] = [_power_integral(c, d, k) for c, d, k in
                    zip(np.broadcast_to(crit, out.shape)[bad], np.broadcast_to(df, out.shape)[bad],
                        np.broadcast_to(nc, out.shape)[bad])]
    return float(out) if out.ndim == 0 else out


def _power_integral(crit: float, df: float, nc: float, points: int = 4000) -> float:
    """P(|T| > crit) for T = (Z + nc) / sqrt(V / df), V ~ χ²_df: the noncentral t's two tails as an
    average over V at ``points`` equally likely quantiles of χ²_df (midpoint rule in probability),
    the same quantity as ``nct`` to about 1e-4, computed where ``nct`` returns NaN."""
    v = stats.chi2.ppf((np.arange(points) + 0.5) / points, df)
    s = crit * np.sqrt(v / df)
    return float(min(1.0, np.mean(special.ndtr(nc - s) + special.ndtr(-nc - s))))


@functools.lru_cache(maxsize=256)
def min_detectable_effect(n: int, alpha: float = ALPHA, target: float = POWER) -> float:
    """The standardised effect |μ/σ| that ``n`` pairs detect with power ``target`` (n >= 2)."""
    if n < 2:
        return math.inf
    hi = 1.0
    while power(n, hi, alpha) < target:
        hi *= 2
    return float(optimize.brentq(lambda e: power(n, e, alpha) - target, 0.0, hi, xtol=1e-10))


def seeds_for(effect: float, alpha: float = ALPHA, target: float = POWER, cap: int = MAX_SEEDS) -> int | None:
    """The smallest number of pairs (>= 2) that detects standardised effect ``effect`` with power
    ``target``; None beyond ``cap`` (or for no effect). Power rises with n, so the first n of a
    block that reaches the target is the answer; blocks grow fourfold up to ``cap``."""
    if not effect or effect != effect:
        return None
    lo, hi = 2, 256
    while lo <= cap:
        n = np.arange(lo, min(hi, cap) + 1)
        reached = np.flatnonzero(power(n, effect, alpha) >= target)
        if reached.size:
            return int(n[reached[0]])
        lo, hi = hi + 1, hi * 4
    return None


def t_test_rejections(d: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Whether the two-sided paired t-test rejects on each row of ``d`` (rows: experiments)."""
    n = d.shape[-1]
    mean, sd = d.mean(-1), d.std(-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / (sd / math.sqrt(n))
    return np.abs(np.nan_to_num(t)) > stats.t.ppf(1 - alpha / 2, n - 1)


def assurance(d: np.ndarray, n_new: int, alpha: float = ALPHA, draws: int = CHECK_DRAWS, seed: int = 0) -> float:
    """Rejection rate of the t-test on ``n_new`` pairs when the true mean and SD are drawn from
    their uncertainty given the observed differences ``d`` (noninformative prior)."""
    rng = np.random.default_rng(seed)
    n, mean, sd = d.size, float(d.mean()), float(d.std(ddof=1))
    sigma = sd * np.sqrt((n - 1) / rng.chisquare(n - 1, draws))
    mu = rng.normal(mean, sigma / math.sqrt(n))
    sims = mu[:, None] + sigma[:, None] * rng.standard_normal((draws, n_new))
    return float(t_test_rejections(sims, alpha).mean())


def bootstrap_power(d: np.ndarray, n_new: int, alpha: float = ALPHA, draws: int = CHECK_DRAWS, seed: int = 0) -> float:
    """Rejection rate of the t-test on ``n_new`` pairs resampled from the observed differences ``d``."""
    rng = np.random.default_rng(seed)
    return float(t_test_rejections(d[rng.integers(0, d.size, size=(draws, n_new))], alpha).mean())


@dataclass
class SeedPlan:
    """The power figures of one paired comparison (differences a − b, in the metric's units)."""

    min_detectable: float          # |mean difference| found with power 0.8 on these n pairs
    seeds_needed: float            # pairs needed for the observed difference (NaN: see seeds_note)
    power_check: float             # simulated power at seeds_needed (see power_check_method)
    power_check_method: str
    seeds_note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_plan(a: Iterable[float], b: Iterable[float], alpha: float = ALPHA, target: float = POWER) -> SeedPlan:
    """Power figures for paired samples ``a`` and ``b`` (same seeds, same order; NaN pairs dropped)."""
    a, b = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    d = a[keep] - b[keep]
    n, nan = int(d.size), float("nan")
    if n < 2:
        return SeedPlan(nan, nan, nan, "", "fewer than 2 pairs: no spread to plan from")
    # Differences at rounding level count as zero, as in the paired test.
    tol = 1e-12 * max(1.0, float(np.abs(a[keep]).max()), float(np.abs(b[keep]).max()))
    d = np.where(np.abs(d) <= tol, 0.0, d)
    sd, mean = float(d.std(ddof=1)), float(d.mean())
    if sd <= tol:
        note = ("identical on every pair: nothing to tell apart" if np.all(d == 0) else
                "the same difference on every pair: no spread, so more seeds would not change it")
        return SeedPlan(nan, nan, nan, "", note)
    mdd = min_detectable_effect(n, alpha, target) * sd
    if mean == 0:
        return SeedPlan(mdd, nan, nan, "", "no difference observed: nothing to detect")
    needed = seeds_for(mean / sd, alpha, target)
    if needed is None:
        return SeedPlan(mdd, nan, nan, "", f"needs more than {MAX_SEEDS:,} seeds")
    if needed > CHECK_MAX_N:
        return SeedPlan(mdd, float(needed), nan, "", f"not simulated beyond {CHECK_MAX_N:,} seeds")
    if n < SMALL_N:
        return SeedPlan(mdd, float(needed), assurance(d, needed, alpha), ASSURANCE)
    return SeedPlan(mdd, float(needed), bootstrap_power(d, needed, alpha), BOOTSTRAP)


def plan_text(row: dict[str, Any], scale: float = 1.0, unit: str = "", digits: int = 4) -> str:
    """One comparison in words: "mixup vs erm: +0.19 pts, needs ≈ 40 seeds to tell apart (3 run)".
    ``scale``/``unit``: how the metric is shown (accuracy: 100, " pts")."""
    over = "data sets" if row.get("paired_over") == "data sets" else "seeds"
    head = f"{row['method_a']} vs {row['method_b']}"
    mean = row.get("mean_diff")
    if mean is None or mean != mean:
        return f"{head}: no paired {over}"
    diff = f"{scale * mean:+.{digits}f}{unit}"
    needed, n = row.get("seeds_needed"), int(row.get("n") or 0)
    if needed is None or needed != needed:
        note = row.get("seeds_note") or "nothing to plan from"
        return f"{head}: {diff}, {note.replace('seeds', over)}"
    text = f"{head}: {diff}, needs ≈ {int(needed):,} {over} to tell apart ({n} run"
    mdd = row.get("min_detectable")
    if mdd == mdd and mdd is not None:
        text += f"; the smallest difference {n} could tell apart: {scale * mdd:.{digits}f}{unit}"
    return text + ")"


def seed_lines(comp, metric: str = "accuracy", scale: float = 1.0, unit: str = "", digits: int = 4) -> list[str]:
    """:func:`plan_text` for every comparison of ``metric`` in a comparisons frame, per data set."""
    if comp is None or getattr(comp, "empty", True) or "seeds_needed" not in comp:
        return []
    part = comp[comp["metric"] == metric]
    return [f"{r['dataset']} · " + plan_text(r, scale, unit, digits) for r in part.to_dict("records")]


__all__ = ["power", "min_detectable_effect", "seeds_for", "seed_plan", "SeedPlan", "assurance", "bootstrap_power",
           "t_test_rejections", "plan_text", "seed_lines", "NOTES", "ALPHA", "POWER", "SMALL_N"]
