"""Run a suite: for every (data set, method) tune on val, re-train the best over seeds, score test.

Everything computed goes to the study storage the moment it exists; the tables are rebuilt from
the storage at the end (and by ``harness report``), so an interrupted run loses nothing and a rerun
computes only what is missing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.data import load_task
from harness.errors import ConfigError
from harness.evaluate import FinalSettings, run_seeds
from harness.plugins import Registry
from harness.report.collect import META_KEY, collect_provenance, collect_rows
from harness.report.provenance import gather, now
from harness.report.tables import write_tables
from harness.search import (
    PinnedTrial, TuneSettings, best_trial, budget_used, failure_summary, make_pruner, make_sampler,
    make_storage, redact, tune,
)
from harness.shift import parse_ood, parse_shifts
from harness.suite import DatasetSpec, RowSpec, Suite
from harness.task import Task


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}") from None


@dataclass
class RowOutcome:
    dataset: str
    row: str
    status: str
    detail: str = ""


@dataclass
class RunResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    outcomes: list[RowOutcome] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def failed(self) -> list[RowOutcome]:
        return [o for o in self.outcomes if o.status != "ok"]


def study_name(suite: Suite, ds: DatasetSpec, row: RowSpec) -> str:
    return f"{suite.name}/{ds.label}/{row.name}"


def _default_config(method, task: Task, pinned: dict[str, Any]) -> dict[str, Any]:
    trial = optuna.trial.FixedTrial({**method.info.defaults, **pinned})
    try:
        return {**method.search_space(PinnedTrial(trial, pinned), task), **pinned}
    except ValueError as exc:
        raise ConfigError(f"{method.name}: its defaults do not cover the search space ({exc})") from None


class _Progress:
    """A rich progress display, or nothing when output is not a terminal and quiet is asked."""

    def __init__(self, console: Console, enabled: bool):
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(), console=console, disable=not enabled, transient=False,
        )

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def add(self, description: str, total: int, completed: int = 0):
        return self.progress.add_task(description, total=total, completed=completed, note="")

    def update(self, task_id, **kw):
        self.progress.update(task_id, **kw)


def run_suite(
    suite: Suite,
    registry: Registry,
    out_dir: Path,
    console: Console | None = None,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> RunResult:
    console = console or Console(stderr=True)
    device = resolve_device(suite.device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = cache_dir or Path(".harness-cache")
    storage = make_storage(suite.storage, out_dir)
    rows_methods = [(row, registry.method(row.method)) for row in suite.rows]  # unknown names fail here
    seeds = [suite.seed_base + i for i in range(max(r.seeds or suite.seeds for r in suite.rows))]
    provenance = gather(
        suite=suite.name, device=device, seeds=seeds, data_seed=suite.data_seed, sampler=f"{suite.sampler} (seed {suite.sampler_seed})",
        pruner=suite.pruner, budget={"trials": suite.trials, "seeds": suite.seeds, "epochs": suite.epochs, "timeout": suite.timeout},
        storage=redact(str(suite.storage)) if suite.storage else "journal file optuna.journal beside the tables",
        started_at=now(),
    )
    outcomes: list[RowOutcome] = []
    with _Progress(console, progress) as bars:
        for d_i, ds in enumerate(suite.datasets):
            tasks: dict[bool, Task] = {}

            def task_for(all_labels: bool) -> Task:
                budget = not all_labels and (ds.labels_per_class is not None or ds.label_fraction is not None)
                if budget not in tasks:
                    tasks[budget] = load_task(
                        registry, ds.name, options=ds.options, data_seed=suite.data_seed,
                        val_frac=ds.val_frac, test_frac=ds.test_frac,
                        labels_per_class=ds.labels_per_class if budget else None,
                        label_fraction=ds.label_fraction if budget else None, device=device,
                    )
                return tasks[budget]

            for r_i, (row, method) in enumerate(rows_methods):
                task = task_for(row.all_labels)
                if task.kind not in method.info.kinds:
                    outcomes.append(RowOutcome(ds.label, row.name, "skipped",
                                               f"{method.name} does not support {task.kind} tasks"))
                    continue
                outcomes.append(_run_row(suite, ds, row, method, task, storage, device, cache_dir, seeds,
                                         bars, d_i, r_i, provenance, out_dir))
    provenance["finished_at"] = now()
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        meta = summary.user_attrs.get(META_KEY)
        if meta and meta.get("suite") == suite.name:
            optuna.load_study(study_name=summary.study_name, storage=storage).set_user_attr("provenance", provenance)
    rows = collect_rows(storage, suite.name)
    wanted = {(ds.label, row.name) for ds in suite.datasets for row in suite.rows}
    rows = [r for r in rows if (r["dataset"], r["method"]) in wanted]
    paths = write_tables(rows, out_dir, collect_provenance(storage, suite.name), title=suite.name)
    return RunResult(out_dir=out_dir, rows=rows, outcomes=outcomes, paths=paths)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-@" else "_" for c in name)


def _run_row(suite, ds, row, method, task, storage, device, cache_dir, seeds, bars, d_i, r_i, provenance,
             out_dir) -> RowOutcome:
    epochs = row.epochs or suite.epochs
    trials = row.trials or suite.trials
    study = optuna.create_study(
        storage=storage, study_name=study_name(suite, ds, row), direction="maximize", load_if_exists=True,
        sampler=make_sampler(suite.sampler, suite.sampler_seed), pruner=make_pruner(suite.pruner, epochs),
    )
    study.set_user_attr(META_KEY, {
        "suite": suite.name, "dataset": ds.label, "row": row.name, "method": method.name, "plugin": method.plugin,
        "dataset_order": d_i, "row_order": r_i, "sizes": task.sizes(), "kind": task.kind,
    })
    study.set_user_attr("provenance", provenance)
    label = f"{ds.label} · {row.name}"
    tune_task = task.without_test()
    if row.tune:
        if method.info.defaults and not study.trials:
            study.enqueue_trial({k: v for k, v in method.info.defaults.items() if k not in row.params})
        bar = bars.add(f"{label}: tuning", total=trials, completed=min(trials, budget_used(study)))

        def on_trial(t):
            best = best_trial(study)
            note = f"best val {best.value:.4f}" if best else ""
            bars.update(bar, completed=min(trials, budget_used(study)), note=note)

        tune(study, method, tune_task, TuneSettings(
            trials=trials, epochs=epochs, device=device, amp=suite.amp, timeout=suite.timeout,
            seed_base=suite.seed_base, pinned=row.params, cache_dir=cache_dir,
        ), on_trial=on_trial)
        best = best_trial(study)
        if best is None:
            reason = failure_summary(study)
            study.set_user_attr("failure", reason)
            return RowOutcome(ds.label, row.name, "FAIL", reason)
        config = best.user_attrs["config"]
        study.set_user_attr("best_trial", best.number)
        study.set_user_attr("best_val_accuracy", best.value)
    else:
        config = _default_config(method, tune_task, row.params)
    n_seeds = row.seeds or suite.seeds
    row_seeds = seeds[:n_seeds]
    bar = bars.add(f"{label}: seeds", total=n_seeds)
    results = run_seeds(study, method, task, config, FinalSettings(
        seeds=row_seeds, epochs=epochs, device=device, amp=suite.amp, cache_dir=cache_dir,
        artifact_dir=out_dir / "artifacts" / _safe(ds.label) / _safe(row.name),
        calibrate=row.calibrate, shifts=parse_shifts(suite.shifts), ood=parse_ood(suite.ood),
    ), on_seed=lambda seed, r: bars.update(bar, advance=1))
    bars.update(bar, completed=n_seeds)
    failed = [r for r in results.values() if r.get("status") != "ok"]
    if failed:
        return RowOutcome(ds.label, row.name, "FAIL" if len(failed) == len(results) else "partial",
                          failed[0].get("reason", ""))
    return RowOutcome(ds.label, row.name, "ok")


__all__ = ["run_suite", "RunResult", "resolve_device", "study_name"]
