"""``harness run --seeds-until-decided``: seed rounds on a real (tiny) run, resumed without re-running a seed."""
from __future__ import annotations

import json

import optuna
import pytest
from rich.console import Console

from harness.errors import ConfigError
from harness.plugins import load_plugins
from harness.records import harness_studies, stored_results
from harness.rounds import round_suite, run_until_decided
from harness.storage import make_storage
from harness.suite import from_mapping

SUITE = {"name": "r", "datasets": ["digits"], "trials": 1, "seeds": 3, "epochs": 1,
         "methods": ["seeded", "seeded_blurred"], "compare": {"baseline": "seeded"}}


@pytest.fixture(scope="module")
def reg():
    return load_plugins(modules=["fixture_plugins.seeded"])


def seeds_stored(out) -> dict[str, list[int]]:
    storage = make_storage(None, out)
    return {meta.row: sorted(stored_results(optuna.load_study(study_name=s.study_name, storage=storage)))
            for s, meta in harness_studies(storage, "r")}


def test_rounds_add_seeds_until_decided_and_a_rerun_runs_nothing(reg, tmp_path):
    out = tmp_path / "out"
    result = run_until_decided(from_mapping(SUITE), reg, out, 9, console=Console(quiet=True), progress=False)
    prov = json.loads((out / "provenance.json").read_text())["seed_rounds"]
    (decision,) = prov["decisions"]
    assert decision["state"] == "differ" and decision["e_value"] >= 20
    looks = [look["seeds"]["digits · seeded"] for look in prov["looks"]]
    assert looks[0] == 3 and looks == sorted(looks) and all(b - a == 3 for a, b in zip(looks, looks[1:]))
    n = looks[-1]
    assert seeds_stored(out) == {"seeded": list(range(n)), "seeded_blurred": list(range(n))}
    assert prov["seeds"] == {"digits · seeded": n, "digits · seeded_blurred": n}
    assert "always-valid" in prov["rule"]
    assert len(result.report.per_seed) == 2 * n
    assert "Seed rounds:" in (out / "comparisons.md").read_text()
    assert "seeds needed" in (out / "comparisons.md").read_text()
    # a rerun continues from the storage: everything is decided, so nothing runs again
    before = (out / "optuna.journal").read_text().count('"result:')
    run_until_decided(from_mapping(SUITE), reg, out, 9, console=Console(quiet=True), progress=False)
    assert (out / "optuna.journal").read_text().count('"result:') == before


def test_round_suite_gives_each_row_its_own_seeds():
    suite = from_mapping({**SUITE, "datasets": ["digits", "iris"]})
    targets = {("digits", "seeded"): 6, ("digits", "seeded_blurred"): 3, ("iris", "seeded"): 9,
               ("iris", "seeded_blurred"): 9}
    rs = round_suite(suite, targets)
    got = {(ds.label, r.name): rs.budget(r).seeds for ds in rs.datasets for r in rs.rows_for(ds)}
    assert got == targets and rs.pairs() == suite.pairs()


def test_limit_below_the_first_round_is_one_line(reg, tmp_path):
    with pytest.raises(ConfigError, match="below the first round's 3 seeds"):
        run_until_decided(from_mapping(SUITE), reg, tmp_path / "out", 2, console=Console(quiet=True))
    with pytest.raises(ConfigError, match="not a known metric"):
        run_until_decided(from_mapping({**SUITE, "compare": {"metric": "speed"}}), reg, tmp_path / "out", 6,
                          console=Console(quiet=True))
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_limit_that_is_not_a_positive_integer(cli):
    res = cli("--threads", "1", "run", "erm", "--seeds-until-decided", "0", "--no-progress")
    assert res.returncode == 2
    assert res.stderr.strip() == "harness: error: --seeds-until-decided must be a positive integer, got 0"
