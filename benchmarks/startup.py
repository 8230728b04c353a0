"""How long each command takes to start: wall seconds of N fresh processes per command.

Each command runs ``--repeats`` times in a new interpreter, interleaved (one of each, then again) so
that a change in machine load hits every command alike; the table gives the median, min and max.
The load average before and after is recorded beside the figures: on a shared machine it says how
quiet the run was. Run it when the machine is idle. The last command re-runs the default suite into a copy of
``results/default``, where everything is stored: the time a run takes to say it has nothing to do
(and the script checks that it wrote nothing).

    python benchmarks/startup.py                  # writes results/startup/startup.md and .json
    python benchmarks/startup.py --repeats 10 --out /tmp/startup
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.report.provenance import cpu_model, git_commit, now, versions

ROOT = Path(__file__).resolve().parents[1]
NOOP = "harness run --suite benchmarks/default.yaml (all stored)"
TARGETS = {"harness --help": 1.0, "harness plugins": 3.0, NOOP: 3.0}  # seconds on 2 quiet cores


def commands(stored: Path) -> dict[str, list[str]]:
    """Each command as a user types it, run through this interpreter's ``harness`` script; the
    no-op run re-runs the default suite into ``stored``, a copy of results/default."""
    exe = shutil.which("harness", path=str(Path(sys.executable).parent)) or shutil.which("harness")
    harness = [exe] if exe else [sys.executable, "-m", "harness.cli"]
    return {
        "harness --help": [*harness, "--help"],
        "harness plugins": [*harness, "plugins"],
        "harness datasets": [*harness, "datasets"],
        'python -c "import harness"': [sys.executable, "-c", "import harness"],
        NOOP: [*harness, "run", "--suite", str(ROOT / "benchmarks" / "default.yaml"), "--out", str(stored),
               "--no-progress"],
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure(repeats: int, cwd: Path, stored: Path) -> dict[str, list[float]]:
    cmds = commands(stored)
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(repeats):
        for name, argv in cmds.items():
            start = time.perf_counter()
            proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                sys.exit(f"{name} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
            times[name].append(round(elapsed, 3))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "results" / "startup"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stored = Path(tmp) / "default"
        shutil.copytree(ROOT / "results" / "default", stored)
        journal = (stored / "optuna.journal").read_bytes()
        measure(1, out, stored)  # warm the file cache once; not counted
        load_before, started = load_average(), now()
        times = measure(args.repeats, out, stored)
        load_after = load_average()
        if (stored / "optuna.journal").read_bytes() != journal:
            sys.exit("the no-op run wrote to its study storage")
    rows = [{"command": name, "median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
             "target_s": TARGETS.get(name), "runs_s": t} for name, t in times.items()]
    prov = {"script": "python benchmarks/" + Path(__file__).name + f" --repeats {args.repeats}",
            "git_commit": git_commit(ROOT), "started_at": started, "finished_at": now(),
            "load_average_before": load_before, "load_average_after": load_after,
            "hardware": f"{cpu_model()}, {os.cpu_count()} logical CPUs", "versions": versions()}
    (out / "startup.json").write_text(json.dumps({"rows": rows, "provenance": prov}, indent=2) + "\n")
    lines = ["# Start-up time of the command line", "",
             f"Wall seconds of {args.repeats} fresh processes per command, interleaved; load average (1, 5, 15 min) "
             f"{load_before} before and {load_after} after, on {prov['hardware']}.", "",
             "| command | median s | min s | max s | target s |", "|---|---|---|---|---|"]
    for r in rows:
        target = f"< {r['target_s']:g}" if r["target_s"] else ""
        lines.append(f"| `{r['command']}` | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} | {target} |")
    lines += ["", "## How this table was made", ""]
    lines += [f"- **{k.replace('_', ' ')}**: `{v if isinstance(v, str) else json.dumps(v)}`" for k, v in prov.items()]
    (out / "startup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:len(rows) + 6]))


if __name__ == "__main__":
    main()
