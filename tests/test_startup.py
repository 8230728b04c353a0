"""Start-up stays light: importing the package, the command line and the plugin registry, and
`harness --help`, load none of the heavy libraries (benchmarks/startup.py measures the seconds)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import harness_env

HEAVY = ("torch", "torch_geometric", "timm", "matplotlib", "scipy", "sklearn", "pandas", "torchvision")


def heavy_modules_after(code: str) -> list[str]:
    """The heavy top-level modules a fresh interpreter holds after running ``code``."""
    probe = code + f"\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=harness_env(),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import harness",
    "import harness.cli",
    "from harness import hookimpl, MethodInfo, DatasetInfo",
    "from harness.plugins import load_plugins\nregistry = load_plugins()\nassert registry.methods and registry.datasets",
], ids=["import harness", "import harness.cli", "contract names", "load the plugin registry"])
def test_nothing_heavy_is_imported(code):
    assert heavy_modules_after(code) == []


def test_help_imports_nothing_heavy():
    code = ("import contextlib, io\nfrom harness.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['--help'])\n    except SystemExit:\n        pass")
    assert heavy_modules_after(code) == []


def test_public_names_still_resolve_lazily():
    import harness

    assert {"hookimpl", "Task", "FitContext", "Predictions"} <= set(dir(harness))
    from harness.task import Task

    assert harness.Task is Task
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        harness.nope  # noqa: B018
