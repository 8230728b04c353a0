"""``harness run --seeds-until-decided MAX``: the final phase in rounds until the comparisons are decided.

The first round is an ordinary run (tuning, then each row's ``seeds``). After each round the
requested comparisons (the suite's ``compare:``; every pair of rows when it has none) are tested
with the always-valid paired test of :mod:`harness.sequential`; the rows of every open comparison
are asked for ``round`` more seeds (at most MAX) and the suite runs again. Each round only extends
a row's seed list: seeds already stored are never re-run, tuning never sees test, and a rerun of
the same command continues from the seeds the storage holds. The rule, the looks and the seeds
each row got are stored on the studies (``records.SEQUENTIAL``) and land in the provenance.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console

from harness import records
from harness.errors import ConfigError
from harness.metrics import column
from harness.plugins import Registry
from harness.runner import RunResult, _existing_storage, run_suite, suite_report, write_suite_tables
from harness.sequential import AT_MAX, DIFFER, OPEN, CompareSpec, PairState, assess, next_targets, parse_compare, rule_text
from harness.storage import make_storage, redact
from harness.suite import Suite


def round_suite(suite: Suite, targets: dict[tuple[str, str], int]) -> Suite:
    """The suite with each (data set, row) asked for its own number of seeds: a row per data set,
    under its own name, so the studies and tables are the same as the suite's."""
    rows = [dataclasses.replace(row, datasets=(ds.label,), seeds=targets[(ds.label, row.name)])
            for row in suite.rows for ds in suite.datasets if row.runs_on(ds)]
    return suite.replace(rows=tuple(rows), overrides=dataclasses.replace(suite.overrides, seeds=None))


def run_until_decided(suite: Suite, registry: Registry, out_dir: Path, max_seeds: int, *,
                      console: Console | None = None, progress: bool = True, fresh: bool = False,
                      cache_dir: Path | None = None, extra_provenance: dict[str, Any] | None = None) -> RunResult:
    """Run ``suite`` in seed rounds until every requested comparison is decided or each of its rows
    has ``max_seeds`` seeds; return the last round's result with the tables rewritten."""
    console = console or Console(stderr=True)
    out_dir = Path(out_dir)

    def say(message: str) -> None:
        console.print(redact(message), highlight=False)

    spec = parse_compare(suite.compare) or CompareSpec()
    if column(spec.metric) is None:
        raise ConfigError(f"compare.metric {spec.metric!r} is not a known metric")
    if suite.cash:
        raise ConfigError("--seeds-until-decided adds seeds to the suite's listed rows; the CASH row has one "
                          "seed budget: run CASH without it")
    first = {(ds.label, row.name): suite.budget(row).seeds for ds in suite.datasets for row in suite.rows_for(ds)}
    if max_seeds < max(first.values()):
        raise ConfigError(f"--seeds-until-decided {max_seeds} is below the first round's {max(first.values())} seeds")
    step = spec.round or min(first.values())
    asked = dict(first)
    storage = None if fresh else _existing_storage(suite, out_dir)
    looks: list[dict[str, Any]] = []
    if storage is not None:  # a rerun continues the rounds from the seeds it asked for last
        for summary, meta in records.harness_studies(storage, suite.name):
            key = (meta.dataset, meta.row)
            if key in asked and meta.budget is not None:
                asked[key] = min(max_seeds, max(asked[key], meta.budget.seeds))
            earlier = (summary.user_attrs.get(records.SEQUENTIAL) or {}).get("looks") or []
            looks = earlier if len(earlier) > len(looks) else looks
    while True:
        current = round_suite(suite, asked)
        result = run_suite(current, registry, out_dir, console=console, progress=progress, fresh=fresh,
                           cache_dir=cache_dir, extra_provenance=extra_provenance)
        fresh = False
        storage = storage or make_storage(suite.storage, out_dir, heartbeat=suite.heartbeat,
                                          retry_s=suite.storage_retry)
        states = assess(records.collect_rows(storage, suite.name), spec, asked, max_seeds)
        look = {"seeds": {f"{ds} · {row}": n for (ds, row), n in asked.items()},
                "open": [f"{s.dataset} · {s.a} vs {s.b}" for s in states if s.state == OPEN]}
        if not looks or looks[-1]["seeds"] != look["seeds"]:  # a rerun repeats the last stored look
            looks.append(look)
        say(f"round {len(looks)}: " + "; ".join(_state_text(s) for s in states))
        targets = next_targets(states, asked, step, max_seeds)
        if targets == asked:
            break
        asked = targets
    record = {"rule": rule_text(spec, min(first.values()), step, max_seeds), "compare": dataclasses.asdict(spec),
              "max_seeds": max_seeds, "round": step, "looks": looks,
              "seeds": {f"{ds} · {row}": n for (ds, row), n in asked.items()},
              "decisions": [s.as_dict() for s in states], "finished_at": _now()}
    for summary, meta in records.harness_studies(storage, suite.name):
        if (meta.dataset, meta.row) in asked:
            optuna.load_study(study_name=summary.study_name, storage=storage).set_user_attr(records.SEQUENTIAL, record)
    from harness.report.html import method_descriptions

    report = suite_report(storage, current, descriptions=method_descriptions(registry))
    paths = write_suite_tables(storage, current, out_dir, report=report)
    return dataclasses.replace(result, rows=report.rows, paths=paths, report=report)


def _state_text(s: PairState) -> str:
    where = f"{s.a} vs {s.b} on {s.dataset}"
    if s.state == DIFFER:
        return f"{where}: decided after {s.n} seeds (e = {s.e_value:.3g} ≥ {s.threshold:g})"
    if s.state == OPEN:
        return f"{where}: open after {s.n} seeds (e = {s.e_value:.3g} < {s.threshold:g})"
    if s.state == AT_MAX:
        return f"{where}: {AT_MAX} ({s.n} seeds, e = {s.e_value:.3g} < {s.threshold:g})"
    return f"{where}: {s.state}"


def _now() -> str:
    from harness.report.provenance import now

    return now()


__all__ = ["run_until_decided", "round_suite"]
