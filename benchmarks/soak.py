"""Soak: many workers on one PostgreSQL study while workers are SIGKILLed and the server restarts.

A throwaway PostgreSQL server on loopback (``tests/pg.py``) holds one study; ``harness run`` and
``--workers`` ``harness worker`` processes tune it. Every few seconds a random worker in the middle of a
trial is killed with SIGKILL and started again; once, when a third of the budget is used, the server is stopped
(``pg_ctl stop -m fast``) for ``--outage`` seconds and started again. Everything is bounded by
``--max-seconds``. Then the study is checked: exactly ``--trials`` trials count against the budget,
all of them COMPLETE; every seed row once; no trial left RUNNING; no configuration lost (every killed
trial's configuration retried, unless the budget was already reached). The figures go to
``results/soak/`` (soak.md, soak.json) with their provenance; the exit code is 1 if a check fails.

    python benchmarks/soak.py            # about five minutes on two busy cores
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the throwaway cluster helper

from harness.report.provenance import git_commit, hardware, now, versions  # noqa: E402
from harness.storage import budget_used, make_storage, redact  # noqa: E402

STUDY = "soak/digits/{method}"


def _suite(path: Path, args: argparse.Namespace) -> None:
    path.write_text(
        f"name: soak\ndatasets: [digits]\nmethods: [{args.method}]\ntrials: {args.trials}\nseeds: {args.seeds}\n"
        f"epochs: {args.epochs}\nsampler: tpe\npruner: none\nheartbeat: {args.heartbeat}\ndevice: cpu\n"
        f"storage_retry: 120\n")


class Fleet:
    """The ``harness run`` process and the workers, each with its log file."""

    def __init__(self, folder: Path, url: str, args: argparse.Namespace):
        self.folder, self.url, self.args = folder, url, args
        self.cmd = [sys.executable, "-m", "harness.cli", "--threads", "1"]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.started = 0
        self.workers: list[subprocess.Popen] = []
        self.run = self._spawn(["run", "--suite", str(folder / "soak.yaml"), "--storage", url,
                                "--out", str(folder / "out"), "--no-progress"], "run")
        for _ in range(args.workers):
            self.workers.append(self._worker())

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen:
        self.started += 1
        log = open(self.folder / f"{name}-{self.started}.log", "w")
        return subprocess.Popen([*self.cmd, *argv], cwd=self.folder, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT)

    def _worker(self) -> subprocess.Popen:
        return self._spawn(["worker", "--study", STUDY.format(method=self.args.method), "--storage", self.url,
                            "--out", str(self.folder / "w"), "--wait", "120"], "worker")

    def kill_one(self, rng: random.Random, busy: set[int]) -> bool:
        """SIGKILL a random worker among those running a trial (pids in ``busy``) and start another
        in its place; False when none is."""
        alive = [i for i, p in enumerate(self.workers) if p.poll() is None and p.pid in busy]
        if not alive:
            return False
        i = rng.choice(alive)
        self.workers[i].send_signal(signal.SIGKILL)
        self.workers[i].wait()
        self.workers[i] = self._worker()
        return True

    def all(self) -> list[subprocess.Popen]:
        return [self.run, *self.workers]

    def stop(self) -> None:
        for p in self.all():
            if p.poll() is None:
                p.kill()
                p.wait()


def check(storage, method: str, trials: int, seeds: int, out: Path) -> dict:
    """The figures of the finished study, and whether each check holds."""
    study = optuna.load_study(study_name=STUDY.format(method=method), storage=storage)
    ts = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(t.state == s for t in ts) for s in TrialState}
    infra = [t for t in ts if t.state == TrialState.FAIL and t.user_attrs.get("fail_kind") == "infrastructure"]
    retried = {t.user_attrs.get("retry_of") for t in ts}
    lost_configs = [t.number for t in infra if t.params and t.number not in retried
                    and "budget was already reached" not in t.user_attrs.get("fail_reason", "")]
    per_seed = pd.read_csv(out / "per_seed.csv") if (out / "per_seed.csv").exists() else pd.DataFrame({"seed": []})
    seed_rows = sorted(int(s) for s in per_seed.seed)
    missing = sorted(set(range(seeds)) - set(seed_rows))
    duplicated = sorted({s for s in seed_rows if seed_rows.count(s) > 1})
    figures = {
        "trials_asked": trials, "trials_counted": budget_used(study), "trials_complete": states["complete"],
        "trials_running_left": states["running"], "trials_waiting_left": states["waiting"],
        "trials_failed_method": sum(t.state == TrialState.FAIL and t.user_attrs.get("fail_kind") == "method"
                                    for t in ts),
        "trials_failed_infrastructure": len(infra),
        "trials_given_back_surplus": sum(t.user_attrs.get("fail_kind") == "surplus" for t in ts),
        "seed_rows": seed_rows, "lost": len(lost_configs) + states["running"] + len(missing) + len(duplicated),
    }
    figures["checks"] = {
        "exactly the asked number of complete trials": states["complete"] == trials == figures["trials_counted"],
        "every seed row once": not missing and not duplicated and len(seed_rows) == seeds,
        "no trial left RUNNING": states["running"] == 0,
        "every killed configuration retried": not lost_configs,
    }
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=4, help="`harness worker` processes beside `harness run`")
    p.add_argument("--method", default="logreg")
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--heartbeat", type=int, default=2, help="seconds between heartbeats of running trials")
    p.add_argument("--kill-every", type=float, default=5.0, help="mean seconds between SIGKILLs of a random worker")
    p.add_argument("--outage", type=float, default=8.0, help="seconds the server stays stopped")
    p.add_argument("--max-seconds", type=float, default=300.0, help="bound on the whole soak")
    p.add_argument("--seed", type=int, default=0, help="seed of the choice of victims and intervals")
    p.add_argument("--out", default=str(REPO / "results" / "soak"))
    args = p.parse_args(argv)

    from pg import Cluster

    rng = random.Random(args.seed)
    started_at, load_before, t0 = now(), os.getloadavg(), time.monotonic()
    cluster = Cluster().start()
    kills, outage_s, outage_at, fleet = 0, None, None, None
    try:
        url = cluster.database()
        pg_version = cluster.sql("SHOW server_version").strip()
        with tempfile.TemporaryDirectory(prefix="harness-soak-") as tmp:
            folder = Path(tmp)
            _suite(folder / "soak.yaml", args)
            fleet = Fleet(folder, url, args)
            watch = make_storage(url, folder, retry_s=args.outage * 10, say=lambda m: None)
            next_kill = time.monotonic() + rng.uniform(0.5, 1.5) * args.kill_every
            while fleet.run.poll() is None:
                if time.monotonic() - t0 > args.max_seconds:
                    print(f"soak: bound of {args.max_seconds:g} s reached; stopping", flush=True)
                    break
                time.sleep(0.5)
                try:
                    study = optuna.load_study(study_name=STUDY.format(method=args.method), storage=watch)
                    used = budget_used(study)
                except KeyError:  # the run has not created the study yet
                    continue
                if outage_s is None and used >= args.trials // 3:
                    outage_at = used
                    halted = time.monotonic()
                    cluster.halt()
                    print(f"soak: server stopped at {used} trials", flush=True)
                    time.sleep(args.outage)
                    cluster.resume()
                    outage_s = time.monotonic() - halted
                    print(f"soak: server back after {outage_s:.1f} s", flush=True)
                if used < args.trials and time.monotonic() >= next_kill:
                    busy = {int(t.user_attrs.get("worker", ":0").rpartition(":")[2])
                            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
                    if fleet.kill_one(rng, busy):  # a worker in the middle of a trial
                        kills += 1
                        next_kill = time.monotonic() + rng.uniform(0.5, 1.5) * args.kill_every
                        print(f"soak: kill {kills} at {used} trials", flush=True)
            # The study is done when the run is; workers leave on their own once the budget is used.
            deadline = time.monotonic() + 120
            for proc in fleet.all():
                try:
                    proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            run_rc = fleet.run.returncode
            stuck = sum(proc.poll() is None for proc in fleet.all())
            fleet.stop()
            run_log = "".join(f.read_text() for f in sorted(folder.glob("run-*.log")))
            figures = check(watch, args.method, args.trials, args.seeds, folder / "out")
    finally:
        if fleet is not None:
            fleet.stop()
        cluster.stop()
    wall = time.monotonic() - t0
    figures.update({"kills": kills, "outage_s": round(outage_s, 1) if outage_s else None,
                    "outage_at_trials": outage_at, "workers": args.workers, "processes_started": fleet.started,
                    "run_exit_code": run_rc, "processes_still_running_after_120_s": stuck,
                    "wall_s": round(wall, 1)})
    figures["checks"]["`harness run` exited 0"] = run_rc == 0
    figures["checks"]["every process ended on its own"] = stuck == 0
    figures["checks"]["the server was restarted"] = outage_s is not None
    figures["checks"]["lost = 0"] = figures["lost"] == 0
    ok = all(figures["checks"].values())
    provenance = {
        "command": " ".join(shlex.quote(a) for a in ["python", "benchmarks/soak.py",
                                                     *(sys.argv[1:] if argv is None else argv)]),
        "git_commit": git_commit(REPO), "started_at": started_at, "finished_at": now(), "hardware": hardware(),
        "load_average_1_5_15_min": {"before": [round(x, 2) for x in load_before],
                                    "after": [round(x, 2) for x in os.getloadavg()]},
        "versions": {**versions(), "postgresql": pg_version},
        "postgres": "throwaway local server (tests/pg.py), fsync off", "storage": redact(url),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps({"figures": figures, "provenance": provenance}, indent=2) + "\n")
    rows = [("trials asked", args.trials), ("trials counted against the budget", figures["trials_counted"]),
            ("trials complete", figures["trials_complete"]),
            ("trials failed: infrastructure (killed workers, retried)", figures["trials_failed_infrastructure"]),
            ("trials failed: method", figures["trials_failed_method"]),
            ("trials given back unrun (asked at the same instant as another)", figures["trials_given_back_surplus"]),
            ("trials left RUNNING", figures["trials_running_left"]), ("seed rows", figures["seed_rows"]),
            ("workers (besides `harness run`)", args.workers), ("SIGKILLs", kills),
            ("processes started", fleet.started), ("server outage (s)", figures["outage_s"]),
            ("outage began at trials", outage_at), ("lost", figures["lost"]), ("wall time (s)", figures["wall_s"])]
    (out / "soak.md").write_text(
        "# Soak: workers killed and the database restarted during one study\n\n"
        f"`harness run` and {args.workers} `harness worker` processes tune `{args.method}` on digits "
        f"({args.trials} trials, {args.seeds} seeds, heartbeat {args.heartbeat} s) in one PostgreSQL study; a random "
        f"worker is SIGKILLed about every {args.kill_every:g} s and started again, and the server is stopped "
        f"for {args.outage:g} s once.\n\n| figure | value |\n|---|---|\n"
        + "".join(f"| {k} | {v} |\n" for k, v in rows)
        + "\n## Checks\n\n" + "".join(f"- {'pass' if v else 'FAIL'}: {k}\n" for k, v in figures["checks"].items())
        + "\n## How these figures were made\n\n"
        + "\n".join(f"- **{k.replace('_', ' ')}**: `{v}`" for k, v in provenance.items() if k != "versions")
        + "\n- **versions**: " + ", ".join(f"{k} {v}" for k, v in provenance["versions"].items()) + "\n")
    for k, v in rows:
        print(f"{k}: {v}")
    for k, v in figures["checks"].items():
        print(f"{'pass' if v else 'FAIL'}: {k}")
    if not ok and run_log:
        print("--- harness run log (tail) ---\n" + run_log[-3000:])
    print(f"written to {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
