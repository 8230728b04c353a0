"""The ``harness`` command line. Every user error ends here as one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from harness.errors import ConfigError, HarnessError
from harness.redaction import redact
from harness.samplers import PRUNERS, SAMPLERS

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other user error
        self.exit(EXIT_USAGE, redact(f"harness: error: {message} (see `{self.prog} --help`)\n"))


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _params(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param expects KEY=VALUE, got {item!r}")
        out[key] = _parse_value(value)
    return out


# The thread pools besides torch's: numpy's and scipy's BLAS, scikit-learn's OpenMP. They read these
# when first loaded, so they are set before any of them is imported.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def threads_for(choice: str) -> int:
    """The thread count for ``--threads``: a positive integer as given, or for ``auto`` the cores that
    the 1-minute load average leaves free (rounded, at least 1). On a busy machine several threads per process
    fight each other and the other processes for the cores: OpenBLAS's spinning threads made a
    scikit-learn logistic regression on digits 100 times slower than one thread did."""
    if choice != "auto":
        try:
            n = int(choice)
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"--threads must be a positive integer or auto, got {choice!r}")
        return n
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        return cores
    return max(1, min(cores, round(cores - busy)))


def set_threads(n: int, explicit: bool = False) -> None:
    """Give torch and the BLAS/OpenMP pools ``n`` threads; with ``auto`` (not ``explicit``) a pool the
    environment already sizes keeps its size.

    torch sizes its pool from ``OMP_NUM_THREADS`` when it loads, so a command that never needs torch
    (a run that finds everything stored, a listing) does not pay for importing it here."""
    for var in THREAD_ENV:
        if explicit:
            os.environ[var] = str(n)
        else:
            os.environ.setdefault(var, str(n))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="harness", description="Tune, re-train over seeds and compare deep-learning methods.")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="also load this importable module as a plugin (repeatable)")
    p.add_argument("--threads", default="auto", metavar="N|auto",
                   help="CPU threads for torch and BLAS; auto (default): the cores the 1-minute load average "
                        "leaves free, at least 1 (results depend on it; it is recorded)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    pl = sub.add_parser("plugins", help="list plugins, their methods and data sets (--spaces: search spaces)")
    pl.add_argument("--check", metavar="NAME", help="run a plugin's (or one method's) hooks on a tiny task")
    pl.add_argument("--spaces", action="store_true",
                    help="also sample each method's search space and defaults on a tiny task (loads torch and data)")
    pl.add_argument("--json", action="store_true", help="machine-readable listing, search spaces included")

    sub.add_parser("datasets", help="list the data sets plugins provide")

    npl = sub.add_parser("new-plugin", help="write a pip-installable plugin package that passes --check as written")
    npl.add_argument("name", help="the plugin's (and its method's) name: lower case, digits, underscores")
    npl.add_argument("--dir", help="where to write it (default ./NAME)")

    run = sub.add_parser("run", help="tune each method on val, re-train the best over seeds, score test")
    run.add_argument("methods", nargs="*", help="method names or patterns (erm 'sk*'); omit with --suite")
    run.add_argument("--suite", help="a suite YAML file (methods × data sets × budgets)")
    run.add_argument("--dataset", action="append", help="data set name (repeatable); default digits")
    run.add_argument("--target", help="target column of a csv:PATH data set")
    run.add_argument("--labels-per-class", type=int, help="label budget: labelled examples kept per class")
    run.add_argument("--trials", type=int, help="tuning trials per method and data set")
    run.add_argument("--seeds", type=int, help="seeds the best configuration is re-trained with")
    run.add_argument("--seeds-until-decided", type=int, metavar="MAX",
                     help="then add seeds in rounds (the suite's compare:) until each comparison is decided, "
                          "at most MAX per row")
    run.add_argument("--epochs", type=int, help="training epochs every method gets")
    run.add_argument("--timeout", type=float, help="seconds of tuning per method and data set")
    run.add_argument("--storage", help="Optuna storage: FILE.journal (default in --out), sqlite:///F, postgresql://...")
    run.add_argument("--sampler", help=" | ".join(SAMPLERS))
    run.add_argument("--pruner", help=" | ".join(PRUNERS))
    run.add_argument("--sampler-seed", type=int)
    run.add_argument("--data-seed", type=int)
    run.add_argument("--device", help="auto (default), cpu, cuda, cuda:1")
    run.add_argument("--no-amp", action="store_true", help="no bf16 autocast on GPU")
    run.add_argument("--compile", action="store_true", help="torch.compile each method's training step")
    run.add_argument("--param", action="append", metavar="KEY=VALUE", help="pin a configuration value for every method")
    run.add_argument("--name", help="suite name (default: the suite file's name, or 'run')")
    run.add_argument("--out", help="output folder (default results/<suite name>)")
    run.add_argument("--fresh", action="store_true",
                     help="recompute everything: the stored journal is moved aside to optuna.journal.<UTC time>.bak")
    run.add_argument("--recompute", nargs="+", metavar="ROW",
                     help="compute these rows again (their stored results are dropped, the journal copied to .bak "
                     "first); every other row is reused")
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--cash", nargs="+", metavar="METHOD",
                     help="also search the method itself among these, each with its own space (the row `cash`)")
    run.add_argument("--objectives", help="comma-separated, from accuracy, ece, nll, brier, throughput; "
                     "several → a multi-objective study and its Pareto front (no pruning)")
    run.add_argument("--trial-timeout", type=float, help="seconds a tuning trial may run; past it the trial is a FAIL")
    run.add_argument("--heartbeat", type=int, help="seconds between heartbeats of running trials (RDB storages; 10)")
    run.add_argument("--max-retries", type=int, help="re-runs of a trial whose worker died (2)")
    run.add_argument("--storage-retry", type=float, metavar="SECONDS",
                     help="how long to ride out an unreachable database storage before giving up (120)")
    run.add_argument("--workers", type=int, metavar="N",
                     help="tune in N local processes on the run's storage (each with --threads, default the "
                          "cores // N), then run the seed re-runs and write the tables here, once")
    run.add_argument("--devices", metavar="LIST", help="devices the --workers processes take in turn: cuda:0,cuda:1")
    run.add_argument("--tune-only", metavar="SPEC", help=argparse.SUPPRESS)  # a --workers process: its suite

    wk = sub.add_parser("worker", help="pull trials of one study in a shared storage until its budget is used")
    wk.add_argument("--study", required=True, help="the study: SUITE/DATASET/ROW, as `harness run` named it")
    wk.add_argument("--storage", required=True, help="the storage URL of the study (postgresql://..., FILE.journal)")
    wk.add_argument("--n-trials", type=int, help="run at most this many trials here")
    wk.add_argument("--out", help="where the tables go if this worker runs the seed re-runs (default results/<suite>)")
    wk.add_argument("--device", help="run on this device here instead of the study's (auto, cpu, cuda:1)")
    wk.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the study to be created (60)")
    wk.add_argument("--storage-retry", type=float, metavar="SECONDS",
                    help="how long to ride out an unreachable database storage before giving up (the study's; 120)")

    la = sub.add_parser("launch", help="the commands that run a suite on N machines sharing a database storage")
    la.add_argument("--suite", required=True, help="the suite YAML file (at the same path on every machine)")
    la.add_argument("--storage", required=True, help="the shared database: postgresql://user:password@host/db")
    la.add_argument("--machines", type=int, required=True, help="machines in all, the one running `harness run` included")
    la.add_argument("--out", help="the tables' folder on each machine (default results/<suite name>)")
    la.add_argument("--wait", type=float, default=3600.0,
                    help="seconds a worker waits for machine 1 to create the study it works on next (3600)")
    la.add_argument("--slurm", metavar="FILE", help="also write the commands as a SLURM array job script")
    la.add_argument("--cpus-per-task", type=int, help="the SLURM script's --cpus-per-task")
    la.add_argument("--dry-run", action="store_true", help="write nothing: print the SLURM script instead")

    bench = sub.add_parser("bench", help="throughput table (timm-style) of each method's model")
    bench.add_argument("methods", nargs="+", help="method names or patterns")
    bench.add_argument("--dataset", default="digits")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--epochs", type=int, default=2, help="timed training epochs after a one-epoch warm-up")
    bench.add_argument("--repeats", type=int, default=5, help="timed inference calls after a warm-up call")
    bench.add_argument("--no-amp", action="store_true")
    bench.add_argument("--compile", action="store_true", help="torch.compile the training step")
    bench.add_argument("--param", action="append", metavar="KEY=VALUE", help="pin a configuration value")
    bench.add_argument("--out", help="output folder (default results/bench/<dataset>-<device>)")

    rep = sub.add_parser("report", help="rebuild the tables of a suite from its study storage alone")
    rep.add_argument("--suite", help="suite name (default: every suite in the storage)")
    rep.add_argument("--out", help="folder of the run (holds optuna.journal); tables are written there")
    rep.add_argument("--storage", help="storage URL if not the journal file in --out")
    rep.add_argument("--study", action="append", metavar="NAME", help="only this study (repeatable)")
    rep.add_argument("--html", metavar="PATH", help="the report page (default: index.html in --out)")
    return p


def _cmd_plugins(args, registry, console) -> int:
    """List plugins (problems first; exit 1 when there is any), or check one (exit 1 when it fails)."""
    from rich.table import Table

    if args.check:
        from harness.conformance import check_plugin

        reports = check_plugin(registry, args.check)
        for prob in registry.problems:  # another plugin's problem can explain a surprise here
            console.print(f"[yellow]warning[/yellow] {prob}", highlight=False)
        bad = 0
        for r in reports:
            mark = "[green]ok[/green]" if r.ok else "[red]FAIL[/red]"
            console.print(f"{mark} {r.method} on {r.task}" + (f" (plugin {r.plugin!r})" if r.plugin else ""))
            for prob in r.problems:
                console.print(f"   [red]problem[/red]: plugin {r.plugin!r}, method {r.method!r}: {prob}",
                              markup=True, highlight=False)
            for note in r.notes:
                console.print(f"   {note}", markup=False, highlight=False)
            bad += not r.ok
        return 1 if bad else 0
    # Sampling needs a real task, hence torch and a data set: only when asked, so the listing stays quick.
    spaces, sampling = _search_spaces(registry) if args.spaces or args.json else ({}, [])
    problems = [str(p) for p in registry.problems] + sampling
    if args.json:
        data = {
            "problems": problems,
            "plugins": [{**vars(rec), "distribution": registry.distributions.get(rec.name)}
                        for rec in registry.plugins.values()],
            "broken": {name: str(p) for name, p in registry.broken.items()},
            "methods": {n: {"plugin": m.plugin, "kinds": list(m.info.kinds), "tasks": list(m.info.tasks),
                            "description": m.info.description,
                            "citation": m.info.citation, "search_space": spaces.get(n),
                            "replaces": registry.plugins[m.plugin].replaces.get(n)}
                        for n, m in registry.methods.items()},
        }
        print(json.dumps(data, indent=2, default=str))
        return 1 if problems else 0
    for prob in problems:
        console.print(f"[red]problem[/red] {prob}", highlight=False)
    table = Table(title="plugins")
    for col in ("plugin", "source", "methods", "data sets", "hooks"):
        table.add_column(col)
    for rec in registry.plugins.values():
        table.add_row(rec.name, rec.source, ", ".join(rec.methods), ", ".join(rec.datasets),
                      ", ".join(h.replace("harness_", "") for h in rec.hooks))
    for name, prob in registry.broken.items():
        table.add_row(name, "[red]failed to load[/red]", "", "", "")
    console.print(table)
    mt = Table(title="methods")
    for col in ("method", "plugin", "kinds", *(("search space",) if args.spaces else ()), "description"):
        mt.add_column(col)
    for name, m in registry.methods.items():
        replaced = registry.plugins[m.plugin].replaces.get(name)
        owner = m.plugin + (f" (replaces built-in {replaced!r})" if replaced else "")
        learns = [t for t in m.info.tasks if t != "classification"]  # task kinds of harness.tasks
        kinds = ", ".join(m.info.kinds) + (f" ({', '.join(learns)})" if learns else "")
        mt.add_row(name, owner, kinds, *((spaces.get(name, ""),) if args.spaces else ()),
                   m.info.description)
    console.print(mt)
    if not args.spaces:
        console.print("search spaces, and a check that each samples and that its defaults fit every task kind: "
                      "`harness plugins --spaces`", highlight=False)
    if problems:
        console.print(f"{len(problems)} problem(s), listed at the top", highlight=False)
    return 1 if problems else 0


def _search_spaces(registry) -> tuple[dict[str, str], list[str]]:
    """Each method's space as ``name: distribution`` from a few random samples on a tiny task, and a
    line for each method whose space fails to sample or returns what the storage cannot hold."""
    import optuna

    from harness.configs import default_config, defaults_for
    from harness.conformance import TINY
    from harness.data import load_task
    from harness.errors import failure_reason

    out: dict[str, str] = {}
    problems: list[str] = []
    tasks: dict[str, Any] = {}
    for name, method in registry.methods.items():
        kinds = [k for k in method.info.kinds if TINY.get(k) in registry.datasets]
        kind = kinds[0] if kinds else None
        if kind is None:
            out[name] = f"(needs a {'/'.join(method.info.kinds)} task to sample)"
            continue
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        dists: dict[str, Any] = {}
        try:
            if kind not in tasks:
                tasks[kind] = load_task(registry, TINY[kind]).without_test()
            for _ in range(8):
                trial = study.ask()
                method.search_space(trial, tasks[kind])
                dists.update(trial.distributions)
                study.tell(trial, 0.0)
        except Exception as exc:
            out[name] = "(fails to sample; see the problems)"
            problems.append(f"plugin {method.plugin!r}: method {name!r}: search space on a {kind} task: "
                            f"{failure_reason(exc)}")
            continue
        out[name] = "; ".join(f"{k}: {_describe(d)}" for k, d in dists.items())
        for kind in kinds:  # defaults may fit one kind and not another
            try:
                if kind not in tasks:
                    tasks[kind] = load_task(registry, TINY[kind]).without_test()
                if defaults_for(method.info, tasks[kind]):
                    default_config(method, tasks[kind])
            except Exception as exc:
                problems.append(f"plugin {method.plugin!r}: method {name!r}: {failure_reason(exc)}")
                break
    return out, problems


def _describe(dist) -> str:
    import optuna.distributions as od

    if isinstance(dist, od.CategoricalDistribution):
        return "{" + ", ".join(map(str, dist.choices)) + "}"
    log = " log" if getattr(dist, "log", False) else ""
    return f"[{dist.low:g}, {dist.high:g}]{log}"


def _cmd_new_plugin(args, registry, console) -> int:
    from harness.scaffold import new_plugin

    root = new_plugin(args.name, Path(args.dir) if args.dir else None)
    console.print(f"wrote {root}: pip install {root} && harness plugins --check {args.name}", highlight=False)
    return 0


def _cmd_datasets(args, registry, console) -> int:
    from rich.table import Table

    table = Table(title="data sets")
    for col in ("name", "kind", "plugin", "description", "source"):
        table.add_column(col)
    for name, (info, plugin) in registry.datasets.items():
        table.add_row(name + (":<arg>" if info.takes_argument else ""), info.kind, plugin, info.description, info.source)
    console.print(table)
    return 0


def _suite_from_args(args, registry):
    from harness.suite import DatasetSpec, Overrides, Suite, from_mapping, load_suite, validate

    if args.suite:
        if args.methods:
            raise ConfigError("give methods either on the command line or in --suite, not both")
        suite = load_suite(args.suite)
    else:
        if not args.methods and not args.cash:
            raise ConfigError("name at least one method (see `harness plugins`) or give --suite FILE")
        names = registry.match_methods(args.methods)
        suite = from_mapping({"name": args.name or "run", "datasets": args.dataset or ["digits"], "methods": names,
                              **({"cash": registry.match_methods(args.cash)} if args.cash else {})},
                             default_name="run")
    changes: dict[str, Any] = {}
    for flag, key in (("timeout", "timeout"), ("storage", "storage"), ("sampler", "sampler"), ("pruner", "pruner"),
                      ("sampler_seed", "sampler_seed"), ("data_seed", "data_seed"), ("device", "device"),
                      ("trial_timeout", "trial_timeout"), ("heartbeat", "heartbeat"), ("max_retries", "max_retries"),
                      ("storage_retry", "storage_retry")):
        value = getattr(args, flag)
        if value is not None:
            changes[key] = value
    if args.no_amp:
        changes["amp"] = False
    if args.compile:
        changes["compile"] = True
    if args.cash:
        changes["cash"] = tuple(registry.match_methods(args.cash))
    if args.objectives:
        from harness.multiobjective import parse_objectives

        changes["objectives"] = parse_objectives(args.objectives)
        if len(changes["objectives"]) > 1 and args.pruner is None:
            changes["pruner"] = "none"  # multi-objective studies cannot prune; a named pruner is refused
    if args.name:
        changes["name"] = args.name
    if args.suite and args.dataset:
        changes["datasets"] = tuple(DatasetSpec(name=d) for d in args.dataset)
    if args.target or args.labels_per_class is not None:
        import dataclasses

        ds = changes.get("datasets", suite.datasets)
        changes["datasets"] = tuple(dataclasses.replace(
            d, options={**d.options, **({"target": args.target} if args.target else {})},
            labels_per_class=args.labels_per_class if args.labels_per_class is not None else d.labels_per_class,
        ) for d in ds)
    # Budgets on the command line beat every row's and the suite file's (Suite.budget).
    changes["overrides"] = Overrides(trials=args.trials, seeds=args.seeds, epochs=args.epochs,
                                     params=_params(args.param))
    suite = validate(Suite(**{**{f: getattr(suite, f) for f in suite.__dataclass_fields__}, **changes}))
    for row in suite.rows:
        registry.method(row.method)
    return suite


def _cmd_run(args, registry, console) -> int:
    from harness.runner import run_suite

    if args.tune_only:
        return _cmd_tune_only(args, registry, console)
    suite = _suite_from_args(args, registry)  # a broken plugin this run uses is an error here
    for prob in registry.problems:  # the others: once, before any work
        print(f"harness: warning: {redact(str(prob))}", file=sys.stderr)
    out = Path(args.out) if args.out else Path("results") / suite.name
    if len(suite.objectives) > 1:
        console.print(f"objectives {', '.join(suite.objectives)}: pruning is off (multi-objective studies cannot "
                      "prune); the Pareto trial with the best val accuracy is re-trained over seeds", highlight=False)
    crashed, extra, fresh = [], None, args.fresh
    if args.recompute:
        from harness.runner import forget_rows

        if fresh:
            raise ConfigError("give --fresh (every row) or --recompute ROW (these rows), not both")
        forget_rows(suite, registry, out, args.recompute,
                    lambda m: console.print(redact(m), highlight=False, markup=False))
    if args.workers is not None or args.devices is not None:
        from harness.runner import move_aside, work_left
        from harness.workers import describe, pool_settings, run_pool

        if args.devices and args.device:
            raise ConfigError("give --device (every process) or --devices (one each, in turn), not both")
        pool = pool_settings(args.workers if args.workers is not None else len(args.devices.split(",")),
                             threads_for(args.threads) if args.threads != "auto" else None, args.devices, args.plugin)
        say = lambda m: console.print(redact(m), highlight=False, markup=False)  # noqa: E731
        if fresh:
            move_aside(suite, out, say)
            fresh = False
        if work_left(suite, registry, out):
            crashed = run_pool(suite, out, pool, say).crashed
        extra = {"workers": describe(pool)}
    if args.seeds_until_decided is not None:
        from harness.rounds import run_until_decided

        if args.seeds_until_decided < 1:
            raise ConfigError(f"--seeds-until-decided must be a positive integer, got {args.seeds_until_decided}")
        result = run_until_decided(suite, registry, out, args.seeds_until_decided, console=console,
                                   progress=not args.no_progress, fresh=fresh, extra_provenance=extra)
    else:
        result = run_suite(suite, registry, out, console=console, progress=not args.no_progress, fresh=fresh,
                           extra_provenance=extra)
    if result.report is not None:
        console.print(result.report.terminal_table())
        _print_seed_lines(console, result.report.seed_lines())
    else:  # nothing computed: the stored table as written
        lines = result.paths["summary_md"].read_text(encoding="utf-8").splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
        end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
        console.print("\n".join(lines[start:end]), markup=False)
    console.print(f"tables: {result.paths['summary_md']}  (per seed: {result.paths['per_seed_csv']})", highlight=False)
    for key, path in result.paths.items():
        if key.startswith(("cash_", "pareto_")) and key.endswith("_md"):
            console.print(f"{'best trial per method' if key.startswith('cash_') else 'Pareto front'}: {path}",
                          highlight=False)
    for o in result.outcomes:
        if o.status == "skipped":
            console.print(redact(f"skipped {o.dataset} · {o.row}: {o.detail}"), highlight=False)
    failed = [o for o in result.outcomes if o.status in ("FAIL", "partial")]
    owners = {row.name: registry.methods[row.method].plugin for row in suite.all_rows() if row.method in registry.methods}
    for o in failed:
        plugin = f" (plugin {owners[o.row]!r})" if o.row in owners else ""
        print(redact(f"harness: error: {o.dataset} · {o.row}: {o.detail}{plugin}"), file=sys.stderr)
    for child in crashed:
        print(redact(f"harness: error: {child.label} crashed ({child.reason()}); the run finished without it"),
              file=sys.stderr)
    return EXIT_USAGE if failed or crashed else 0


def _cmd_tune_only(args, registry, console) -> int:
    """One process of ``run --workers``: the tuning trials of the suite its parent stored, nothing else."""
    from harness.runner import run_suite
    from harness.suite import suite_from_spec
    from harness.worker import sigterm_as_interrupt

    suite = suite_from_spec(json.loads(Path(args.tune_only).read_text(encoding="utf-8")))
    changes = {k: v for k, v in (("storage", args.storage), ("device", args.device)) if v is not None}
    with sigterm_as_interrupt():  # how the parent stops it
        run_suite(suite.replace(**changes), registry, Path(args.out), console=console, progress=False, tune_only=True)
    return 0


def _cmd_report(args, registry, console) -> int:
    from harness.records import collect_provenance, collect_rows
    from harness.report.html import method_descriptions
    from harness.report.pipeline import build
    from harness.report.plots import load_studies
    from harness.storage import make_storage

    out = Path(args.out or "results")
    if not args.storage and not (out / "optuna.journal").is_file():
        raise ConfigError(f"no study storage found: {out / 'optuna.journal'} does not exist (give --out or --storage)")
    from harness.runner import check_writable

    check_writable(out, "--out", folder=True)  # before any table is rewritten
    if args.html:
        check_writable(Path(args.html), "--html", folder=False)
    storage = make_storage(args.storage, out)
    rows = collect_rows(storage, args.suite)
    studies = load_studies(storage, args.suite, names=args.study)
    if args.study:
        missing = sorted(set(args.study) - {r.study.study_name for r in studies})
        if missing:
            raise ConfigError(f"no harness study named {', '.join(map(repr, missing))} in the storage")
        chosen = {(r.suite, r.dataset, r.method) for r in studies}
        rows = [r for r in rows if (r["suite"], r["dataset"], r["method"]) in chosen]
    if not rows:
        raise ConfigError("the storage holds no harness results" + (f" for suite {args.suite!r}" if args.suite else ""))
    from harness.runner import write_study_extras

    report = build(rows, collect_provenance(storage, args.suite), studies=studies,
                   title=args.suite or rows[0]["suite"], descriptions=method_descriptions(registry))
    write_study_extras(storage, args.suite, out)  # before the page, which embeds the Pareto plots
    paths = report.write(out, html_path=Path(args.html) if args.html else None)
    _print_seed_lines(console, report.seed_lines())
    console.print(f"rebuilt {len(rows)} per-seed rows → {paths['summary_md']}; report page → {paths['html']}",
                  highlight=False)
    return 0


def _print_seed_lines(console, lines: list[str]) -> None:
    """The accuracy differences and the seeds each needs (comparisons.md has every metric)."""
    if lines:
        console.print("how many seeds? (paired t-test power, α = 0.05, power 0.8; with many rows, against each "
                      "data set's best; comparisons.md has every pair)",
                      highlight=False)
        for line in lines:
            console.print("  " + redact(line), markup=False, highlight=False)


def _cmd_worker(args, registry, console) -> int:
    from harness.worker import run_worker

    if args.n_trials is not None and args.n_trials < 1:
        raise ConfigError(f"--n-trials must be a positive integer, got {args.n_trials}")
    if args.storage_retry is not None and not args.storage_retry > 0:
        raise ConfigError(f"--storage-retry must be a positive number of seconds, got {args.storage_retry}")
    return run_worker(args.storage, args.study, args.plugin, console, n_trials=args.n_trials, out=args.out,
                      device=args.device, wait_s=args.wait, storage_retry=args.storage_retry)


def _cmd_launch(args, registry, console) -> int:
    from harness.launch import LaunchPlan, check_plan, describe, slurm_script, write_script
    from harness.suite import load_suite

    suite = load_suite(args.suite)
    plan = check_plan(LaunchPlan(
        suite=suite, suite_file=args.suite, storage=args.storage, machines=args.machines,
        out=args.out or str(Path("results") / suite.name), wait_s=args.wait, plugins=tuple(args.plugin),
        threads=threads_for(args.threads) if args.threads != "auto" else None))
    for row in suite.all_rows():  # unknown methods fail here, not on the machines
        if row.method != "cash":
            registry.method(row.method)
    print(describe(plan, registry), end="")
    if args.slurm:
        script = slurm_script(plan, registry, cpus=args.cpus_per_task)
        if args.dry_run:
            print(f"\n# {args.slurm} (not written: --dry-run)\n{script}", end="")
        else:
            write_script(Path(args.slurm), script)
            print(f"\nwrote {args.slurm}: submit it with `sbatch {args.slurm}` from a shell that has exported "
                  f"HARNESS_STORAGE")
    return 0


def _cmd_bench(args, registry, console) -> int:
    from rich.table import Table

    from harness.bench import BenchSettings, run_bench
    from harness.runner import resolve_device

    for flag in ("epochs", "repeats"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag} must be a positive integer, got {getattr(args, flag)}")
    methods = registry.match_methods(args.methods)
    device = resolve_device(args.device)
    registry.dataset(args.dataset)  # unknown names fail before any work
    out = Path(args.out) if args.out else Path("results") / "bench" / f"{args.dataset}-{device.type}"
    frame = run_bench(registry, methods, BenchSettings(
        dataset=args.dataset, device=device, epochs=args.epochs, repeats=args.repeats, amp=not args.no_amp,
        compile=args.compile, pinned=_params(args.param)), out)
    table = Table(title=f"throughput on {args.dataset}, {device}")
    cols = [c for c in ("method", "status", "train_samples_per_s", "train_step_ms", "infer_samples_per_s",
                        "param_count", "peak_mem_mb", "reason") if c in frame.columns]
    for c in cols:
        table.add_column(c)
    for _, r in frame.iterrows():
        table.add_row(*[f"{v:,.1f}" if isinstance(v, float) else str(v) for v in (r[c] for c in cols)])
    console.print(table)
    console.print(f"written: {out / 'bench.md'}")
    return 2 if (frame["status"] == "FAIL").any() else 0


COMMANDS = {"plugins": _cmd_plugins, "datasets": _cmd_datasets, "run": _cmd_run, "report": _cmd_report,
            "worker": _cmd_worker, "launch": _cmd_launch, "bench": _cmd_bench, "new-plugin": _cmd_new_plugin}


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    args = build_parser().parse_args(argv)
    # Piped output is read by people and tests alike: wide tables, no hard wrapping of messages.
    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    try:
        computes = args.command in ("run", "worker", "bench") or (
            args.command == "plugins" and (args.check or args.spaces or args.json))
        if args.threads != "auto" or computes:  # listing and describing never import torch
            set_threads(threads_for(args.threads), explicit=args.threads != "auto")
        if args.command == "new-plugin":  # writes files; needs no plugin
            return COMMANDS[args.command](args, None, console)
        from harness.plugins import load_plugins

        registry = load_plugins(modules=args.plugin)
        return COMMANDS[args.command](args, registry, console)
    except HarnessError as exc:
        print(f"harness: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("harness: interrupted; everything finished so far is stored — run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
