"""Scale-out on one machine: tuning trials per minute of ``harness run --workers N`` for each N.

A tuning-bound run (``erm`` on digits: many cheap trials, one seed re-run) is run once per worker
count into a fresh folder, every process with one thread. Trials per minute count the completed
tuning trials over the span from the first trial's start to the last one's end, read from the
run's own journal, so start-up, the seed re-run and the tables do not dilute it. The network and
batch size are pinned, so every trial costs about the same whichever configuration the sampler
draws. Each count is measured ``--repeats`` times, the counts interleaved so that a passing load
falls on all of them; the table gives each count's median rate, and the ratio is that median over
the first count's (every repeat is in ``workers_runs.csv``). Run it on an otherwise idle machine
with at least as many cores as the largest count: the load average at the start is recorded.

    python benchmarks/workers.py                          # --workers 1 2: writes results/workers/
    python benchmarks/workers.py --workers 1 2 4 --trials 120
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from harness.report.provenance import gather, now
from harness.report.tables import to_markdown
from harness.storage import make_storage

NAME = "workers"
PINNED = ("model=mlp", "hidden=128", "batch_size=64")


def command(workers: int, trials: int, epochs: int, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "harness.cli", "--threads", "1", "run", "erm", "--dataset", "digits", "--name", NAME,
           "--trials", str(trials), "--epochs", str(epochs), "--seeds", "1", "--sampler", "random",
           "--pruner", "none", "--workers", str(workers), "--out", str(out), "--no-progress"]
    for pin in PINNED:
        cmd += ["--param", pin]
    return cmd


def trial_rate(out: Path) -> dict[str, float]:
    """Completed tuning trials and their span in the run's journal; trials per minute over it."""
    study = optuna.load_study(study_name=f"{NAME}/digits/erm", storage=make_storage(None, out))
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return {"trials": len(done), "tuning_s": span, "trials_per_min": 60 * len(done) / span,
            "processes_with_trials": len({t.user_attrs.get("worker") for t in done})}


def measure(workers: int, trials: int, epochs: int, folder: Path) -> dict[str, object]:
    out = folder / f"w{workers}"
    if out.exists():
        import shutil

        shutil.rmtree(out)  # each repeat tunes from scratch
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    ran = subprocess.run(command(workers, trials, epochs, out), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if ran.returncode != 0:
        raise SystemExit(f"workers.py: error: --workers {workers} failed: {ran.stderr.strip().splitlines()[-1:]}")
    row = {"workers": workers, "threads_each": 1, **trial_rate(out), "wall_s": wall}
    print(f"--workers {workers}: {row['trials']} trials in {row['tuning_s']:.1f} s of tuning, "
          f"{row['trials_per_min']:.1f} trials/min", flush=True)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts; the first is the baseline")
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="measurements per count (interleaved); the median counts")
    p.add_argument("--bar", type=float, default=1.8, help="the speed-up the last count should reach over the first")
    p.add_argument("--out", default="results/workers")
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="harness-workers-bench-") as tmp:
        runs = pd.DataFrame([{"repeat": r, **measure(n, args.trials, args.epochs, Path(tmp))}
                             for r in range(args.repeats) for n in args.workers])
    frame = runs.groupby("workers", sort=False).median(numeric_only=True).reset_index().drop(columns="repeat")
    frame["workers"] = frame.workers.astype(int)
    frame["trials_per_min_runs"] = [" / ".join(f"{v:.1f}" for v in runs[runs.workers == n].trials_per_min)
                                    for n in frame.workers]
    frame["ratio"] = frame.trials_per_min / frame.trials_per_min.iloc[0]
    prov = gather(task="erm on digits", trials=args.trials, epochs=args.epochs, repeats=args.repeats, pinned=list(PINNED), sampler="random",
                  pruner="none", workers=args.workers, cores=cores, load_average_at_start=load,
                  command_per_count=" ".join(["harness", *command(args.workers[-1], args.trials, args.epochs, Path("OUT"))[3:]]),
                  finished_at=now())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "workers.csv", index=False)
    runs.to_csv(out / "workers_runs.csv", index=False)
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str) + "\n")
    ratio = frame.ratio.iloc[-1]
    verdict = "meets" if ratio >= args.bar else "misses"
    (out / "workers.md").write_text(
        f"# Tuning trials per minute by worker processes\n\nerm on digits, {args.trials} tuning trials × {args.epochs} "
        f"epochs, network and batch size pinned ({', '.join(PINNED)}), one thread per process, {cores} cores, "
        f"1-minute load average {load:.2f} at the start. Trials per minute: completed trials over the span from the "
        "first trial's start to the last trial's end (from the run's journal); the median of "
        f"{args.repeats} interleaved repeats per count, each repeat's rate listed.\n\n"
        + to_markdown(frame.round(3).astype(object)) + f"\n\n--workers {args.workers[-1]} ÷ --workers {args.workers[0]}: "
        f"{ratio:.2f}× ({verdict} the {args.bar}× bar)\n\n- command per count: `{prov['command_per_count']}`\n"
        f"- git commit: `{prov['git_commit']}`\n- hardware: {prov['hardware']}\n")
    print(to_markdown(frame.round(3).astype(object)))
    print(f"ratio {ratio:.2f}× ({verdict} the {args.bar}× bar); written: {out / 'workers.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
