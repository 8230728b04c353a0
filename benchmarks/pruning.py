"""Pruning efficiency: the compute a tuning run needs to reach the unpruned best validation accuracy.

For each sampler seed, the same tuning budget of ``erm`` runs three times: without pruning, with the
median pruner and with Hyperband. The budget is compute, counted in training epochs (one pruning
report per epoch, so a pruned trial costs only the epochs it ran): the unpruned run's ``trials ×
epochs``. A pruned run spends the same budget, so it runs more, cheaper trials. For a pruned run,
the figure is the cumulative epochs at the first trial whose validation accuracy reaches the
unpruned run's best, as a share of the unpruned run's total epochs.

    python benchmarks/pruning.py                  # writes results/pruning/
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import optuna
import pandas as pd
import torch
from optuna.trial import TrialState

from harness.data import load_task
from harness.plugins import load_plugins
from harness.report.provenance import gather, now
from harness.report.tables import to_markdown
from harness.search import TuneSettings, make_pruner, make_sampler, tune


def epochs_of(trial: optuna.trial.FrozenTrial) -> int:
    return len(trial.intermediate_values)


def run(method, task, pruner: str, seed: int, trials: int, epochs: int) -> list[dict]:
    study = optuna.create_study(direction="maximize", sampler=make_sampler("tpe", seed),
                                pruner=make_pruner(pruner, epochs))
    budget, done = trials * epochs, 0
    # One trial at a time until the epoch budget is spent (bounded: every trial runs ≥ 1 epoch).
    while sum(epochs_of(t) for t in study.trials) < budget and done < budget:
        done += 1
        tune(study, method, task, TuneSettings(trials=done, epochs=epochs, device=torch.device("cpu"), seed_base=seed))
    out, spent = [], 0
    for t in study.trials:
        spent += epochs_of(t)
        value = t.value if t.state == TrialState.COMPLETE else None
        out.append({"pruner": pruner, "seed": seed, "trial": t.number, "state": t.state.name, "epochs": epochs_of(t),
                    "cumulative_epochs": spent, "val_accuracy": value})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="erm")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    p.add_argument("--out", default="results/pruning")
    args = p.parse_args(argv)
    registry = load_plugins()
    method = registry.method(args.method)
    task = load_task(registry, args.dataset).without_test()
    trials = []
    for seed in args.seeds:
        for pruner in ("none", "median", "hyperband"):
            rows = run(method, task, pruner, seed, args.trials, args.epochs)
            trials += rows
            best = max(r["val_accuracy"] or 0 for r in rows)
            print(f"seed {seed} {pruner:9s}: best val {best:.4f}, epochs {rows[-1]['cumulative_epochs']}", flush=True)
    frame = pd.DataFrame(trials)
    summary = []
    for seed, g in frame.groupby("seed"):
        base = g[g.pruner == "none"]
        target, full = base.val_accuracy.max(), base.epochs.sum()
        for pruner, h in g.groupby("pruner", sort=False):
            hit = h[h.val_accuracy >= target - 1e-9]
            reached = None if hit.empty else int(hit.cumulative_epochs.iloc[0])
            summary.append({"seed": seed, "pruner": pruner, "best_val": h.val_accuracy.max(),
                            "unpruned_best_val": target, "epochs_total": int(h.epochs.sum()),
                            "trials": len(h), "pruned_trials": int((h.state == "PRUNED").sum()),
                            "epochs_to_unpruned_best": reached,
                            "share_of_unpruned_epochs": None if reached is None else reached / full})
    summary = pd.DataFrame(summary)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "pruning_trials.csv", index=False)
    summary.to_csv(out / "pruning.csv", index=False)
    prov = gather(method=args.method, dataset=args.dataset, trials=args.trials, epochs=args.epochs,
                  seeds=args.seeds, sampler="tpe", finished_at=now())
    (out / "pruning.md").write_text(
        f"# Pruning efficiency: {args.method} on {args.dataset}\n\nBudget per run: {args.trials * args.epochs} "
        f"training epochs (the unpruned run's {args.trials} TPE trials × {args.epochs} epochs); pruned runs spend "
        "it on more trials. `share_of_unpruned_epochs`: epochs spent until the first trial matching the unpruned "
        "run's best validation accuracy, over the unpruned run's total (`not reached`: never within the budget)."
        "\n\n" + to_markdown(summary.round(4).astype(object).fillna("not reached"))
        + "\n" + _overall(summary)
        + f"\n- command: `{prov['command']}`\n- git commit: `{prov['git_commit']}`\n- hardware: {prov['hardware']}\n")
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str) + "\n")
    print(to_markdown(summary.round(4).astype(object).fillna("not reached")))
    return 0


def _overall(summary: pd.DataFrame) -> str:
    lines = ["| pruner | seeds reaching the unpruned best within 50 % of its epochs | median share (not reached = 1) |",
             "|---|---|---|"]
    for pruner, g in summary[summary.pruner != "none"].groupby("pruner", sort=False):
        share = g.share_of_unpruned_epochs.astype(float).fillna(1.0)
        lines.append(f"| {pruner} | {int((share <= 0.5).sum())} of {len(g)} | {share.median():.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
