"""Seeds added in rounds until each comparison is decided: an always-valid paired test.

After every round of seeds, each requested comparison (two rows, one data set, one metric) is
tested on the paired differences of the seeds both rows completed. The test is the sequential
t-test of Lai (1976) as an e-process (the "safe t-test": Grünwald, de Heide & Koolen 2024,
*Safe testing*; Pérez-Ortiz et al. 2024, *E-statistics, group invariance and anytime-valid testing*):
the Bayes factor of a normal prior N(0, g) on the standardised mean difference δ = μ/σ against
δ = 0, with the scale-invariant prior 1/σ on σ under both,

    E_n = (1 + n g)^(-1/2) · [(1 + t²/ν) / (1 + t²/(ν (1 + n g)))]^(n/2),   ν = n − 1,

a function of the paired t statistic t alone. Under "no difference" (normal paired differences of
any spread) E_n is a test martingale in n, so by Ville's inequality P(E_n ≥ 1/α for some n) ≤ α:
looking after every round — any number of rounds, of any size, stopped for any reason — keeps
the false-positive rate at α. With m comparisons on one data set and metric the threshold is m/α
(Bonferroni), so the family-wise rate stays at α too. A comparison with the same result on every
seed for both rows has no spread: it is settled as identical (stopping a comparison early never
raises its false-positive rate).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from harness.errors import ConfigError

PRIOR_G = 1.0  # prior variance of the standardised difference δ: sized for |δ| near 1 (a few seeds' worth)
DIFFER, OPEN, AT_MAX, IDENTICAL = "differ", "open", "undecided at the seed limit", "identical on every seed"


@dataclass(frozen=True)
class CompareSpec:
    """Which comparisons a seed-rounds run must decide (the suite's ``compare:`` mapping).

    ``baseline``: compare every row with this row (``None``: every pair of rows). ``metric``: a
    per-seed metric. ``alpha``: the family-wise false-positive rate per data set. ``round``: seeds
    added per round (``None``: the first round's size, the row's ``seeds``).
    """

    baseline: str | None = None
    metric: str = "accuracy"
    alpha: float = 0.05
    round: int | None = None

    def pairs(self, rows: Iterable[str]) -> list[tuple[str, str]]:
        """The (a, b) row pairs to decide among ``rows`` (a the baseline when there is one)."""
        rows = list(dict.fromkeys(rows))
        if self.baseline is not None:
            return [(self.baseline, r) for r in rows if r != self.baseline] if self.baseline in rows else []
        return [(a, b) for i, a in enumerate(rows) for b in rows[i + 1:]]

    def describe(self) -> str:
        which = f"every row against {self.baseline}" if self.baseline else "every pair of rows"
        return f"{which}, on {self.metric}, family-wise α = {self.alpha:g} per data set"


def parse_compare(value: Any) -> CompareSpec | None:
    """The suite's ``compare:`` mapping as a :class:`CompareSpec` (one-line error when it is wrong)."""
    if value is None:
        return None
    if isinstance(value, CompareSpec):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"`compare:` must be a mapping like {{baseline: erm}}, got {value!r}")
    unknown = set(value) - {"baseline", "metric", "alpha", "round"}
    if unknown:
        raise ConfigError(f"unknown key(s) in `compare:`: {', '.join(sorted(unknown))} "
                          "(known: baseline, metric, alpha, round)")
    spec = CompareSpec(**value)
    if spec.baseline is not None and not isinstance(spec.baseline, str):
        raise ConfigError(f"compare.baseline must be a row name, got {spec.baseline!r}")
    if not isinstance(spec.metric, str):
        raise ConfigError(f"compare.metric must be a metric name, got {spec.metric!r}")
    if isinstance(spec.alpha, bool) or not isinstance(spec.alpha, (int, float)) or not 0 < spec.alpha < 1:
        raise ConfigError(f"compare.alpha must be a number in (0, 1), got {spec.alpha!r}")
    if spec.round is not None and (isinstance(spec.round, bool) or not isinstance(spec.round, int) or spec.round < 1):
        raise ConfigError(f"compare.round must be a positive integer, got {spec.round!r}")
    return spec


def e_value(d: Iterable[float] | np.ndarray, g: float = PRIOR_G) -> np.ndarray:
    """The safe t-test's e-value of paired differences ``d`` (last axis: the seeds); 1 below 2 pairs.

    Vectorised over leading axes, so a simulation passes a (runs, n) array. Differences with no
    spread and a non-zero mean give the limit t → ∞, (1 + n g)^((n − 1)/2); none at all give 1.
    """
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    if n < 2:
        return np.ones(d.shape[:-1])
    mean = d.mean(-1)
    sd = d.std(-1, ddof=1)
    nu, ng = n - 1, n * g
    with np.errstate(divide="ignore", invalid="ignore"):
        t2 = n * mean ** 2 / sd ** 2
        log_e = -0.5 * math.log1p(ng) + 0.5 * n * (np.log1p(t2 / nu) - np.log1p(t2 / (nu * (1 + ng))))
    tol = 1e-12 * np.maximum(1.0, np.abs(d).max(-1))
    no_spread = sd <= tol
    log_e = np.where(no_spread & (np.abs(mean) > tol), 0.5 * (n - 1) * math.log1p(ng), log_e)
    log_e = np.where(no_spread & (np.abs(mean) <= tol), 0.0, log_e)
    return np.exp(log_e)


