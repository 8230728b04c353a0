"""Pruning efficiency: the compute a tuning run needs to reach the unpruned best validation accuracy.

For each sampler seed, the same tuning budget of ``erm`` runs three times: without pruning, with the
median pruner and with Hyperband. The budget is compute, counted in training epochs (one pruning
report per epoch, so a pruned trial costs only the epochs it ran): the unpruned run's ``trials ×
epochs``. A pruned run spends the same budget, so it runs more, cheaper trials. For a pruned run,
the cumulative epochs at the first trial whose validation accuracy reaches the unpruned run's best
are reported over two denominators: the unpruned run's total epochs (``share_of_unpruned_epochs``:
what the budget could have been) and the epochs the unpruned run itself took to first reach that
best (``speedup_ratio``: the honest speed-up, below 1 only when pruning got there sooner).

    python benchmarks/pruning.py                  # writes results/pruning/
    python benchmarks/pruning.py --jobs 2         # runs in two processes (one torch thread each)
    python benchmarks/pruning.py --recompute --out results/pruning   # tables from its pruning_trials.csv
    python benchmarks/pruning.py --space verywide --trials 16 --epochs 30   # most configurations bad

Settings are compared by naming each pruner as ``NAME`` (the harness default settings of
:data:`harness.samplers.PRUNER_SETTINGS`) or ``NAME:key=value,...`` (those settings overridden):

    python benchmarks/pruning.py --space wide --trials 16 --epochs 20 --stop-at-target \
        --pruners median median:n_startup_trials=1 hyperband:reduction_factor=4 --out results/pruning/settings

``--stop-at-target`` ends a pruned run at its first trial that reaches the unpruned best (the measure
is unchanged, the epochs after it are saved); ``--reuse CSV`` takes the runs of an earlier run with the
same task, space and budget instead of training them again: its unpruned runs, and its pruned runs
whose pruner was built with the same settings (runs are deterministic given seed and settings).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from dataclasses import dataclass
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

import optuna
import pandas as pd
import torch
from optuna.trial import TrialState

from harness.data import load_task
from harness.plugins import load_plugins
from harness.report.provenance import gather, now
from harness.report.tables import to_markdown
from harness.phases import PhaseSettings, TuneSettings, tune
from harness.errors import ConfigError
from harness.samplers import PRUNER_SETTINGS, check_pruner, make_pruner, make_sampler


@dataclass(frozen=True)
class Space:
    """A method's search space with some ranges replaced: the spaces pruning is meant for, where many
    configurations do not learn at all (learning rate too small, weight decay too large) or diverge."""

    lr: tuple[float, float] | None = None
    weight_decay: tuple[float, float] | None = None
    optimizers: tuple[str, ...] | None = None

    def describe(self) -> str:
        parts = [f"{', '.join(self.optimizers)} only" if self.optimizers else ""]
        for name, bounds in (("learning rate", self.lr), ("weight decay", self.weight_decay)):
            if bounds:
                parts.append(f"{name} {bounds[0]:g} to {bounds[1]:g}")
        text = "; ".join(filter(None, parts))
        return text + (" for every optimiser" if self.lr and not self.optimizers else "")


# `wide`: every optimiser's learning rate from 1e-5 to 1. `verywide`: four optimisers, learning rates over
# seven decades and weight decay up to 1, so that most configurations are bad, and bad from the first epochs.
SPACES: dict[str, Space | None] = {
    "default": None,
    "wide": Space(lr=(1e-5, 1.0)),
    "verywide": Space(lr=(1e-6, 10.0), weight_decay=(1e-6, 1.0), optimizers=("sgd", "adam", "rmsprop", "adagrad")),
}


class _WideTrial:
    """An Optuna trial whose ``lr``, ``weight_decay`` and ``optimizer`` are drawn from a :class:`Space`
    where it sets them (log-uniform ranges); every other name passes through."""

    def __init__(self, trial, space: Space):
        self._trial, self._space = trial, space

    def __getattr__(self, name: str):
        return getattr(self._trial, name)

    def suggest_float(self, name: str, low: float, high: float, **kwargs) -> float:
        bounds = {"lr": self._space.lr, "weight_decay": self._space.weight_decay}.get(name.rsplit(".", 1)[-1])
        if bounds:
            low, high, kwargs = *bounds, {"log": True}
        return self._trial.suggest_float(name, low, high, **kwargs)

    def suggest_categorical(self, name: str, choices):
        if name.rsplit(".", 1)[-1] == "optimizer" and self._space.optimizers:
            choices = list(self._space.optimizers)
        return self._trial.suggest_categorical(name, choices)


class WideSpace:
    """``method`` with the ranges of ``space`` in its search space."""

    def __init__(self, method, space: Space):
        self._method, self._space = method, space

    def __getattr__(self, name: str):
        return getattr(self._method, name)

    def search_space(self, trial, task) -> dict:
        return self._method.search_space(_WideTrial(trial, self._space), task)


def epochs_of(trial: optuna.trial.FrozenTrial) -> int:
    return len(trial.intermediate_values)


def parse_pruner(spec: str) -> tuple[str, dict[str, int | float]]:
    """``NAME`` or ``NAME:key=value,...`` → the harness pruner name and the settings it overrides."""
    name, _, rest = spec.partition(":")
    settings: dict[str, int | float] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        try:
            settings[key.strip()] = int(value)
        except ValueError:
            try:
                settings[key.strip()] = float(value)
            except ValueError:
                eq = ""
        if not eq:
            raise ConfigError(f"pruner {spec!r}: write settings as key=number, not {item!r}")
    known = PRUNER_SETTINGS[check_pruner(name)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigError(f"pruner {spec!r}: no setting {', '.join(unknown)} (its settings: {', '.join(known) or 'none'})")
    return name, settings


def reached(study: optuna.Study, target: float | None) -> bool:
    return target is not None and any(t.state == TrialState.COMPLETE and t.value >= target - 1e-9 for t in study.trials)


def run(method, task, pruner: str, seed: int, trials: int, epochs: int, target: float | None = None) -> list[dict]:
    """One tuning run of ``trials × epochs`` training epochs under the pruner spec ``pruner``; with a
    ``target``, it ends at the first complete trial whose validation accuracy reaches it."""
    name, settings = parse_pruner(pruner)
    study = optuna.create_study(direction="maximize", sampler=make_sampler("tpe", seed),
                                pruner=make_pruner(name, epochs, **settings))
    budget, done = trials * epochs, 0
    # One trial at a time until the epoch budget is spent (bounded: every trial runs ≥ 1 epoch).
    while sum(epochs_of(t) for t in study.trials) < budget and done < budget and not reached(study, target):
        done += 1
        tune(study, method, task, TuneSettings(trials=done, phase=PhaseSettings(epochs=epochs, device=torch.device("cpu")), seed_base=seed))
    out, spent = [], 0
    for t in study.trials:
        spent += epochs_of(t)
        value = t.value if t.state == TrialState.COMPLETE else None
        out.append({"pruner": pruner, "seed": seed, "trial": t.number, "state": t.state.name, "epochs": epochs_of(t),
                    "cumulative_epochs": spent, "val_accuracy": value,
                    "params": json.dumps(t.params, sort_keys=True)})
    return out


def _run_job(job: tuple) -> list[dict]:
    method_name, dataset, space, pruner, seed, trials, epochs, target = job
    if multiprocessing.parent_process() is not None:
        torch.set_num_threads(1)  # side-by-side jobs share the cores
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    registry = load_plugins()
    task = load_task(registry, dataset).without_test()
    method = registry.method(method_name)
    rows = run(WideSpace(method, SPACES[space]) if SPACES[space] else method, task, pruner, seed, trials, epochs, target)
    best = max(r["val_accuracy"] or 0 for r in rows)
    print(f"seed {seed} {pruner:9s}: best val {best:.4f}, epochs {rows[-1]['cumulative_epochs']}", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="erm")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--space", choices=SPACES, default="default",
                   help="the method's own search space, or one with wider ranges: "
                        + "; ".join(f"`{name}`: {space.describe()}" for name, space in SPACES.items() if space))
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    p.add_argument("--pruners", nargs="+", default=["median", "hyperband"], metavar="NAME[:key=value,...]",
                   help="pruners compared with the unpruned run: a harness pruner name, its default settings "
                        "overridden after a colon")
    p.add_argument("--stop-at-target", action="store_true",
                   help="end each pruned run at its first trial reaching the unpruned best")
    p.add_argument("--reuse", "--baseline", type=Path, nargs="+", default=[], metavar="CSV",
                   help="reuse the runs of these earlier pruning_trials.csv files (the first that has a run wins) "
                        "with the same task, space and budget: unpruned runs, and pruned runs built with the same settings")
    p.add_argument("--held-out", type=int, nargs="*", default=[], metavar="SEED",
                   help="seeds not used to choose the pruner settings: the overall table shows them apart")
    p.add_argument("--out", default="results/pruning")
    p.add_argument("--jobs", type=int, default=1, help="processes running (seed, pruner) runs side by side")
    p.add_argument("--recompute", action="store_true",
                   help="rewrite the tables from OUT/pruning_trials.csv and OUT/provenance.json, training nothing")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.recompute:
        return recompute(out)
    try:
        specs = {spec: parse_pruner(spec) for spec in args.pruners if spec != "none"}
        built = {spec: _settings(make_pruner(name, args.epochs, **settings))
                 for spec, (name, settings) in {"none": ("none", {}), **specs}.items()}
        reused: dict[tuple[int, str], list[dict]] = {}
        for csv in args.reuse:
            reused = {**_reusable(args, csv, built), **reused}
    except ConfigError as exc:
        print(f"pruning.py: error: {exc}", file=sys.stderr)
        return 2
    reused = {key: rows for key, rows in reused.items() if key[0] in args.seeds}
    prov = gather(method=args.method, dataset=args.dataset, space=args.space, trials=args.trials, epochs=args.epochs,
                  seeds=args.seeds, held_out_seeds=args.held_out, sampler="tpe", stop_at_target=args.stop_at_target,
                  pruners=built, jobs=args.jobs, started_at=now(), finished_at=None)
    if args.reuse:
        prov["reused"] = []
        for csv in args.reuse:
            earlier = json.loads((csv.parent / "provenance.json").read_text())
            prov["reused"].append({"from": str(csv), "git_commit": earlier["git_commit"],
                                   "runs": [f"seed {seed} {spec}" for (seed, spec), rows in sorted(reused.items())
                                            if rows[0]["_from"] == str(csv)],
                                   **{k: earlier[k] for k in ("reused", "baseline") if k in earlier}})
        reused = {key: [{k: v for k, v in row.items() if k != "_from"} for row in rows] for key, rows in reused.items()}
    out.mkdir(parents=True, exist_ok=True)
    trials = []

    def keep(rows: list[dict]) -> None:
        """Every finished run is stored at once: a run cut short leaves the tables to ``--recompute``."""
        trials.extend(rows)
        pd.DataFrame(trials).to_csv(out / "pruning_trials.csv", index=False)
        (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str) + "\n")

    def job(pruner: str, seed: int, target: float | None = None) -> tuple:
        return args.method, args.dataset, args.space, pruner, seed, args.trials, args.epochs, target

    def pruned(baseline: list[dict]) -> list[tuple]:
        """The pruned runs of the baseline's seed, aimed at its best when they stop there."""
        target = max(r["val_accuracy"] or 0 for r in baseline) if args.stop_at_target else None
        seed = baseline[0]["seed"]
        return [job(spec, seed, target) for spec in specs if (seed, spec) not in reused]

    for rows in reused.values():
        keep(rows)
    todo = [rows for (_, spec), rows in reused.items() if spec == "none"]
    baselines = [job("none", seed) for seed in args.seeds if (seed, "none") not in reused]
    # Pruner by pruner, so that a sweep cut short has its first settings on every seed.
    runs = sorted((j for rows in todo for j in pruned(rows)), key=lambda j: list(specs).index(j[3]))
    # The pruned runs of a seed whose unpruned run is done go first: a run cut short has whole seeds.
    ready, waiting = runs, baselines

    def finished(rows: list[dict]) -> None:
        keep(rows)
        if rows[0]["pruner"] == "none":  # its pruned runs can start now
            ready.extend(pruned(rows))

    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending: set[Future] = set()
            while pending or ready or waiting:
                while len(pending) < args.jobs and (ready or waiting):
                    pending.add(pool.submit(_run_job, (ready or waiting).pop(0)))
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    finished(future.result())
    else:
        while ready or waiting:
            finished(_run_job((ready or waiting).pop(0)))
    prov["finished_at"] = now()
    keep([])
    write_tables(pd.DataFrame(trials), out, prov)
    return 0


