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

from harness.data import load_task
from harness.errors import ConfigError
from harness.evaluate import FinalSettings, run_seeds
from harness.plugins import Registry, plugin_distributions
from harness.report.collect import META_KEY, collect_provenance, collect_rows
from harness.report.provenance import gather, now
from harness.report.tables import write_tables
from harness.multiobjective import directions
from harness.search import (
    PinnedTrial, TuneSettings, best_trial, budget_used, failure_summary, make_pruner, make_sampler,
    make_storage, redact, tune, val_accuracy,
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
    ran_final: bool = False  # this process ran (or finished) the seed re-runs


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


def row_method(registry: Registry, suite: Suite, row: RowSpec):
    """The method behind a row: a plugin's, or the CASH choice among ``suite.cash``."""
    if row.method == "cash" and suite.cash:
        from harness.cash import CashMethod

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
    storage = make_storage(suite.storage, out_dir, heartbeat=suite.heartbeat)
    rows_methods = [(row, row_method(registry, suite, row)) for row in suite.all_rows()]  # unknown names fail here
    seeds = [suite.seed_base + i for i in range(max(r.seeds or suite.seeds for r in suite.all_rows()))]
    shared = bool(suite.storage) and "://" in suite.storage and not suite.storage.startswith("sqlite")
    provenance = gather(
        suite=suite.name, device=device, seeds=seeds, data_seed=suite.data_seed,
        sampler=f"{suite.sampler} (seed {suite.sampler_seed})"
        + ("; `harness worker` processes joining a study sample with seeds of their own" if shared else ""),
        pruner=suite.pruner, budget={"trials": suite.trials, "seeds": suite.seeds, "epochs": suite.epochs, "timeout": suite.timeout},
        storage=redact(str(suite.storage)) if suite.storage else "journal file optuna.journal beside the tables",
        started_at=now(), plugins=plugin_distributions(registry),
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
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        meta = summary.user_attrs.get(META_KEY)
        if meta and meta.get("suite") == suite.name and (meta.get("dataset"), meta.get("row")) in computed:
            optuna.load_study(study_name=summary.study_name, storage=storage).set_user_attr("provenance", provenance)
    from harness.report.html import method_descriptions  # matplotlib loads only when a report is written

    paths = write_suite_tables(storage, suite, out_dir, descriptions=method_descriptions(registry))
    wanted = suite.pairs()
    rows = [r for r in collect_rows(storage, suite.name) if (r["dataset"], r["method"]) in wanted]
    return RunResult(out_dir=out_dir, rows=rows, outcomes=outcomes, paths=paths)


def _plugin_modules(registry: Registry) -> list[str]:
    """Plugins loaded as modules by name (``--plugin``): a worker must load them too."""
    return [name for name, rec in registry.plugins.items() if rec.source.startswith("module ")]


def write_suite_tables(storage, suite: Suite, out_dir: Path,
                       descriptions: dict[str, dict[str, str]] | None = None) -> dict[str, Path]:
    """The suite's tables from the storage alone, plus CASH and Pareto tables of its studies, and the
    report page (``index.html``) with its statistics and figures."""
    from harness.report.html import write_report
    from harness.report.plots import load_studies

    wanted = suite.pairs()
    rows = [r for r in collect_rows(storage, suite.name) if (r["dataset"], r["method"]) in wanted]
    provenance = collect_provenance(storage, suite.name)
    paths = write_tables(rows, out_dir, provenance, title=suite.name)
    paths.update(write_study_extras(storage, suite.name, out_dir))
    paths.update(write_report(rows, out_dir, provenance, studies=load_studies(storage, suite.name, wanted),
                              title=suite.name, descriptions=descriptions, drawn=paths))
    return paths


def write_study_extras(storage, suite_name: str | None, out_dir: Path) -> dict[str, Path]:
    """``cash_<data set>.csv/.md`` (best trial per method) for CASH studies and
    ``pareto_<data set>_<row>.csv/.md/.png`` for multi-objective ones."""
    from harness.cash import write_per_method
    from harness.multiobjective import write_pareto
    from harness.report.collect import harness_studies

    paths: dict[str, Path] = {}
    for summary, meta in harness_studies(storage, suite_name):
        if not meta.get("cash") and len(meta.get("objectives", ())) < 2:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        if meta.get("cash"):
            stem = f"cash_{_safe(meta['dataset'])}"
            for k, v in write_per_method(study, out_dir, stem).items():
                paths[f"{stem}_{k}"] = v
        if len(meta.get("objectives", ())) > 1 and study.best_trials:
            stem = f"pareto_{_safe(meta['dataset'])}_{_safe(meta['row'])}"
            for k, v in write_pareto(study, tuple(meta["objectives"]), out_dir, stem,
                                     retrained=summary.user_attrs.get("best_trial")).items():
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
    """Create the row's study, or load it when it exists (several processes may do both at once)."""
    objectives = tuple(suite.objectives)
    study = optuna.create_study(
        storage=storage, study_name=study_name(suite, ds, row), directions=directions(objectives), load_if_exists=True,
        sampler=make_sampler(suite.sampler, sampler_seed),
        pruner=make_pruner(suite.pruner if len(objectives) == 1 else "none", row.epochs or suite.epochs),
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

    ``worker``: a ``harness worker`` joining a study made by ``harness run``: it samples with a seed
    of its own, leaves the study's description alone, and stops after ``max_trials`` trials
    without the seed phase unless the budget is reached. The seed phase is claimed by one process;
    ``harness run`` waits for a worker that holds it, a worker does not.
    """
    from harness.evaluate import stored_results
    from harness.worker import claim_final, suite_spec, worker_seed

    bars = bars or _NoBars()
    cache_dir = cache_dir or Path(".harness-cache")
    epochs = row.epochs or suite.epochs
    trials = row.trials or suite.trials
    study = open_study(suite, ds, row, storage, worker_seed(suite.sampler_seed) if worker else suite.sampler_seed)
    if not worker:
        study.set_user_attr(META_KEY, {
            "suite": suite.name, "dataset": ds.label, "row": row.name, "method": method.name, "plugin": method.plugin,
            "dataset_order": d_i, "row_order": r_i, "sizes": task.sizes(), "kind": task.kind,
            "objectives": list(suite.objectives), "cash": list(suite.cash) if row.method == "cash" else [],
            "spec": suite_spec(suite), "plugin_modules": list(plugin_modules),
        })
        if "provenance" not in study.user_attrs:  # replaced when this run computes the row's results
            study.set_user_attr("provenance", provenance or {})
        if isinstance(storage, optuna.storages.RDBStorage) and not storage.url.startswith("sqlite"):
            say(f"more workers may join: harness worker --study '{study.study_name}' --storage URL")
    label = f"{ds.label} · {row.name}"
    tune_task = task.without_test()
    if row.tune:
        if not study.trials and not worker:
            if hasattr(method, "default_trials"):  # CASH: every method's defaults
                for params in method.default_trials(tune_task, row.params):
                    study.enqueue_trial(params)
            elif method.info.defaults:
                study.enqueue_trial({k: v for k, v in method.info.defaults.items() if k not in row.params})
        bar = bars.add(f"{label}: tuning", total=trials, completed=min(trials, budget_used(study)))

        def on_trial(t):
            best = best_trial(study)
            note = f"best val {val_accuracy(best):.4f}" if best else ""
            bars.update(bar, completed=min(trials, budget_used(study)), note=note)

        tune(study, method, tune_task, TuneSettings(
            trials=trials, epochs=epochs, device=device, amp=suite.amp, compile=suite.compile, timeout=suite.timeout,
            seed_base=suite.seed_base, pinned=row.params, cache_dir=cache_dir, objectives=tuple(suite.objectives),
            trial_timeout=suite.trial_timeout, max_retries=suite.max_retries, max_trials=max_trials,
        ), on_trial=on_trial)
        if worker and budget_used(study) < trials:
            return RowOutcome(ds.label, row.name, "waiting",
                              f"{study.study_name}: {budget_used(study)} of {trials} trials done; the seed "
                              "re-runs start when the budget is reached")
        best = best_trial(study)
        if best is None:
            reason = failure_summary(study)
            study.set_user_attr("failure", reason)
            return RowOutcome(ds.label, row.name, "FAIL", reason)
        config = best.user_attrs["config"]
    else:
        best, config = None, _default_config(method, tune_task, row.params)
    row_seeds = [suite.seed_base + i for i in range(row.seeds or suite.seeds)]

    def done() -> bool:
        return all(seed in stored_results(study) for seed in row_seeds)

    claim = claim_final(study, done, wait=not worker, say=say)
    ran_final = claim is not None
    if claim is None and not done():
        return RowOutcome(ds.label, row.name, "waiting", f"the seed re-runs of {study.study_name} run elsewhere")
    if claim is not None:
        try:
            if best is not None:
                study.set_user_attr("best_trial", best.number)
                study.set_user_attr("best_val_accuracy", val_accuracy(best))
            bar = bars.add(f"{label}: seeds", total=len(row_seeds))
            run_seeds(study, method, task, config, FinalSettings(
                seeds=row_seeds, epochs=epochs, device=device, amp=suite.amp, compile=suite.compile, cache_dir=cache_dir,
                artifact_dir=out_dir / "artifacts" / _safe(ds.label) / _safe(row.name),
                calibrate=row.calibrate, shifts=parse_shifts(suite.shifts), ood=parse_ood(suite.ood),
            ), on_seed=lambda seed, r: bars.update(bar, advance=1))
            bars.update(bar, completed=len(row_seeds))
        except BaseException:
            claim.release(ok=False)
            raise
        claim.release(ok=True)
    results = stored_results(study)
    failed = [results[s] for s in row_seeds if results[s].get("status") != "ok"]
    if failed:
        return RowOutcome(ds.label, row.name, "FAIL" if len(failed) == len(row_seeds) else "partial",
                          failed[0].get("reason", ""), ran_final=ran_final)
    return RowOutcome(ds.label, row.name, "ok", ran_final=ran_final)


__all__ = ["run_suite", "run_row", "RunResult", "resolve_device", "study_name", "write_suite_tables"]
