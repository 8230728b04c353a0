"""Run a suite: for every (data set, method) tune on val, re-train the best over seeds, score test.

Everything computed goes to the study storage the moment it exists; the tables are rebuilt from
the storage at the end (and by ``harness report``), so an interrupted run loses nothing and a rerun
computes only what is missing. ``harness worker`` processes may join any study (``harness.worker``);
the seed re-runs of a study are claimed by one process, whichever sees the tuning budget reached.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness import records, storage as storages
from harness.cash import CashMethod, write_per_method
from harness.data import load_task
from harness.errors import ConfigError
from harness.multiobjective import directions
from harness.phases import FinalSettings, PhaseSettings, TuneSettings, default_config, run_seeds, tune
from harness.plugins import Registry
from harness.records import best_trial, collect_provenance, collect_rows, failure_summary, stored_results, val_accuracy
from harness.report.provenance import gather, now
from harness.report.pipeline import Report
from harness.samplers import make_pruner, make_sampler
from harness.shift import parse_ood, parse_shifts
from harness.storage import budget_used, claim_final, make_storage, redact
from harness.suite import DatasetSpec, RowSpec, Suite, suite_spec
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
    ran_final: bool = False  # this process ran (or finished) the seed re-runs


@dataclass
class RunResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    outcomes: list[RowOutcome] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    report: Report | None = None  # the frames the tables were written from

    @property
    def failed(self) -> list[RowOutcome]:
        return [o for o in self.outcomes if o.status != "ok"]


def study_name(suite: Suite, ds: DatasetSpec, row: RowSpec) -> str:
    return f"{suite.name}/{ds.label}/{row.name}"


def row_method(registry: Registry, suite: Suite, row: RowSpec):
    """The method behind a row: a plugin's, or the CASH choice among ``suite.cash``."""
    if row.method == "cash" and suite.cash:
        return CashMethod(registry, suite.cash)
    return registry.method(row.method)


def row_task(registry: Registry, suite: Suite, ds: DatasetSpec, row: RowSpec, device: torch.device,
             cache: dict[bool, Task] | None = None) -> Task:
    """The task a row trains on: the data set with its label budget, unless the row asks for all labels."""
    cache = {} if cache is None else cache
    budget = not row.all_labels and (ds.labels_per_class is not None or ds.label_fraction is not None)
    if budget not in cache:
        cache[budget] = load_task(
            registry, ds.name, options=ds.options, data_seed=suite.data_seed,
            val_frac=ds.val_frac, test_frac=ds.test_frac,
            labels_per_class=ds.labels_per_class if budget else None,
            label_fraction=ds.label_fraction if budget else None, device=device,
        )
    return cache[budget]


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
    storage = make_storage(suite.storage, out_dir, heartbeat=suite.heartbeat, retry_s=suite.storage_retry)
    rows_methods = [(row, row_method(registry, suite, row)) for row in suite.all_rows()]  # unknown names fail here
    seeds = [suite.seed_base + i for i in range(max(suite.budget(r).seeds for r in suite.all_rows()))]
    o = suite.overrides
    provenance = gather(
        suite=suite.name, device=device, seeds=seeds, data_seed=suite.data_seed,
        sampler=f"{suite.sampler} (seed {suite.sampler_seed}; every further process joining a study samples "
                "with a seed of its own)",
        pruner=suite.pruner, budget={"trials": o.trials or suite.trials, "seeds": o.seeds or suite.seeds,
                                     "epochs": o.epochs or suite.epochs, "timeout": suite.timeout},
        storage=redact(str(suite.storage)) if suite.storage else "journal file optuna.journal beside the tables",
        started_at=now(),
    )
    outcomes: list[RowOutcome] = []
    with _Progress(console, progress) as bars:
        for d_i, ds in enumerate(suite.datasets):
            tasks: dict[bool, Task] = {}
            for r_i, (row, method) in enumerate(rows_methods):
                if not row.runs_on(ds):
                    continue
                task = row_task(registry, suite, ds, row, device, tasks)
                if task.kind not in method.info.kinds:
                    outcomes.append(RowOutcome(ds.label, row.name, "skipped",
                                               f"{method.name} does not support {task.kind} tasks"))
                    continue
                outcomes.append(run_row(
                    suite, ds, row, method, task, storage, device, out_dir, bars=bars, d_i=d_i, r_i=r_i,
                    provenance=provenance, cache_dir=cache_dir, plugin_modules=_plugin_modules(registry),
                    say=lambda m: console.print(m, highlight=False),
                ))
    provenance["finished_at"] = now()
    # Rows whose results an earlier run computed keep that run's provenance.
    computed = {(o.dataset, o.row) for o in outcomes if o.ran_final}
    for summary, meta in records.harness_studies(storage, suite.name):
        if (meta.dataset, meta.row) in computed:
            optuna.load_study(study_name=summary.study_name, storage=storage).set_user_attr(records.PROVENANCE, provenance)
    from harness.report.html import method_descriptions  # matplotlib loads only when a report is written

    report = suite_report(storage, suite, descriptions=method_descriptions(registry))
    paths = write_suite_tables(storage, suite, out_dir, report=report)
    return RunResult(out_dir=out_dir, rows=report.rows, outcomes=outcomes, paths=paths, report=report)