def first_rejection(d: np.ndarray, looks: Iterable[int], threshold: float, g: float = PRIOR_G) -> np.ndarray:
    """For each run (rows of ``d``), the first look n (from ``looks``) at which the e-value of the
    first n differences reaches ``threshold``, or 0 when none does: a simulation of seed rounds."""
    d = np.asarray(d, dtype=float)
    found = np.zeros(d.shape[0], dtype=int)
    for n in looks:
        hit = (found == 0) & (e_value(d[:, :n], g) >= threshold)
        found[hit] = n
    return found


@dataclass
class PairState:
    """Where one comparison stands after a round."""

    dataset: str
    a: str
    b: str
    n: int            # seeds both rows completed
    mean_diff: float  # a − b
    e_value: float
    threshold: float  # the e-value that decides: m / α
    state: str        # differ | open | undecided at the seed limit | identical on every seed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def assess(per_seed: Iterable[Mapping[str, Any]], spec: CompareSpec, asked: Mapping[tuple[str, str], int],
           max_seeds: int) -> list[PairState]:
    """Test every requested comparison on the stored per-seed rows (``dataset``, ``method`` = the
    row, ``seed``, ``status``, the metric). ``asked``: seeds each (data set, row) was asked for so
    far; a comparison whose rows were both asked for ``max_seeds`` is at the limit."""
    values: dict[tuple[str, str], dict[int, float]] = {}
    for r in per_seed:
        v = r.get(spec.metric)
        if r.get("status") == "ok" and r.get("seed") is not None and isinstance(v, (int, float)) and v == v:
            values.setdefault((r["dataset"], r["method"]), {})[int(r["seed"])] = float(v)
    out: list[PairState] = []
    for dataset in dict.fromkeys(ds for ds, _ in asked):
        rows = [row for ds, row in asked if ds == dataset]
        pairs = spec.pairs(rows)
        threshold = len(pairs) / spec.alpha
        for a, b in pairs:
            va, vb = values.get((dataset, a), {}), values.get((dataset, b), {})
            common = sorted(set(va) & set(vb))
            d = np.array([va[s] - vb[s] for s in common])
            e = float(e_value(d)) if d.size else 1.0
            limit = min(asked[(dataset, a)], asked[(dataset, b)]) >= max_seeds
            if e >= threshold:
                state = DIFFER
            elif d.size >= 2 and np.all(np.abs(d) <= 1e-12 * max(1.0, float(np.abs(list(va.values())).max()))):
                state = IDENTICAL
            else:
                state = AT_MAX if limit else OPEN
            out.append(PairState(dataset, a, b, int(d.size), float(d.mean()) if d.size else float("nan"), e,
                                 threshold, state))
    return out


def next_targets(states: list[PairState], asked: Mapping[tuple[str, str], int], step: int,
                 max_seeds: int) -> dict[tuple[str, str], int]:
    """Seeds each (data set, row) is asked for in the next round: ``step`` more (at most
    ``max_seeds``) for every row of an open comparison; the others keep theirs."""
    out = dict(asked)
    for s in states:
        if s.state == OPEN:
            for row in (s.a, s.b):
                key = (s.dataset, row)
                out[key] = max(out[key], min(max_seeds, asked[key] + step))
    return out


def rule_text(spec: CompareSpec, first: int, step: int, max_seeds: int) -> str:
    """The stopping rule in words, for the provenance and the table notes."""
    return (f"Seeds added in rounds ({first} first, then {step} more per round, at most {max_seeds} per row) "
            f"until every comparison — {spec.describe()} — is decided. Test after every round: the always-valid "
            f"sequential paired t-test (safe t-test e-value, normal prior N(0, {PRIOR_G:g}) on the standardised "
            "difference, scale-invariant prior on the spread); a comparison is decided when its e-value reaches "
            "m/α (m comparisons on the data set: Bonferroni), which keeps the false-positive rate at α however "
            "many rounds are looked at; rows with the same result on every seed are settled as identical. "
            "The fixed-sample p-values of the comparisons table do not account for the rounds; this decision does.")



def record_text(record: Mapping[str, Any]) -> str:
    """A stored seed-rounds record (``harness.rounds``) in words: rule, looks, seeds, decisions."""
    looks = record.get("looks") or []
    seeds = record.get("seeds") or {}
    parts = [str(record.get("rule", ""))]
    if looks:
        parts.append(f"{len(looks)} round{'s' * (len(looks) != 1)}, looking at "
                     + "; ".join(", ".join(f"{k} {v}" for k, v in look["seeds"].items()) for look in looks) + ".")
    if seeds:
        parts.append("Seeds each row got: " + ", ".join(f"{k} {v}" for k, v in seeds.items()) + ".")
    decisions = record.get("decisions") or []
    if decisions:
        parts.append("Decisions: " + "; ".join(
            f"{d['a']} vs {d['b']} on {d['dataset']}: {d['state']} ({d['n']} seeds, e = {d['e_value']:.3g}, "
            f"threshold {d['threshold']:g})" for d in decisions) + ".")
    return " ".join(p for p in parts if p)


__all__ = ["CompareSpec", "parse_compare", "e_value", "first_rejection", "PairState", "assess", "next_targets",
           "rule_text", "record_text", "PRIOR_G", "DIFFER", "OPEN", "AT_MAX", "IDENTICAL"]