def _reusable(args, csv: Path, built: dict[str, str]) -> dict[tuple[int, str], list[dict]]:
    """The runs of an earlier run that stand for this one's, by (seed, pruner): refused unless it had
    the same task, space and budget; a pruned run only where its pruner was built with the same
    settings, its seed's unpruned run (its target) comes along, and it was not stopped at the target
    where this run goes on."""
    earlier = json.loads((csv.parent / "provenance.json").read_text())
    for key in ("method", "dataset", "space", "trials", "epochs"):
        if earlier.get(key, "default") != getattr(args, key):
            raise ConfigError(f"{csv} ran with {key} {earlier.get(key)!r}, not {getattr(args, key)!r}")
    frame = pd.read_csv(csv)
    frame = frame.astype(object).where(frame.notna(), None)
    label = {settings: spec for spec, settings in earlier.get("pruners", {}).items()}
    stopped = earlier.get("stop_at_target", False) and not args.stop_at_target
    found = {}
    for spec, settings in built.items():
        if settings not in label or (stopped and spec != "none"):
            continue
        for seed, g in frame[frame.pruner == label[settings]].groupby("seed"):
            found[int(seed), spec] = [{**row, "pruner": spec, "_from": str(csv)} for row in g.to_dict("records")]
    return {(seed, spec): rows for (seed, spec), rows in found.items() if (seed, "none") in found}


