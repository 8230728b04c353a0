"""Run a suite: for every (data set, method) tune on val, re-train the best over seeds, score test.

Everything computed goes to the study storage the moment it exists; the tables are rebuilt from
the storage at the end (and by ``harness report``), so an interrupted run loses nothing and a rerun
computes only what is missing. ``harness worker`` processes may join any study (``harness.worker``);
the seed re-runs of a study are claimed by one process, whichever sees the tuning budget reached.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import optuna
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness import records, storage as storages
from harness.configs import check_pinned, defaults_for
from harness.errors import ConfigError
from harness.multiobjective import directions
from harness.plugins import Registry, plugin_distributions
from harness.records import best_trial, collect_provenance, collect_rows, failure_summary, stored_results, val_accuracy
from harness.samplers import PRUNER_SETTINGS, make_pruner, make_sampler
from harness.storage import budget_used, claim_final, make_storage, redact
from harness.suite import DatasetSpec, RowSpec, Suite, suite_spec

if TYPE_CHECKING:
    import torch

    from harness.task import Task
    from harness.report.pipeline import Report


def resolve_device(name: str) -> torch.device:
    import torch

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
    stored: bool = False  # nothing was computed: every result asked for was already stored

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
        from harness import tasks
        from harness.data import load_task

        _, _, options = tasks.split_options(ds.options)  # the task-kind option is applied after splitting
        cache[budget] = tasks.build(load_task(
            registry, ds.name, options=options, data_seed=suite.data_seed,
            val_frac=ds.val_frac, test_frac=ds.test_frac,
            labels_per_class=ds.labels_per_class if budget else None,
            label_fraction=ds.label_fraction if budget else None, device=device,
        ), ds.options, suite.data_seed)
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


@dataclass
class RowPlan:
    """What a run does with one (data set, row): ``new`` (nothing stored), ``extend`` (more trials or
    seeds than stored), ``stored`` (everything asked is stored), ``skipped`` (the method cannot take
    the data set's kind); ``note`` says what changes, for the user."""

    ds: DatasetSpec
    row: RowSpec
    method: Any
    d_i: int
    r_i: int
    settings: dict[str, Any]
    action: str = "new"
    note: str = ""
    reseed: bool = False  # fewer seeds than recorded: only the record of the budget changes


def row_settings(registry: Registry, suite: Suite, ds: DatasetSpec, row: RowSpec, method) -> dict[str, Any]:
    """Everything that shapes a row's results, as stored in its :class:`~harness.records.StudyMeta`:
    a later run whose settings differ must not reuse them (:func:`harness.records.settings_change`)."""
    b = suite.budget(row)
    plugins = plugin_distributions(registry)
    names = suite.cash if row.method == "cash" and suite.cash else (row.method,)
    return {
        "trials": b.trials if row.tune else 0, "seeds": b.seeds, "epochs": b.epochs, "params": b.params,
        "method": row.method, "tune": row.tune, "all_labels": row.all_labels, "calibrate": row.calibrate,
        "plugins": sorted({f"{registry.methods[n].plugin}: {plugins.get(registry.methods[n].plugin, '?')}"
                           for n in names if n in registry.methods}),
        "dataset": ds.name, "options": ds.options, "labels_per_class": ds.labels_per_class,
        "label_fraction": ds.label_fraction, "val_frac": ds.val_frac, "test_frac": ds.test_frac,
        "data_seed": suite.data_seed, "seed_base": suite.seed_base,
        "sampler": suite.sampler, "sampler_seed": suite.sampler_seed, "pruner": suite.pruner,
        "pruner_settings": PRUNER_SETTINGS[suite.pruner],
        "objectives": list(suite.objectives), "cash": list(suite.cash) if row.method == "cash" else [],
        "shifts": suite.shifts, "ood": suite.ood, "schema": records.SCHEMA_VERSION,
        **({"robustness": suite.robustness} if suite.robustness else {}),
    }


def journal_path(suite: Suite, out_dir: Path) -> Path | None:
    """The journal file behind the suite's storage (None for a database)."""
    url = suite.storage
    if url is None:
        return Path(out_dir) / "optuna.journal"
    if url.startswith("journal:"):
        return Path(url[len("journal:"):])
    if url.endswith(".journal"):
        return Path(url)
    return None


def check_writable(path: Path, what: str, folder: bool) -> None:
    """A one-line error unless ``path`` is (or can be created as) a writable folder / file."""
    import os

    if path.exists():
        if folder and not path.is_dir():
            raise ConfigError(f"{what} {path} is a file, not a folder")
        if not folder and path.is_dir():
            raise ConfigError(f"{what} {path} is a folder, not a file")
        if not os.access(path, os.W_OK) or (folder and not os.access(path, os.X_OK)):
            raise ConfigError(f"{what} {path} is not writable")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot create {what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create {what} {path}: {parent} is not writable")


def check_paths(suite: Suite, out_dir: Path) -> None:
    """Refuse an output folder or journal that cannot be written, before anything is computed."""
    check_writable(Path(out_dir), "--out", folder=True)
    journal = journal_path(suite, out_dir)
    if journal is not None and suite.storage is not None:
        check_writable(journal, "--storage", folder=False)


def move_aside(suite: Suite, out_dir: Path, say: Callable[[str], None]) -> None:
    """``--fresh``: the journal becomes ``optuna.journal.<UTC time>.bak`` so the run starts empty."""
    import time

    journal = journal_path(suite, out_dir)
    if journal is None:
        raise ConfigError("--fresh moves a journal file aside; a database storage keeps its studies: "
                          "give the run another --name instead")
    if journal.exists():
        backup = journal.with_name(f"{journal.name}.{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.bak")
        journal.rename(backup)
        say(f"--fresh: moved the stored results aside to {backup}; recomputing everything")


def forget_rows(suite: Suite, registry: Registry, out_dir: Path, rows: list[str], say: Callable[[str], None]) -> None:
    """``--recompute ROW``: drop the stored studies of these rows only, so the run computes them
    again (after a change to a method's code, or to a row's settings) and reuses every other row.
    The rest of the input is checked first; a journal file is copied to ``.bak`` before any change."""
    import shutil
    import time

    names = {row.name for row in suite.all_rows()}
    unknown = [name for name in rows if name not in names]
    if unknown:
        raise ConfigError(f"--recompute {unknown[0]}: the suite has no row of that name (rows: {', '.join(sorted(names))})")
    check_paths(suite, out_dir)
    storage = _existing_storage(suite, out_dir)
    if storage is None:
        return
    plan_suite(suite, registry, out_dir, storage, recompute=frozenset(rows))  # refuses bad input before any change
    doomed = [(summary, meta) for summary, meta in records.harness_studies(storage, suite.name) if meta.row in rows]
    journal = journal_path(suite, out_dir)
    if doomed and journal is not None:
        backup = journal.with_name(f"{journal.name}.{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.bak")
        shutil.copy2(journal, backup)
        say(f"--recompute: the stored results were copied to {backup}")
    for summary, meta in doomed:
        optuna.delete_study(study_name=summary.study_name, storage=storage)
        say(f"--recompute: {meta.dataset} · {meta.row}: stored results dropped; computing it again")


def _existing_storage(suite: Suite, out_dir: Path):
    """The suite's storage when it may hold studies (None for a journal that does not exist yet:
    opening it would create the file)."""
    journal = journal_path(suite, out_dir)
    if journal is not None and not journal.is_file():
        return None
    return make_storage(suite.storage, out_dir, heartbeat=suite.heartbeat, retry_s=suite.storage_retry)


def plan_suite(suite: Suite, registry: Registry, out_dir: Path, storage, one_suite: bool = True,
               recompute: frozenset[str] = frozenset()) -> list[RowPlan]:
    """Decide for every (data set, row) what this run does, from what the storage holds; refuse in
    one line a row whose stored results were computed with other settings, or (``one_suite``) a
    folder that holds another suite's tables. Rows named in ``recompute`` count as not stored."""
    if one_suite:
        _check_one_suite(suite, out_dir, storage)
    stored = {(m.dataset, m.row): (sm, m) for sm, m in records.harness_studies(storage, suite.name)} if storage else {}
    plans = []
    for d_i, ds in enumerate(suite.datasets):
        info, _ = registry.dataset(ds.name)
        for r_i, row in enumerate(suite.all_rows()):
            if not row.runs_on(ds):
                continue
            method = row_method(registry, suite, row)
            check_task_kind(method, ds)
            plan = RowPlan(ds, row, method, d_i, r_i, row_settings(registry, suite, ds, row, method))
            plans.append(plan)
            if info.kind not in method.info.kinds:
                plan.action, plan.note = "skipped", f"{method.name} does not support {info.kind} tasks"
                continue
            if (ds.label, row.name) in stored and row.name not in recompute:
                _plan_stored(plan, suite, storage, *stored[(ds.label, row.name)])
    return plans


def work_left(suite: Suite, registry: Registry, out_dir: Path) -> bool:
    """Whether a run of ``suite`` into ``out_dir`` has anything to compute (it only reads the storage;
    a row stored with other settings is refused here, as by the run)."""
    check_paths(suite, out_dir)
    plans = plan_suite(suite, registry, out_dir, _existing_storage(suite, out_dir))
    return any(p.action in ("new", "extend") for p in plans)


def check_task_kind(method, ds: DatasetSpec) -> None:
    """Refuse, in one line, a method on a task kind (:mod:`harness.tasks`) it does not declare."""
    from harness.tasks import split_options

    kind = split_options(ds.options)[0]
    supported = getattr(method.info, "tasks", ("classification",))
    if kind not in supported:
        raise ConfigError(f"{method.name} does not support {kind} tasks ({ds.label}); it supports "
                          f"{', '.join(supported)}")


def _check_one_suite(suite: Suite, out_dir: Path, storage) -> None:
    """Tables of two suites in one folder would overwrite each other: refuse the second."""
    import json

    others: set[str] = set()
    prov = Path(out_dir) / "provenance.json"
    if prov.is_file():
        try:
            name = json.loads(prov.read_text()).get("suite")
        except (ValueError, OSError, AttributeError):
            name = None
        if isinstance(name, str) and name != suite.name:
            others.add(name)
    if storage is not None and journal_path(suite, out_dir) == Path(out_dir) / "optuna.journal":
        others |= {m.suite for _, m in records.harness_studies(storage)} - {suite.name}
    if others:
        raise ConfigError(f"{out_dir} holds the tables of suite {sorted(others)[0]!r}; those of {suite.name!r} would "
                          "overwrite them: use --out for a new folder (or --fresh to replace them)")


def _plan_stored(plan: RowPlan, suite: Suite, storage, summary, meta: records.StudyMeta) -> None:
    name = study_name(suite, plan.ds, plan.row)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    reported = any(t.intermediate_values for t in study.get_trials(deepcopy=False))
    change = records.settings_change(meta, plan.settings, reported=reported)
    if change is not None:
        key, value = change
        raise ConfigError(f"{name} was run with {key}={_text(value)}; use --recompute {plan.row.name}, --fresh, "
                          "or --out for a new folder")
    budget = suite.budget(plan.row)
    seeds = [suite.seed_base + i for i in range(budget.seeds)]
    results = stored_results(study)
    notes = []
    old = meta.settings.get("trials") if meta.settings else (meta.budget.trials if meta.budget else None)
    if plan.row.tune:
        if isinstance(old, int) and budget.trials > old:
            notes.append(f"{budget.trials - old} more trials; the best is re-trained over the seeds if it changes")
        if budget_used(study) < budget.trials and not notes:
            notes.append(f"{budget.trials - budget_used(study)} trials still to run")
        best = best_trial(study)
        if best is None and summary.user_attrs.get(records.FAILURE) and not notes:
            plan.action = "stored"
            return
        mark = summary.user_attrs.get(records.BEST_TRIAL)
        fits = [s for s in seeds if s in results and best is not None
                and results[s].get(records.BEST_TRIAL, mark) == best.number]
    else:
        fits = [s for s in seeds if s in results]
    missing = len(seeds) - len(fits)
    if missing and not notes:
        notes.append(f"{missing} more seed re-run{'s' if missing > 1 else ''}")
    recorded = meta.budget.seeds if meta.budget else None
    if not notes and recorded is not None and budget.seeds < recorded:
        plan.reseed = True
        plan.note = f"{name}: showing {budget.seeds} of the {recorded} stored seeds"
    plan.action = "extend" if notes else "stored"
    if notes:
        plan.note = f"{name}: " + "; ".join(notes)


def _text(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value, default=str)


def run_suite(
    suite: Suite,
    registry: Registry,
    out_dir: Path,
    console: Console | None = None,
    progress: bool = True,
    cache_dir: Path | None = None,
    fresh: bool = False,
    tune_only: bool = False,
    extra_provenance: dict[str, Any] | None = None,
) -> RunResult:
    """Run what the suite asks and the storage lacks; see :func:`plan_suite` for what is reused.

    ``tune_only``: only the tuning trials (a process of ``harness run --workers``, :mod:`harness.workers`);
    no seed re-runs and no tables. ``extra_provenance`` joins the run's provenance record.

    Everything is validated (paths, data sets, label budgets, pinned values) before the output
    folder or the storage is created, so bad input leaves nothing behind.
    """
    console = console or Console(stderr=True)

    def say(message: str) -> None:
        console.print(redact(message), highlight=False)

    out_dir = Path(out_dir)
    cache_dir = cache_dir or Path(".harness-cache")
    check_paths(suite, out_dir)
    if fresh and journal_path(suite, out_dir) is None:
        move_aside(suite, out_dir, say)  # refuses: a database keeps its studies
    storage = None if fresh else _existing_storage(suite, out_dir)
    plans = plan_suite(suite, registry, out_dir, storage, one_suite=not fresh)
    todo = [p for p in plans if p.action in ("new", "extend")]
    if not todo and tune_only:
        return RunResult(out_dir=out_dir, rows=[], outcomes=[], paths={})
    if not todo:
        if not any(p.action == "stored" for p in plans):
            raise ConfigError("nothing to run: " + "; ".join(f"{p.ds.label} · {p.row.name}: {p.note}" for p in plans))
        return _show_stored(suite, plans, storage, out_dir, say)
    device = resolve_device(suite.device)  # torch loads only once there is work
    tasks: dict[int, dict[bool, Task]] = {}
    known: set[str] = set()
    for plan in todo:  # every data set loads and every pinned value fits before anything is written
        task = row_task(registry, suite, plan.ds, plan.row, device, _task_cache(tasks, plan.d_i))
        if task.kind not in plan.method.info.kinds:
            plan.action, plan.note = "skipped", f"{plan.method.name} does not support {task.kind} tasks"
            continue
        knows = check_pinned(plan.method, task.without_test(), suite.budget(plan.row).params)
        unknown = sorted(set(plan.row.params) - knows)
        if unknown:
            raise ConfigError(f"{plan.row.name}: {plan.method.name} has no parameter or configuration key "
                              f"{unknown[0]!r} (pinned in the row's params)")
        known |= knows
    unknown = sorted(set({**suite.params, **suite.overrides.params}) - known)
    if unknown and any(p.action != "skipped" for p in todo):
        methods = ", ".join(sorted({p.method.name for p in todo if p.action != "skipped"}))
        raise ConfigError(f"no method of this run ({methods}) has a parameter or configuration key {unknown[0]!r} "
                          "to pin (see `harness plugins` for each search space)")
    todo = [p for p in todo if p.action != "skipped"]
    if not todo and not any(p.action == "stored" for p in plans):
        raise ConfigError("nothing to run: " + "; ".join(f"{p.ds.label} · {p.row.name}: {p.note}" for p in plans))
    if fresh:  # only now that the input is known to be good
        move_aside(suite, out_dir, say)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        storage = storage or make_storage(suite.storage, out_dir, heartbeat=suite.heartbeat,
                                          retry_s=suite.storage_retry, say=say)
    except OSError as exc:  # permissions check out, the file system says no (read-only mount, /proc)
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise ConfigError(f"cannot write {exc.filename or out_dir}: {exc.strerror or exc}") from None
    seeds = [suite.seed_base + i for i in range(max(suite.budget(r).seeds for r in suite.all_rows()))]
    from harness.report.provenance import gather, now  # the report layer loads once there is work
    from harness.robustness import parse_robustness

    o = suite.overrides
    provenance = gather(
        suite=suite.name, device=device, seeds=seeds, data_seed=suite.data_seed,
        sampler=f"{suite.sampler} (seed {suite.sampler_seed}; every further process joining a study samples "
                "with a seed of its own)",
        pruner=suite.pruner, budget={"trials": o.trials or suite.trials, "seeds": o.seeds or suite.seeds,
                                     "epochs": o.epochs or suite.epochs, "timeout": suite.timeout},
        storage=redact(str(suite.storage)) if suite.storage else "journal file optuna.journal beside the tables",
        started_at=now(), plugins=plugin_distributions(registry), **(extra_provenance or {}),
        **({"robustness": parse_robustness(suite.robustness).spec()} if suite.robustness else {}),
    )
    outcomes: list[RowOutcome] = []
    _reseed(plans, suite, storage, say)
    with _Progress(console, progress) as bars:
        for plan in plans:
            if plan.note and plan.action == "extend":
                say(plan.note)
            if plan.action == "skipped":
                outcomes.append(RowOutcome(plan.ds.label, plan.row.name, "skipped", plan.note))
                continue
            if plan.action == "stored":
                outcomes.append(RowOutcome(plan.ds.label, plan.row.name, "ok"))
                continue
            task = row_task(registry, suite, plan.ds, plan.row, device, _task_cache(tasks, plan.d_i))
            outcomes.append(run_row(
                suite, plan.ds, plan.row, plan.method, task, storage, device, out_dir, bars=bars, d_i=plan.d_i,
                r_i=plan.r_i, provenance=provenance, cache_dir=cache_dir, plugin_modules=_plugin_modules(registry),
                say=say, settings=plan.settings, tune_only=tune_only,
            ))
    if tune_only:
        return RunResult(out_dir=out_dir, rows=[], outcomes=outcomes, paths={})
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


def _task_cache(tasks: dict, d_i: int) -> dict:
    """The per-data-set slice of the task cache that :func:`row_task` fills."""
    return tasks.setdefault(d_i, {})


def _reseed(plans: list[RowPlan], suite: Suite, storage, say: Callable[[str], None]) -> None:
    """Rows asked for fewer seeds than stored: record the smaller budget, so the tables (and
    ``harness report``) show the asked seeds only; the other seeds' results stay stored."""
    for plan in plans:
        if not plan.reseed:
            continue
        study = optuna.load_study(study_name=study_name(suite, plan.ds, plan.row), storage=storage)
        meta = records.study_meta(study.user_attrs, study.study_name)
        study.set_user_attr(records.META, dataclasses.replace(
            meta, budget=suite.budget(plan.row), settings=plan.settings).to_attr())
        say(plan.note)


def _show_stored(suite: Suite, plans: list[RowPlan], storage, out_dir: Path,
                 say: Callable[[str], None]) -> RunResult:
    """Nothing to compute: say so in one line, write nothing to the storage, show the stored tables
    (rebuilt from the storage only when the folder lacks them, e.g. beside a database)."""
    stored = [p for p in plans if p.action == "stored"]
    trials = sum(p.settings["trials"] for p in stored)
    seeds = sum(p.settings["seeds"] for p in stored)
    where = journal_path(suite, out_dir) or redact(str(suite.storage))
    _reseed(plans, suite, storage, say)
    say(f"all {trials} trials and {seeds} seed re-runs of {suite.name} are already stored in {where}; "
        "showing the stored tables — use --fresh or --out to recompute")
    outcomes = [RowOutcome(p.ds.label, p.row.name, "skipped" if p.action == "skipped" else "ok", p.note)
                for p in plans]
    summary = out_dir / "summary.md"
    if summary.is_file() and not any(p.reseed for p in plans):
        return RunResult(out_dir=out_dir, rows=[], outcomes=outcomes,
                         paths={"summary_md": summary, "per_seed_csv": out_dir / "per_seed.csv"}, stored=True)
    report = suite_report(storage, suite)
    paths = write_suite_tables(storage, suite, out_dir, report=report)
    return RunResult(out_dir=out_dir, rows=report.rows, outcomes=outcomes, paths=paths, report=report, stored=True)


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
            from harness.cash import write_per_method

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
            worker: bool = False, say: Callable[[str], None] = lambda _: None,
            settings: dict[str, Any] | None = None, tune_only: bool = False) -> RowOutcome:
    """Tune one (data set, row) on val, then re-train the best over seeds and score test.

    Every process on a study samples with a stream of its own: the first with the suite's seed, any
    later one (a second ``harness run`` on the same folder, a worker, a resumed run) with a seed
    derived from it and its place in line (:func:`harness.storage.stream_index`), so no two propose
    the same configurations. ``worker``: a ``harness worker`` joining a study made by
    ``harness run``: it leaves the study's description alone, and stops after ``max_trials`` trials
    without the seed phase unless the budget is reached. The seed phase is claimed by one process;
    ``harness run`` waits for a worker that holds it, a worker does not. ``tune_only``: return once
    the tuning budget is used (``tuned``), leaving the seed phase to a later call.
    """
    from harness.phases import FinalSettings, PhaseSettings, TuneSettings, default_config, run_seeds, tune
    from harness.robustness import parse_robustness
    from harness.shift import parse_ood, parse_shifts

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
            spec=suite_spec(suite), plugin_modules=tuple(plugin_modules), budget=budget, settings=settings,
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
            elif defaults := defaults_for(method.info, tune_task):
                study.enqueue_trial({k: v for k, v in defaults.items() if k not in budget.params})
        bar = bars.add(f"{label}: tuning", total=trials, completed=min(trials, budget_used(study)))

        def on_trial(t):
            best = best_trial(study)
            note = f"best val {val_accuracy(best):.4f}" if best else ""
            bars.update(bar, completed=min(trials, budget_used(study)), note=note)

        tune(study, method, tune_task, TuneSettings(
            trials=trials, phase=phase, timeout=suite.timeout, seed_base=suite.seed_base, pinned=budget.params,
            objectives=tuple(suite.objectives), trial_timeout=suite.trial_timeout, max_retries=suite.max_retries,
            max_trials=max_trials, robustness=parse_robustness(suite.robustness),
        ), on_trial=on_trial, say=say)
        if worker and budget_used(study) < trials:
            return RowOutcome(ds.label, row.name, "waiting",
                              f"{study.study_name}: {budget_used(study)} of {trials} trials done; the seed "
                              "re-runs start when the budget is reached")
        if tune_only:
            return RowOutcome(ds.label, row.name, "tuned")
        best = best_trial(study)
        if best is None:
            reason = failure_summary(study)
            study.set_user_attr(records.FAILURE, reason)
            return RowOutcome(ds.label, row.name, "FAIL", reason)
        config = best.user_attrs[records.CONFIG]
    else:
        best, config = None, default_config(method, tune_task, budget.params)
        if tune_only:
            return RowOutcome(ds.label, row.name, "tuned")
    row_seeds = [suite.seed_base + i for i in range(budget.seeds)]
    number = best.number if best is not None else None
    earlier = study.user_attrs.get(records.BEST_TRIAL)

    def fits(result: dict[str, Any]) -> bool:
        """A stored seed result of the configuration re-trained now (results stored before they
        were tagged belong to the study's recorded best trial)."""
        return number is None or result.get(records.BEST_TRIAL, earlier) == number

    def done() -> bool:
        results = stored_results(study)
        return all(seed in results and fits(results[seed]) for seed in row_seeds)

    if number is not None and earlier is not None and earlier != number and not done():
        say(f"{study.study_name}: trial {number} is the new best (was trial {earlier}); "
            f"re-training it over {len(row_seeds)} seeds")

    claim = claim_final(study, done, wait=not worker, say=say)
    ran_final = claim is not None
    if claim is None and not done():
        return RowOutcome(ds.label, row.name, "waiting", f"the seed re-runs of {study.study_name} run elsewhere")
    if claim is not None:
        try:
            for seed, result in stored_results(study).items():  # another configuration's: withdrawn
                if not fits(result):
                    study.set_user_attr(records.result_key(seed), None)
            if best is not None:
                study.set_user_attr(records.BEST_TRIAL, best.number)
                study.set_user_attr(records.BEST_VAL_ACCURACY, val_accuracy(best))
            bar = bars.add(f"{label}: seeds", total=len(row_seeds))
            run_seeds(study, method, task, config, FinalSettings(
                seeds=row_seeds, phase=phase, artifact_dir=out_dir / "artifacts" / _safe(ds.label) / _safe(row.name),
                calibrate=row.calibrate, shifts=parse_shifts(suite.shifts), ood=parse_ood(suite.ood),
                best_trial=number, robustness=parse_robustness(suite.robustness),
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
