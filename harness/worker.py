"""``harness worker``: one more process on a study that ``harness run`` created.

``harness run --storage postgresql://…`` creates each study and stores in its ``harness`` record
(:class:`harness.records.StudyMeta`) everything a worker needs (the suite, the data set, the row, the
plugin modules). Any number of ``harness worker --study NAME --storage URL`` processes, on any
machines, then pull trials from it; heartbeats, reaping and the claim on the seed re-runs are
:mod:`harness.storage`'s. Whichever process sees the tuning budget reached runs the seed re-runs and
writes the tables, once.
"""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import optuna

from harness.errors import ConfigError
from harness.plugins import load_plugins
from harness.records import StudyMeta, study_meta
from harness.runner import resolve_device, row_method, row_task, run_row, write_suite_tables
from harness.storage import DEFAULT_STORAGE_RETRY, make_storage, redact, worker_id
from harness.suite import suite_from_spec


def load_meta(storage, study_name: str, wait_s: float) -> StudyMeta:
    """The ``harness`` record of ``study_name``, waiting up to ``wait_s`` for its creator."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            meta = study_meta(optuna.load_study(study_name=study_name, storage=storage).user_attrs, study_name)
        except KeyError:
            meta = None
        if meta is not None and meta.spec:
            return meta
        if time.monotonic() >= deadline:
            if meta is None:
                raise ConfigError(f"no study {study_name!r} in the storage (start it with `harness run --storage ...`)")
            raise ConfigError(f"study {study_name!r} was not created by `harness run` of this version")
        time.sleep(0.5)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler stopping the worker) ends the running trial like Ctrl-C: failed and
    queued again, never left RUNNING."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_worker(url: str, study_name: str, plugin_modules: list[str], console, n_trials: int | None = None,
               out: str | None = None, device: str | None = None, wait_s: float = 60.0,
               storage_retry: float | None = None) -> int:
    """Work on one study until its budget is reached (or ``n_trials`` ran here); the process that
    sees the budget reached runs the seed re-runs and writes the suite's tables. Returns an exit code."""
    meta = load_meta(make_storage(url, Path("."), retry_s=storage_retry or DEFAULT_STORAGE_RETRY), study_name, wait_s)
    suite = suite_from_spec(meta.spec)
    if device:
        suite = suite.replace(device=device)
    if storage_retry:
        suite = suite.replace(storage_retry=storage_retry)
    storage = make_storage(url, Path("."), heartbeat=suite.heartbeat, retry_s=suite.storage_retry)
    registry = load_plugins(modules=list(dict.fromkeys([*plugin_modules, *meta.plugin_modules])))
    ds = next(d for d in suite.datasets if d.label == meta.dataset)
    row = next(r for r in suite.rows_for(ds) if r.name == meta.row)
    method = row_method(registry, suite, row)
    dev = resolve_device(suite.device)
    task = row_task(registry, suite, ds, row, dev)
    out_dir = Path(out) if out else Path("results") / suite.name
    console.print(f"worker {worker_id()} on {study_name} ({redact(url)})", highlight=False)
    with sigterm_as_interrupt():
        outcome = run_row(suite, ds, row, method, task, storage, dev, out_dir, max_trials=n_trials,
                          worker=True, say=lambda m: console.print(redact(m), highlight=False))
    if outcome.status == "waiting":
        console.print(redact(outcome.detail), highlight=False)
        return 0
    if outcome.status in ("ok", "partial", "FAIL") and outcome.ran_final:
        paths = write_suite_tables(storage, suite, out_dir)
        console.print(f"tables: {paths['summary_md']}", highlight=False)
    elif outcome.status == "ok":
        console.print(f"{study_name}: the search and its seed re-runs are complete", highlight=False)
    if outcome.status in ("FAIL", "partial"):
        console.print(redact(f"harness: error: {meta.dataset} · {meta.row}: {outcome.detail}"), highlight=False)
        return 2
    return 0