def _settings(pruner: optuna.pruners.BasePruner) -> str:
    """A pruner's class and its plain settings, for the provenance (Optuna keeps them in private fields)."""
    plain = {k.lstrip("_"): v for k, v in vars(pruner).items() if isinstance(v, (bool, int, float, str))}
    return f"{type(pruner).__name__}({', '.join(f'{k}={v}' for k, v in plain.items())})"


def recompute(out: Path) -> int:
    """The tables again from a finished run's per-trial records, which hold every number they need
    (state, epochs and validation accuracy of each trial in order); the run's provenance is kept and
    the recomputation is recorded beside it."""
    trials_csv, prov_json = out / "pruning_trials.csv", out / "provenance.json"
    for path in (trials_csv, prov_json):
        if not path.is_file():
            print(f"pruning.py: error: {path} does not exist (run the benchmark into {out} first)", file=sys.stderr)
            return 2
    prov = json.loads(prov_json.read_text())
    now_prov = gather()
    prov["tables_recomputed"] = {"command": now_prov["command"], "git_commit": now_prov["git_commit"],
                                 "at": now(), "from": trials_csv.name}
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str) + "\n")
    write_tables(pd.read_csv(trials_csv), out, prov)
    return 0


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (seed, pruner): the epochs until the first trial reaching the unpruned run's best, over the
    unpruned run's total epochs and over the epochs the unpruned run needed to reach it."""
    summary = []
    for seed, g in frame.groupby("seed"):
        base = g[g.pruner == "none"]
        target, full = base.val_accuracy.max(), base.epochs.sum()
        base_reached = _epochs_to(base, target)
        for pruner, h in g.groupby("pruner", sort=False):
            reached = _epochs_to(h, target)
            summary.append({"seed": seed, "pruner": pruner, "best_val": h.val_accuracy.max(),
                            "unpruned_best_val": target, "epochs_total": int(h.epochs.sum()),
                            "trials": len(h), "pruned_trials": int((h.state == "PRUNED").sum()),
                            "epochs_to_unpruned_best": reached,
                            "unpruned_epochs_to_best": base_reached,
                            "share_of_unpruned_epochs": None if reached is None else reached / full,
                            "speedup_ratio": None if reached is None else reached / base_reached})
    return pd.DataFrame(summary)


