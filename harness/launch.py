"""``harness launch``: the commands that run one suite on many machines sharing a database storage.

Machine 1 runs ``harness run``: it creates each study, tunes, runs the seed re-runs and writes the
tables. Every other machine runs ``harness worker`` on each of the suite's studies in turn; a worker
pulls trials until its study's budget is used (the seed phase is claimed by one process, see
:mod:`harness.storage`) and waits for a study machine 1 has not reached yet. The storage URL
travels in the environment variable :data:`STORAGE_ENV`, never on a printed line or in a written
script, so neither holds the password. The same commands as a SLURM array job: :func:`slurm_script`.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.errors import ConfigError
from harness.plugins import Registry
from harness.redaction import redact
from harness.runner import study_name
from harness.storage import is_shared
from harness.suite import Suite

STORAGE_ENV = "HARNESS_STORAGE"


@dataclass(frozen=True)
class LaunchPlan:
    """Where a suite runs: its file, the machines, and what every command line carries."""

    suite: Suite
    suite_file: str
    storage: str
    machines: int
    out: str
    threads: int | None = None  # --threads on every machine (None: each machine's auto)
    plugins: tuple[str, ...] = ()
    wait_s: float = 3600.0  # how long a worker waits for machine 1 to create a study


def check_plan(plan: LaunchPlan) -> LaunchPlan:
    if plan.machines < 1:
        raise ConfigError(f"--machines must be a positive integer, got {plan.machines}")
    if not is_shared(plan.storage):
        raise ConfigError(f"--storage {redact(plan.storage)!r} is not reachable from other machines: give a "
                          "database URL such as postgresql://user:password@host/db")
    return plan


def studies(plan: LaunchPlan, registry: Registry) -> list[str]:
    """The suite's study names in the order ``harness run`` works through them (rows a data set's kind
    rules out have no study)."""
    names = []
    for ds in plan.suite.datasets:
        kind = registry.dataset(ds.name)[0].kind
        for row in plan.suite.rows_for(ds):
            method = row.method if row.method != "cash" else None
            if method is not None and kind not in registry.method(method).info.kinds:
                continue
            names.append(study_name(plan.suite, ds, row))
    return names


def _harness(plan: LaunchPlan) -> list[str]:
    cmd = ["harness"]
    if plan.threads is not None:
        cmd += ["--threads", str(plan.threads)]
    for module in plan.plugins:
        cmd += ["--plugin", module]
    return cmd


def _line(args: Sequence[str]) -> str:
    """A shell line whose ``--storage`` reads the environment variable."""
    return " ".join(f'"${STORAGE_ENV}"' if a == STORAGE_ENV else shlex.quote(a) for a in args)


def machine_commands(plan: LaunchPlan, registry: Registry) -> list[list[str]]:
    """For each machine, the shell lines it runs, in order."""
    first = _line([*_harness(plan), "run", "--suite", plan.suite_file, "--storage", STORAGE_ENV, "--out", plan.out,
                   "--no-progress"])
    chain = [_line([*_harness(plan), "worker", "--study", name, "--storage", STORAGE_ENV, "--out", plan.out,
                    "--wait", f"{plan.wait_s:g}"]) for name in studies(plan, registry)]
    return [[first], *([chain] * (plan.machines - 1))]


def export_line(plan: LaunchPlan) -> str:
    """The line that sets the storage variable, the password masked (the user types the real one)."""
    return f"export {STORAGE_ENV}={shlex.quote(redact(plan.storage))}"


def describe(plan: LaunchPlan, registry: Registry) -> str:
    """The commands per machine, as printed by ``harness launch``."""
    lines = [f"# every machine: the harness installed, the suite file at {plan.suite_file}, and", export_line(plan)]
    for i, commands in enumerate(machine_commands(plan, registry), start=1):
        role = "creates the studies, tunes, runs the seed re-runs, writes the tables" if i == 1 else \
            "tunes each study in turn beside machine 1"
        lines += ["", f"# machine {i} of {plan.machines}: {role}", *commands]
    return "\n".join(lines) + "\n"


def slurm_script(plan: LaunchPlan, registry: Registry, cpus: int | None = None) -> str:
    """A SLURM array job of ``plan.machines`` tasks: task 0 is machine 1, the others its workers. The
    storage URL comes from the submitting shell's environment (sbatch passes it on)."""
    first, *rest = machine_commands(plan, registry)
    workers = rest[0] if rest else []
    header = ["#!/bin/bash", f"#SBATCH --job-name=harness-{plan.suite.name}", f"#SBATCH --array=0-{plan.machines - 1}",
              "#SBATCH --ntasks=1"]
    if cpus:
        header.append(f"#SBATCH --cpus-per-task={cpus}")
    body = ["set -u",
            f': "${{{STORAGE_ENV}:?export {STORAGE_ENV}=postgresql://user:password@host/db before sbatch}}"',
            'if [ "${SLURM_ARRAY_TASK_ID:-0}" -eq 0 ]; then', *(f"  {c}" for c in first)]
    if workers:
        body += ["else", *(f"  {c}" for c in workers)]
    body.append("fi")
    return "\n".join(header + [""] + body) + "\n"


def write_script(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    path.chmod(0o755)


__all__ = ["LaunchPlan", "STORAGE_ENV", "check_plan", "describe", "machine_commands", "slurm_script", "studies"]
