"""Shared fixtures: the plugin registry, tiny tasks, and a CLI runner."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.data import load_task
from harness.plugins import load_plugins

TESTS = Path(__file__).parent
REPO = TESTS.parent

# The tests train tiny models: one thread is as fast and does not fight other processes for cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def registry():
    return load_plugins()


@pytest.fixture(scope="session")
def digits(registry):
    return load_task(registry, "digits")


@pytest.fixture(scope="session")
def iris(registry):
    return load_task(registry, "iris")


def harness_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300):
    """Run ``harness`` in a subprocess, as a user would; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env or harness_env(),
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def cli(tmp_path):
    def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
        return run_cli(*args, cwd=tmp_path, env=env, timeout=timeout)

    return _run