def _epochs_to(trials: pd.DataFrame, target: float) -> int | None:
    """Cumulative epochs at the first trial whose validation accuracy reaches ``target``."""
    hit = trials[trials.val_accuracy >= target - 1e-9]
    return None if hit.empty else int(hit.cumulative_epochs.iloc[0])


def write_tables(frame: pd.DataFrame, out: Path, prov: dict) -> None:
    summary = summarise(frame)
    order = {spec: i for i, spec in enumerate(prov.get("pruners", {}))}  # rows in the order the pruners were named
    summary = summary.sort_values(["seed", "pruner"], key=lambda c: c.map(order) if c.name == "pruner" else c,
                                  kind="stable").reset_index(drop=True)
    summary.to_csv(out / "pruning.csv", index=False)
    table = to_markdown(summary.round(4).astype(object).fillna("not reached"))
    recomputed = prov.get("tables_recomputed")
    note = _unfinished_note(prov, summary) + (
        f"- tables recomputed from `{recomputed['from']}` (no training) by `{recomputed['command']}` at "
        f"`{recomputed['git_commit']}`\n" if recomputed else "")
    (out / "pruning.md").write_text(
        f"# Pruning efficiency: {prov['method']} on {prov['dataset']}{_space_note(prov)}\n\nBudget per run: "
        f"{prov['trials'] * prov['epochs']} training epochs (the unpruned run's {prov['trials']} TPE trials × "
        f"{prov['epochs']} epochs); pruned runs spend it on more trials. `epochs_to_unpruned_best`: epochs spent "
        "until the first trial matching the unpruned run's best validation accuracy (`not reached`: never within "
        "the budget), over the unpruned run's total (`share_of_unpruned_epochs`) and over the epochs the unpruned "
        "run itself needed to first reach that best (`unpruned_epochs_to_best`; the quotient `speedup_ratio` is "
        "the honest speed-up: below 1 only when pruning reached the best sooner)."
        + _stop_note(prov) + _reused_note(prov) + _settings_note(prov, set(summary.pruner)) + "\n\n" + table + "\n" + _overall(summary, prov.get("held_out_seeds") or [])
        + f"\n- command: `{prov['command']}`\n- git commit: `{prov['git_commit']}`\n- hardware: {prov['hardware']}\n"
        + note)
    print(table)