def _plugin_modules(registry: Registry) -> list[str]:
    """Plugins loaded as modules by name (``--plugin``): a worker must load them too."""
    return [name for name, rec in registry.plugins.items() if rec.source.startswith("module ")]


def suite_report(storage, suite: Suite, descriptions: dict[str, dict[str, str]] | None = None) -> Report:
    """The suite's report, its rows collected from the storage once."""
    from harness.report.pipeline import build
    from harness.report.plots import load_studies

    wanted = suite.pairs()
    rows = [r for r in collect_rows(storage, suite.name) if (r["dataset"], r["method"]) in wanted]
    return build(rows, collect_provenance(storage, suite.name), studies=load_studies(storage, suite.name, wanted),
                 title=suite.name, descriptions=descriptions)


def write_suite_tables(storage, suite: Suite, out_dir: Path, descriptions: dict[str, dict[str, str]] | None = None,
                       report: Report | None = None) -> dict[str, Path]:
    """The suite's tables from the storage alone (or from ``report``, built by :func:`suite_report`),
    plus CASH and Pareto tables of its studies, and the report page (``index.html``)."""
    report = report or suite_report(storage, suite, descriptions)
    paths = write_study_extras(storage, suite.name, out_dir)  # before the page, which embeds the Pareto plots
    paths.update(report.write(out_dir))
    return paths


def write_study_extras(storage, suite_name: str | None, out_dir: Path) -> dict[str, Path]:
    """``cash_<data set>.csv/.md`` (best trial per method) for CASH studies and
    ``pareto_<data set>_<row>.csv/.md/.png`` for multi-objective ones."""
    from harness.report.pareto import write_pareto

    paths: dict[str, Path] = {}
    for summary, meta in records.harness_studies(storage, suite_name):
        if not meta.cash and len(meta.objectives) < 2:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        if meta.cash:
            stem = f"cash_{_safe(meta.dataset)}"
            for k, v in write_per_method(study, out_dir, stem).items():
                paths[f"{stem}_{k}"] = v
        if len(meta.objectives) > 1 and study.best_trials:
            stem = f"pareto_{_safe(meta.dataset)}_{_safe(meta.row)}"
            for k, v in write_pareto(study, tuple(meta.objectives), out_dir, stem,
                                     retrained=summary.user_attrs.get(records.BEST_TRIAL)).items():
                paths[f"{stem}_{k}"] = v
    return paths


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-@" else "_" for c in name)


class _NoBars:
    def add(self, *args, **kwargs):
        return None

    def update(self, *args, **kwargs):
        pass


def open_study(suite: Suite, ds: DatasetSpec, row: RowSpec, storage, sampler_seed: int) -> optuna.Study:
    """Create the row's study, or load it when it exists (several processes may do both at once).
    ``sampler_seed``: this process's own (see :func:`harness.storage.stream_seed`)."""
    objectives = tuple(suite.objectives)
    study = optuna.create_study(
        storage=storage, study_name=study_name(suite, ds, row), directions=directions(objectives), load_if_exists=True,
        sampler=make_sampler(suite.sampler, sampler_seed),
        pruner=make_pruner(suite.pruner if len(objectives) == 1 else "none", suite.budget(row).epochs),
    )
    if len(study.directions) != len(objectives):
        raise ConfigError(f"study {study.study_name!r} exists with {len(study.directions)} objective(s), not "
                          f"{len(objectives)}: give the run another --name or --out")
    return study


