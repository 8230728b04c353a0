"""The always-valid paired test behind seed rounds (harness.sequential): its e-value against the
Bayes factor integrated numerically, its false-positive rate over many looks by simulation, and
the bookkeeping of which rows get more seeds."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from harness.errors import ConfigError
from harness.sequential import (
    AT_MAX, DIFFER, IDENTICAL, OPEN, PRIOR_G, CompareSpec, assess, e_value, first_rejection, next_targets,
    parse_compare,
)
from harness.suite import from_mapping


def integrated_bayes_factor(d: np.ndarray, g: float = PRIOR_G) -> float:
    """∫ p(t | δ) N(δ; 0, g) dδ / p(t | 0): the t statistic's noncentral-t likelihood averaged over the prior."""
    n = d.size
    t = d.mean() / (d.std(ddof=1) / math.sqrt(n))
    num = integrate.quad(lambda delta: stats.nct.pdf(t, n - 1, delta * math.sqrt(n)) * stats.norm.pdf(delta, 0, math.sqrt(g)),
                         -np.inf, np.inf)[0]
    return num / stats.t.pdf(t, n - 1)


@pytest.mark.parametrize("seed, n, shift", [(0, 3, 0.0), (1, 5, 0.8), (2, 8, 0.3), (3, 12, -1.0)])
def test_e_value_is_the_bayes_factor_of_the_t_statistic(seed, n, shift):
    d = np.random.default_rng(seed).normal(shift, 1.0, n)
    assert float(e_value(d)) == pytest.approx(integrated_bayes_factor(d), rel=1e-5)
    assert float(e_value(d * 0.003)) == pytest.approx(float(e_value(d)), rel=1e-9)  # the spread does not matter


def test_false_positive_rate_stays_at_alpha_however_often_one_looks():
    rng = np.random.default_rng(10)
    d = rng.normal(0.0, 0.01, (20000, 30))
    every_seed = first_rejection(d, range(2, 31), 1 / 0.05)
    rounds = first_rejection(d, range(3, 31, 3), 1 / 0.05)
    assert (every_seed > 0).mean() <= 0.05 + 0.01
    assert (rounds > 0).mean() <= 0.05 + 0.01
    # the fixed-sample t-test looked at after every round would not keep it
    t_rounds = np.zeros(d.shape[0], bool)
    for n in range(3, 31, 3):
        t_rounds |= stats.ttest_1samp(d[:, :n], 0.0, axis=1).pvalue < 0.05
    assert t_rounds.mean() > 0.1


def test_bonferroni_threshold_keeps_the_family_at_alpha():
    rng = np.random.default_rng(11)
    d = rng.normal(0.0, 1.0, (3, 10000, 15))  # three comparisons, no true difference
    hits = np.stack([first_rejection(d[k], range(3, 16, 3), 3 / 0.05) > 0 for k in range(3)])
    assert hits.any(0).mean() <= 0.05 + 0.01


def test_a_planted_difference_is_found_and_early():
    rng = np.random.default_rng(12)
    d = rng.normal(1.0, 1.0, (10000, 21))  # standardised difference 1
    found = first_rejection(d, range(3, 22, 3), 1 / 0.05)
    assert (found > 0).mean() >= 0.8
    assert np.median(found[found > 0]) <= 12


def test_no_spread_is_decided_by_its_limit_and_no_difference_never():
    assert float(e_value(np.full(6, 0.02))) == pytest.approx((1 + 6 * PRIOR_G) ** 2.5)
    assert float(e_value(np.zeros(6))) == 1.0
    assert float(e_value(np.array([0.3]))) == 1.0


def rows(values: dict[str, list[float]]) -> list[dict]:
    return [{"dataset": "digits", "method": m, "seed": s, "status": "ok", "accuracy": v}
            for m, vs in values.items() for s, v in enumerate(vs)]


def test_assess_and_next_round():
    rng = np.random.default_rng(13)
    base = list(0.9 + rng.normal(0, 0.01, 6))
    values = {"erm": base, "twin": base, "far": [v - 0.05 + rng.normal(0, 0.002) for v in base],
              "near": [v + rng.normal(0, 0.01) for v in base]}
    spec = CompareSpec(baseline="erm")
    asked = {("digits", m): 6 for m in values}
    states = {s.b: s for s in assess(rows(values), spec, asked, max_seeds=12)}
    assert states["twin"].state == IDENTICAL and states["far"].state == DIFFER and states["near"].state == OPEN
    assert all(s.threshold == 3 / 0.05 for s in states.values())
    nxt = next_targets(list(states.values()), asked, 3, 12)
    assert nxt == {("digits", "erm"): 9, ("digits", "twin"): 6, ("digits", "far"): 6, ("digits", "near"): 9}
    at_limit = {("digits", m): 12 for m in values}
    assert {s.b: s.state for s in assess(rows(values), spec, at_limit, 12)}["near"] == AT_MAX
    assert next_targets(assess(rows(values), spec, at_limit, 12), at_limit, 3, 12) == at_limit


def test_every_pair_without_a_baseline():
    assert CompareSpec().pairs(["a", "b", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert CompareSpec(baseline="b").pairs(["a", "b", "c"]) == [("b", "a"), ("b", "c")]


@pytest.mark.parametrize("value, says", [
    ("erm", "must be a mapping"), ({"baseline": "erm", "alpah": 0.1}, "unknown key(s) in `compare:`: alpah"),
    ({"alpha": 1.5}, "compare.alpha"), ({"round": 0}, "compare.round"),
])
def test_bad_compare_is_one_line(value, says):
    with pytest.raises(ConfigError) as err:
        parse_compare(value)
    assert says in str(err.value)


def test_suite_checks_the_baseline_is_a_row():
    with pytest.raises(ConfigError, match="compare.baseline 'sgd' is not a row"):
        from_mapping({"datasets": ["digits"], "methods": ["erm"], "compare": {"baseline": "sgd"}})
    suite = from_mapping({"datasets": ["digits"], "methods": ["erm", "mixup"], "compare": {"baseline": "erm"}})
    assert parse_compare(suite.compare) == CompareSpec(baseline="erm")
