"""How a result was made: command, the code that ran (harness version, commit, plugins), package
versions, hardware, threads, seeds. Credentials are masked (:func:`harness.redaction.redact`)."""
from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.redaction import redact

if TYPE_CHECKING:
    import torch

PACKAGES = ("harness-automl", "torch", "torchvision", "optuna", "pluggy", "pandas", "scikit-learn", "scipy",
            "numpy", "timm", "rich", "torch-geometric")
NOT_A_CHECKOUT = "not a git checkout"


def _git(folder: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_commit(folder: Path | None = None) -> str:
    """``COMMIT`` or ``COMMIT+dirty`` of the git checkout ``folder`` is the root of (default: the
    checkout the ``harness`` package was imported from), else ``not a git checkout``. A folder inside
    some other repository (a wheel installed into a virtual environment kept in a project's
    repository) is not a checkout of the harness: the repository root must be ``folder`` itself.
    The checkout's own ``results/`` is output, not code: a run re-computing a committed table
    changes it, and that does not make the code that ran dirty."""
    root = Path(folder) if folder is not None else Path(__file__).resolve().parents[2]
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return NOT_A_CHECKOUT
    head = _git(root, "rev-parse", "HEAD")
    if head is None:
        return "unknown"
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    return head + ("+dirty" if dirty else "")


def harness_version() -> str:
    """The installed ``harness-automl`` distribution's version."""
    try:
        return md.version("harness-automl")
    except md.PackageNotFoundError:
        return "unknown (not installed)"


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
    import torch

    text = f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}"
    if device is not None and device.type == "cuda":
        text += f"; GPU {torch.cuda.get_device_name(device)}"
    return text


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def command_line() -> str:
    """The command that is running, as typed, with credentials masked."""
    argv = ["harness", *sys.argv[1:]] if sys.argv and sys.argv[0].endswith("harness") else sys.argv
    return redact(" ".join(argv))


def gather(plugins: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    """The provenance of a run. ``plugins``: ``{plugin name: "distribution version"}`` of the plugins
    loaded (see :func:`harness.plugins.plugin_distributions`). Every text is credential-free."""
    import torch

    device = fields.get("device")
    if plugins is not None:
        fields["plugins"] = dict(plugins)
    prov = {
        "command": command_line(),
        "harness_version": harness_version(),
        "git_commit": git_commit(),
        "versions": versions(),
        "hardware": hardware(torch.device(device) if isinstance(device, str) else device),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        **{k: (str(v) if isinstance(v, torch.device) else v) for k, v in fields.items()},
    }
    return json.loads(redact(json.dumps(prov, default=str)))


def threads_of(prov: dict[str, Any]) -> int | None:
    """The torch thread count a run used (read from the hardware line where older runs lack the field)."""
    if prov.get("torch_threads") is not None:
        return int(prov["torch_threads"])
    found = re.search(r"torch threads (\d+)", str(prov.get("hardware", "")))
    return int(found.group(1)) if found else None


def mixed_settings(prov: dict[str, Any]) -> str | None:
    """A warning when the rows of one table were computed with different torch thread counts or
    devices (the latest run and ``earlier_runs``): their figures differ in the last digits even for
    the same seed, so they are not exactly comparable. ``None`` when every row shares them."""
    runs = [(prov, ["the latest run's rows"]), *((r, r.get("rows", [])) for r in prov.get("earlier_runs", ()))]
    groups: dict[tuple[Any, Any], list[str]] = {}
    for run, rows in runs:
        groups.setdefault((threads_of(run), run.get("device")), []).extend(rows)
    if len(groups) < 2:
        return None
    parts = [f"{threads if threads is not None else '?'} thread(s) on {device or '?'}: {', '.join(rows)}"
             for (threads, device), rows in groups.items()]
    return ("rows computed with different thread counts or devices (results depend on both; re-run them "
            "alike to compare exactly): " + "; ".join(parts))


# -- rendering (the one place that says how provenance reads in a table file or on the page) ------
SHOWN = ("command", "harness_version", "git_commit", "started_at", "finished_at", "device", "torch_threads",
         "hardware", "platform", "seeds", "data_seed", "sampler", "pruner", "budget", "storage", "robustness")


def provenance_items(prov: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(heading, text, is_code) for each fact of ``prov`` worth showing, then the definitions of the
    metrics and columns the tables report, from :mod:`harness.metrics`."""
    from harness.metrics import COLUMNS, all_metrics

    def text(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v, default=str)

    items = []
    warning = mixed_settings(prov)
    if warning:
        items.append(("warning", warning, False))
    items += [(k.replace("_", " "), redact(text(prov[k])), True) for k in SHOWN if k in prov]
    if "versions" in prov:
        items.append(("versions", ", ".join(f"{k} {v}" for k, v in prov["versions"].items()), False))
    if prov.get("plugins"):
        items.append(("plugins", ", ".join(f"{k} ({v})" for k, v in prov["plugins"].items()), False))
    for run in prov.get("earlier_runs", ()):
        items.append((f"rows computed by an earlier run ({', '.join(run['rows'])})",
                      redact(f"command {run.get('command')}, git commit {run.get('git_commit')}, ")
                      + f"torch threads {threads_of(run)}, device {run.get('device')}, "
                      f"finished at {run.get('finished_at')}", False))
    if prov.get("seed_rounds"):
        from harness.sequential import record_text

        items.append(("seed rounds", record_text(prov["seed_rounds"]), False))
    items.append(("metrics", "mean ± std over seeds; CI: 95 % percentile bootstrap of the mean over seeds", False))
    items += [(m.label, m.description, False) for m in all_metrics() if m.description]
    items.append(("throughput", "; ".join(f"{COLUMNS[c].label} = {COLUMNS[c].description}"
                                          for c in ("train_samples_per_s", "infer_samples_per_s")), False))
    return items


def provenance_markdown(prov: dict[str, Any]) -> str:
    lines = ["## How this table was made", ""]
    lines += [f"- **{k}**: " + (f"`{v}`" if code else v) for k, v, code in provenance_items(prov)]
    return "\n".join(lines) + "\n"