def run_row(suite: Suite, ds: DatasetSpec, row: RowSpec, method, task: Task, storage, device: torch.device,
            out_dir: Path, *, bars=None, d_i: int = 0, r_i: int = 0, provenance: dict[str, Any] | None = None,
            cache_dir: Path | None = None, plugin_modules: list[str] = (), max_trials: int | None = None,
            worker: bool = False, say: Callable[[str], None] = lambda _: None) -> RowOutcome:
    """Tune one (data set, row) on val, then re-train the best over seeds and score test.

    Every process on a study samples with a stream of its own: the first with the suite's seed, any
    later one (a second ``harness run`` on the same folder, a worker, a resumed run) with a seed
    derived from it and its place in line (:func:`harness.storage.stream_index`), so no two propose
    the same configurations. ``worker``: a ``harness worker`` joining a study made by
    ``harness run``: it leaves the study's description alone, and stops after ``max_trials`` trials
    without the seed phase unless the budget is reached. The seed phase is claimed by one process;
    ``harness run`` waits for a worker that holds it, a worker does not.
    """
    bars = bars or _NoBars()
    cache_dir = cache_dir or Path(".harness-cache")
    budget = suite.budget(row)
    trials = budget.trials
    phase = PhaseSettings(epochs=budget.epochs, device=device, amp=suite.amp, compile=suite.compile, cache_dir=cache_dir)
    stream = storages.stream_index(storage, study_name(suite, ds, row))
    study = open_study(suite, ds, row, storage, storages.stream_seed(suite.sampler_seed, stream))
    if not worker:
        meta = records.StudyMeta(
            suite=suite.name, dataset=ds.label, row=row.name, method=method.name, plugin=method.plugin,
            dataset_order=d_i, row_order=r_i, sizes=task.sizes(), kind=task.kind,
            objectives=tuple(suite.objectives), cash=tuple(suite.cash) if row.method == "cash" else (),
            spec=suite_spec(suite), plugin_modules=tuple(plugin_modules), budget=budget,
        )
        study.set_user_attr(records.META, meta.to_attr())
        if records.PROVENANCE not in study.user_attrs:  # replaced when this run computes the row's results
            study.set_user_attr(records.PROVENANCE, provenance or {})
        if storages.is_shared(suite.storage):
            say(f"more workers may join: harness worker --study '{study.study_name}' --storage URL")
    label = f"{ds.label} · {row.name}"
    tune_task = task.without_test()
    if row.tune:
        if not study.trials and not worker and stream == 0:  # the first process queues the defaults, once
            if hasattr(method, "default_trials"):  # CASH: every method's defaults
                for params in method.default_trials(tune_task, budget.params):
                    study.enqueue_trial(params)
            elif method.info.defaults:
                study.enqueue_trial({k: v for k, v in method.info.defaults.items() if k not in budget.params})
        bar = bars.add(f"{label}: tuning", total=trials, completed=min(trials, budget_used(study)))

        def on_trial(t):
            best = best_trial(study)
            note = f"best val {val_accuracy(best):.4f}" if best else ""
            bars.update(bar, completed=min(trials, budget_used(study)), note=note)

        tune(study, method, tune_task, TuneSettings(
            trials=trials, phase=phase, timeout=suite.timeout, seed_base=suite.seed_base, pinned=budget.params,
            objectives=tuple(suite.objectives), trial_timeout=suite.trial_timeout, max_retries=suite.max_retries,
            max_trials=max_trials,
        ), on_trial=on_trial, say=say)
        if worker and budget_used(study) < trials:
            return RowOutcome(ds.label, row.name, "waiting",
                              f"{study.study_name}: {budget_used(study)} of {trials} trials done; the seed "
                              "re-runs start when the budget is reached")
        best = best_trial(study)
        if best is None:
            reason = failure_summary(study)
            study.set_user_attr(records.FAILURE, reason)
            return RowOutcome(ds.label, row.name, "FAIL", reason)
        config = best.user_attrs[records.CONFIG]
    else:
        best, config = None, default_config(method, tune_task, budget.params)
    row_seeds = [suite.seed_base + i for i in range(budget.seeds)]

    def done() -> bool:
        return all(seed in stored_results(study) for seed in row_seeds)

    claim = claim_final(study, done, wait=not worker, say=say)
    ran_final = claim is not None
    if claim is None and not done():
        return RowOutcome(ds.label, row.name, "waiting", f"the seed re-runs of {study.study_name} run elsewhere")
    if claim is not None:
        try:
            if best is not None:
                study.set_user_attr(records.BEST_TRIAL, best.number)
                study.set_user_attr(records.BEST_VAL_ACCURACY, val_accuracy(best))
            bar = bars.add(f"{label}: seeds", total=len(row_seeds))
            run_seeds(study, method, task, config, FinalSettings(
                seeds=row_seeds, phase=phase, artifact_dir=out_dir / "artifacts" / _safe(ds.label) / _safe(row.name),
                calibrate=row.calibrate, shifts=parse_shifts(suite.shifts), ood=parse_ood(suite.ood),
            ), on_seed=lambda seed, r: bars.update(bar, advance=1))
            bars.update(bar, completed=len(row_seeds))
        except BaseException:
            claim.release(ok=False)
            raise
        claim.release(ok=True)
        if row.tune:
            storages.settle(study)  # trials of workers that died while the seeds ran
    results = stored_results(study)
    failed = [results[s] for s in row_seeds if results[s].get("status") != "ok"]
    if failed:
        return RowOutcome(ds.label, row.name, "FAIL" if len(failed) == len(row_seeds) else "partial",
                          failed[0].get("reason", ""), ran_final=ran_final)
    return RowOutcome(ds.label, row.name, "ok", ran_final=ran_final)


__all__ = ["run_suite", "run_row", "RunResult", "resolve_device", "study_name", "write_suite_tables"]
