"""Storage cost of the tuning loop, and how trials per minute grow with workers on PostgreSQL.

Two measurements, written to ``results/storage/`` (CSV, Markdown, provenance JSON):

* **overhead**: milliseconds per trial that the storage costs the loop, with an empty objective:
  exactly the storage calls ``harness.phases.tune.tune`` makes per trial (ask, the first heartbeat,
  the ``worker``/``config``/``val`` attributes, tell), for a journal file, SQLite and PostgreSQL.
* **throughput**: trials per minute of 1 and 2 worker processes sharing one PostgreSQL study, each
  trial a fixed sleep (``--trial-seconds``), so the figure shows the cost of coordination and not
  how the CPU is shared.

Without ``--postgres URL`` a throwaway server is started (``tests/pg.py``) and stopped at the end.

    python benchmarks/storage_throughput.py            # about a minute
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the throwaway cluster helper

from harness.report.provenance import git_commit, hardware, now, versions  # noqa: E402
from harness.report.tables import to_markdown  # noqa: E402
from harness.storage import ask, heartbeat, make_storage  # noqa: E402

HEARTBEAT = 10  # the default of `harness run`


def one_trial(study: optuna.Study, work_s: float = 0.0) -> None:
    """The storage calls of one tuning trial, around ``work_s`` seconds of (simulated) work."""
    trial = ask(study)
    with heartbeat(study._storage, trial._trial_id):
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("config", {"x": x})
        if work_s:
            time.sleep(work_s)
    trial.set_user_attr("val", {"accuracy": x, "ece": 0.0, "nll": 0.0, "brier": 0.0})
    study.tell(trial, x)


def overhead_ms(url: str | None, folder: Path, trials: int) -> float:
    storage = make_storage(url, folder, heartbeat=HEARTBEAT)
    study = optuna.create_study(storage=storage, study_name="overhead", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    one_trial(study)  # connections, caches
    started = time.perf_counter()
    for _ in range(trials):
        one_trial(study)
    return 1000 * (time.perf_counter() - started) / trials


def _worker(url: str, total: int, work_s: float, barrier, out) -> None:
    storage = make_storage(url, Path("."), heartbeat=HEARTBEAT)
    study = optuna.load_study(study_name="throughput", storage=storage, sampler=optuna.samplers.RandomSampler())
    barrier.wait()
    done = 0
    while len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) < total:
        one_trial(study, work_s)
        done += 1
    out.put((done, time.perf_counter()))


def trials_per_minute(url: str, workers: int, total: int, work_s: float) -> tuple[float, float]:
    """(trials per minute, seconds) for ``workers`` processes completing ``total`` trials together."""
    optuna.create_study(storage=make_storage(url, Path(".")), study_name="throughput", direction="maximize")
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, total, work_s, barrier, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    barrier.wait()
    started = time.perf_counter()
    ends = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    finished = sum(n for n, _ in ends)
    seconds = max(t for _, t in ends) - started
    return 60 * finished / seconds, seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--postgres", help="postgresql://... of an empty database (default: a throwaway server)")
    p.add_argument("--trials", type=int, default=100, help="trials per storage for the overhead")
    p.add_argument("--throughput-trials", type=int, default=60, help="trials per throughput measurement")
    p.add_argument("--trial-seconds", type=float, default=0.1, help="the work of one throughput trial")
    p.add_argument("--out", default=str(REPO / "results" / "storage"))
    args = p.parse_args(argv)
    started_at, load_before = now(), os.getloadavg()
    cluster = None
    if args.postgres:
        database = lambda: args.postgres  # noqa: E731
        pg_version = "given by --postgres"
    else:
        from pg import Cluster

        cluster = Cluster().start()
        database = cluster.database
        pg_version = cluster.sql("SHOW server_version").strip()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            overhead = []
            for name, url in (("journal file", str(tmp / "o.journal")), ("SQLite", f"sqlite:///{tmp / 'o.db'}"),
                              ("PostgreSQL", database())):
                ms = overhead_ms(url, tmp, args.trials)
                overhead.append({"storage": name, "trials": args.trials, "ms_per_trial": round(ms, 2)})
                print(f"overhead {name}: {ms:.1f} ms per trial", flush=True)
        throughput = []
        for workers in (1, 2):
            tpm, seconds = trials_per_minute(database(), workers, args.throughput_trials, args.trial_seconds)
            throughput.append({"workers": workers, "trials": args.throughput_trials, "trial_seconds": args.trial_seconds,
                               "wall_s": round(seconds, 2), "trials_per_minute": round(tpm, 1)})
            print(f"throughput with {workers} worker(s): {tpm:.0f} trials/min", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
    for row in throughput:
        row["speedup"] = round(row["trials_per_minute"] / throughput[0]["trials_per_minute"], 2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overhead_df, throughput_df = pd.DataFrame(overhead), pd.DataFrame(throughput)
    overhead_df.to_csv(out / "overhead.csv", index=False)
    throughput_df.to_csv(out / "throughput.csv", index=False)
    provenance = {
        "command": " ".join(shlex.quote(a) for a in ["python", "benchmarks/storage_throughput.py",
                                                     *(sys.argv[1:] if argv is None else argv)]),
        "git_commit": git_commit(REPO), "started_at": started_at, "finished_at": now(), "hardware": hardware(),
        "load_average_1_5_15_min": {"before": [round(x, 2) for x in load_before],
                                    "after": [round(x, 2) for x in os.getloadavg()]},
        "versions": {**versions(), "postgresql": pg_version}, "heartbeat_s": HEARTBEAT,
        "postgres": "throwaway local server (tests/pg.py), fsync off" if cluster else "given by --postgres",
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    (out / "storage.md").write_text(
        "# Storage overhead and worker throughput\n\n"
        "## Storage cost per trial (empty objective)\n\nThe storage calls of one trial of the tuning loop: ask, "
        f"first heartbeat (RDB storages, every {HEARTBEAT} s), three attributes, tell; mean over "
        f"{args.trials} trials in one process.\n\n" + to_markdown(overhead_df.astype(str))
        + f"\n## Trials per minute on PostgreSQL\n\nWorker processes sharing one study until it has "
        f"{args.throughput_trials} complete trials; every trial sleeps {args.trial_seconds} s, so CPU contention "
        "does not enter; `speedup` is against one worker.\n\n" + to_markdown(throughput_df.astype(str))
        + "\n## How these figures were made\n\n"
        + "\n".join(f"- **{k.replace('_', ' ')}**: `{v}`" for k, v in provenance.items() if k != "versions")
        + "\n- **versions**: " + ", ".join(f"{k} {v}" for k, v in provenance["versions"].items()) + "\n"
    )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