def _unfinished_note(prov: dict, summary: pd.DataFrame) -> str:
    """Says so when the run was stopped before it finished (its tables then come from ``--recompute``)."""
    if prov.get("finished_at"):
        return ""
    missing = [f"`{spec}`" for spec in prov.get("pruners", {}) if spec not in set(summary.pruner)]
    return ("- the run was stopped before it finished: these tables hold the runs it had finished"
            + (f" (never run: {', '.join(missing)})" if missing else "") + "\n")


def _stop_note(prov: dict) -> str:
    if not prov.get("stop_at_target"):
        return ""
    return (" Each pruned run ended at its first trial reaching the unpruned best, so its `best_val`, "
            "`epochs_total`, `trials` and `pruned_trials` count only up to there; `not reached` runs spent the "
            "whole budget." + (f" The unpruned runs of seeds {prov['baseline']['seeds']} are those of "
                               f"`{prov['baseline']['from']}` (git commit `{prov['baseline']['git_commit']}`)."
                               if prov.get("baseline") else ""))


def _reused_note(prov: dict) -> str:
    return "".join(f" Taken from `{r['from']}` (git commit `{r['git_commit']}`; its provenance says how each was "
                   f"made), not trained again: {'; '.join(r['runs'])}." for r in prov.get("reused", []) if r["runs"])


def _settings_note(prov: dict, ran: set[str]) -> str:
    pruners = {spec: built for spec, built in prov.get("pruners", {}).items() if spec != "none" and spec in ran}
    return "\n\nPruners:\n" + "".join(f"\n- `{spec}`: `{built}`" for spec, built in pruners.items()) if pruners else ""


def _space_note(prov: dict) -> str:
    """The search space in the title: nothing for the method's own, the widened range otherwise."""
    name = prov.get("space", "default")
    return "" if name == "default" else f" ({name} space: {SPACES[name].describe()})"


def _overall(summary: pd.DataFrame, held_out: list[int]) -> str:
    """Per pruner, over the seeds that chose its settings and, apart, over the held-out ones. The unpruned
    run's own row says how often it found its best early itself: where it did, a pruned run that
    shares its first trials reaches that best as early, and only the speed-up ratio tells them apart."""
    lines = ["| pruner | seeds reaching the unpruned best within 50 % of its epochs | median share (not reached = 1) "
             "| seeds reaching it sooner than the unpruned run | median speed-up ratio (not reached = ∞) |",
             "|---|---|---|---|---|"]
    groups = summary.groupby([summary.pruner, summary.seed.isin(held_out)], sort=False)
    for (pruner, out_of_sample), g in sorted(groups, key=lambda kv: kv[0][1]):
        notes = ["the unpruned run itself"] if pruner == "none" else []
        if held_out:
            notes.append(f"{'held-out' if out_of_sample else 'selection'} seeds {', '.join(map(str, sorted(g.seed)))}")
        pruner = f"{pruner} ({'; '.join(notes)})" if notes else pruner
        share = g.share_of_unpruned_epochs.astype(float).fillna(1.0)
        ratio = g.speedup_ratio.astype(float).fillna(float("inf"))
        lines.append(f"| {pruner} | {int((share <= 0.5).sum())} of {len(g)} | {share.median():.3f} "
                     f"| {int((ratio < 1).sum())} of {len(g)} | {ratio.median():.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
