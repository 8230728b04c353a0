"""How a result was made: command, git commit, package versions, hardware, seeds."""
from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("harness-automl", "torch", "torchvision", "optuna", "pluggy", "pandas", "scikit-learn", "scipy",
            "numpy", "timm", "rich", "torch-geometric")


def git_commit(cwd: Path | None = None) -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device | None = None) -> str:
    text = f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}"
    if device is not None and device.type == "cuda":
        text += f"; GPU {torch.cuda.get_device_name(device)}"
    return text


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def gather(plugins: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    """The provenance of a run. ``plugins``: ``{plugin name: "distribution version"}`` of the plugins
    loaded (see :func:`harness.plugins.plugin_distributions`)."""
    device = fields.get("device")
    if plugins is not None:
        fields["plugins"] = dict(plugins)
    return {
        "command": " ".join(["harness", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("harness") else " ".join(sys.argv),
        "git_commit": git_commit(),
        "versions": versions(),
        "hardware": hardware(torch.device(device) if isinstance(device, str) else device),
        "platform": platform.platform(),
        **{k: (str(v) if isinstance(v, torch.device) else v) for k, v in fields.items()},
    }


# -- rendering (the one place that says how provenance reads in a table file or on the page) ------
SHOWN = ("command", "git_commit", "started_at", "finished_at", "device", "hardware", "platform", "seeds",
         "data_seed", "sampler", "pruner", "budget", "storage")


def provenance_items(prov: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(heading, text, is_code) for each fact of ``prov`` worth showing, then the definitions of the
    metrics and columns the tables report, from :mod:`harness.metrics`."""
    from harness.metrics import COLUMNS, all_metrics

    def text(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v, default=str)

    items = [(k.replace("_", " "), text(prov[k]), True) for k in SHOWN if k in prov]
    if "versions" in prov:
        items.append(("versions", ", ".join(f"{k} {v}" for k, v in prov["versions"].items()), False))
    if prov.get("plugins"):
        items.append(("plugins", ", ".join(f"{k} ({v})" for k, v in prov["plugins"].items()), False))
    for run in prov.get("earlier_runs", ()):
        items.append((f"rows computed by an earlier run ({', '.join(run['rows'])})",
                      f"command {run.get('command')}, git commit {run.get('git_commit')}, "
                      f"finished at {run.get('finished_at')}", False))
    items.append(("metrics", "mean ± std over seeds; CI: 95 % percentile bootstrap of the mean over seeds", False))
    items += [(m.label, m.description, False) for m in all_metrics() if m.description]
    items.append(("throughput", "; ".join(f"{COLUMNS[c].label} = {COLUMNS[c].description}"
                                          for c in ("train_samples_per_s", "infer_samples_per_s")), False))
    return items


def provenance_markdown(prov: dict[str, Any]) -> str:
    lines = ["## How this table was made", ""]
    lines += [f"- **{k}**: " + (f"`{v}`" if code else v) for k, v, code in provenance_items(prov)]
    return "\n".join(lines) + "\n"
