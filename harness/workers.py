"""``harness run --workers N``: N local processes tune a suite side by side; this process then runs
the seed re-runs and writes the tables, once.

The processes share the run's own storage (the journal file beside the tables, or the database
URL). The trial budget, the reaping of trials whose process died and each process's own stream of
sampler seeds are :mod:`harness.storage`'s, exactly as for ``harness worker``. Each process gets
``--threads`` so that together they do not oversubscribe the CPU (the cores // N unless given) and
one device of ``--devices`` in turn. Ctrl-C (or SIGTERM) stops them all: each fails its running
trial as interrupted, which queues it again, so the same command resumes. A process that crashes is
reported with its reason and the others go on; whatever budget it leaves is run here before the seeds.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from harness.errors import ConfigError
from harness.redaction import redact
from harness.suite import Suite, suite_spec

STOP_GRACE_S = 30.0  # how long an interrupted process may take to record its running trial
POLL_S = 0.2


@dataclass(frozen=True)
class PoolSettings:
    """How many processes, with how many threads each, on which devices, loading which plugins."""

    workers: int
    threads: int
    devices: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()

    def device(self, index: int) -> str | None:
        return self.devices[index % len(self.devices)] if self.devices else None


def pool_settings(workers: int, threads: int | None, devices: str | None,
                  plugins: Sequence[str] = ()) -> PoolSettings:
    """Validated settings: ``threads`` per process (None: the cores // ``workers``, at least 1) and
    ``devices`` as given on the command line (``cuda:0,cuda:1``)."""
    if workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {workers}")
    names: tuple[str, ...] = ()
    if devices is not None:
        names = tuple(d.strip() for d in devices.split(","))
        if not all(names):
            raise ConfigError(f"--devices expects a comma-separated list such as cuda:0,cuda:1, got {devices!r}")
    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // workers)
    return PoolSettings(workers, threads, names, tuple(plugins))


def child_command(settings: PoolSettings, index: int, spec: Path, out_dir: Path, storage: str | None) -> list[str]:
    """The command line of process ``index``: ``harness run`` of the stored suite, tuning only."""
    cmd = [sys.executable, "-m", "harness.cli", "--threads", str(settings.threads)]
    for module in settings.plugins:
        cmd += ["--plugin", module]
    cmd += ["run", "--tune-only", str(spec), "--out", str(out_dir), "--no-progress"]
    if storage is not None:
        cmd += ["--storage", storage]
    if settings.device(index) is not None:
        cmd += ["--device", settings.device(index)]
    return cmd


@dataclass
class Child:
    """One process of the pool, and the last lines it printed (its reason, when it crashes)."""

    index: int
    proc: subprocess.Popen
    device: str | None
    tail: deque = field(default_factory=lambda: deque(maxlen=20))
    reader: threading.Thread | None = None
    stopped: bool = False  # this process asked it to stop

    @property
    def label(self) -> str:
        return f"worker {self.index + 1}"

    def reason(self) -> str:
        """Why it ended: the exit code or signal, and its last line of output (credentials masked)."""
        code = self.proc.returncode
        last = next((line for line in reversed(self.tail) if line.strip()), "")
        if code < 0 and -code in signal.valid_signals():  # its last line is context, not the cause
            how = f"killed by {signal.Signals(-code).name}"
            return redact(f"{how}; its last line: {last}") if last else how
        return redact(f"exit code {code}: {last}") if last else f"exit code {code}"


@dataclass
class PoolResult:
    crashed: list[Child]


def _relay(child: Child, say: Callable[[str], None]) -> None:
    for line in child.proc.stdout:
        line = line.rstrip("\n")
        child.tail.append(line)
        say(redact(f"[{child.label}] {line}"))


def run_pool(suite: Suite, out_dir: Path, settings: PoolSettings, say: Callable[[str], None]) -> PoolResult:
    """Start ``settings.workers`` processes tuning ``suite`` on its storage and wait for all of them.

    Ctrl-C or SIGTERM stops every process (each records its running trial as interrupted, to be run
    again) and is raised again here. Raises :class:`ConfigError` when every process failed (their
    shared reason, when it is one); otherwise returns the processes that crashed.
    """
    from harness.worker import sigterm_as_interrupt

    with tempfile.TemporaryDirectory(prefix="harness-workers-") as tmp:
        spec = Path(tmp) / "suite.json"
        spec.write_text(json.dumps(suite_spec(suite)))
        # Unbuffered, so lines arrive as they are printed; each process in a session of its own, so
        # a Ctrl-C at the terminal reaches this process alone, which stops the others in order.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        children: list[Child] = []
        with sigterm_as_interrupt():
            try:
                for i in range(settings.workers):
                    cmd = child_command(settings, i, spec, out_dir, suite.storage)
                    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                            env=env, start_new_session=True)
                    child = Child(i, proc, settings.device(i))
                    say(redact(f"{child.label} of {settings.workers} (pid {proc.pid}): {' '.join(cmd)}"))
                    child.reader = threading.Thread(target=_relay, args=(child, say), daemon=True)
                    child.reader.start()
                    children.append(child)
                _wait(children, say)
            except BaseException:
                _stop(children, say)
                raise
    crashed = [c for c in children if c.proc.returncode != 0]
    if crashed and len(crashed) == len(children):
        reasons = {c.reason().split(": ", 1)[-1] for c in crashed}
        if len(reasons) == 1 and (only := reasons.pop()).startswith("harness: error: "):
            raise ConfigError(only[len("harness: error: "):])  # the same error a single process gives
        raise ConfigError("every worker process failed: " + "; ".join(f"{c.label}: {c.reason()}" for c in crashed))
    return PoolResult(crashed)


def _wait(children: list[Child], say: Callable[[str], None]) -> None:
    running = list(children)
    started = time.monotonic()
    while running:
        for child in list(running):
            if child.proc.poll() is None:
                continue
            running.remove(child)
            child.reader.join()
            if child.proc.returncode == 0:
                say(f"{child.label} finished after {time.monotonic() - started:.0f} s")
            else:
                say(redact(f"harness: warning: {child.label} crashed ({child.reason()}); the others go on"))
        time.sleep(POLL_S)


def _stop(children: list[Child], say: Callable[[str], None]) -> None:
    """Stop every live process as a Ctrl-C would, wait a bounded time, then kill what is left.

    SIGTERM, not SIGINT: a process started in the background ignores SIGINT, and a ``--workers``
    process turns SIGTERM into the same interruption (see :func:`harness.worker.sigterm_as_interrupt`)."""
    live = [c for c in children if c.proc.poll() is None]
    for child in live:
        child.stopped = True
        child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in live:
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()
            say(f"{child.label} did not stop within {STOP_GRACE_S:.0f} s and was killed")
    for child in children:
        if child.reader is not None:
            child.reader.join(timeout=5)
    if live:
        say(f"stopped {len(live)} worker process{'es' if len(live) > 1 else ''}")


def describe(settings: PoolSettings) -> dict[str, object]:
    """The pool as the run's provenance records it."""
    return {"processes": settings.workers, "threads_each": settings.threads, "devices": list(settings.devices)}


__all__ = ["PoolSettings", "pool_settings", "child_command", "run_pool", "describe"]
