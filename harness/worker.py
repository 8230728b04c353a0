"""Many processes, one study: heartbeats, the claim on the final phase, and the ``harness worker`` loop.

``harness run --storage postgresql://…`` creates each study and stores in its ``harness`` user
attribute everything a worker needs (the suite, the data set, the row, the plugin modules). Any
number of ``harness worker --study NAME --storage URL`` processes, on any machines, then pull
trials from it. A trial's worker records a heartbeat while it runs; a trial that falls silent is
failed as an infrastructure failure and its configuration queued again (``search.reap_dead_trials``).

Whichever process sees the tuning budget reached runs the seed re-runs and writes the tables, once:
it first claims the final phase by creating the study ``NAME#final<g>``. Creating a study of a
given name succeeds in exactly one process (a unique key in RDB storages, the ordered log of a
journal file). The claimant holds a trial in that study with a heartbeat; if it dies, the next
process finds the trial reaped and claims generation ``g + 1``. Results are stored per seed, so even
a claimant that was wrongly presumed dead can only overwrite a seed's row, never add a second one.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.exceptions import DuplicatedStudyError
from optuna.study import StudyDirection
from optuna.trial import TrialState

from harness.errors import ConfigError

FINAL_LOCK = "{study}#final{generation}"


@contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat now and then every interval until the block ends.

    A no-op for storages without heartbeats (journal files, SQLite unless configured). The first
    beat is written before the block starts, so a worker killed at once still leaves a heartbeat
    that goes stale (a trial that never beat is never considered stale by Optuna).
    """
    from optuna.storages._heartbeat import is_heartbeat_enabled

    if not is_heartbeat_enabled(storage):
        yield
        return
    interval = storage.get_heartbeat_interval()
    storage.record_heartbeat(trial_id)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # a dropped connection: the pool's pre-ping reconnects on the next beat
                pass

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def ask(study: optuna.Study) -> optuna.Trial:
    """``study.ask()`` without Optuna's warning that heartbeats want ``Study.optimize``: the
    ask-and-tell loops here run the heartbeat themselves (``heartbeat``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        return study.ask()


@dataclass
class FinalClaim:
    """The right to run a study's final phase, held until ``release``."""

    lock: optuna.Study
    trial: optuna.Trial
    _beat: Any

    def release(self, ok: bool = True) -> None:
        self._beat.__exit__(None, None, None)
        try:
            self.lock.tell(self.trial, 1.0 if ok else None, state=TrialState.COMPLETE if ok else TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # presumed dead and reaped meanwhile: the seed rows are written per seed all the same


def try_claim_final(study: optuna.Study, empty_is_dead: bool = False) -> FinalClaim | str:
    """Claim ``study``'s final phase; return the claim, or the worker id of the live holder.

    ``empty_is_dead``: treat a lock whose creator has not yet registered itself as abandoned (only
    for a caller that saw it empty for a while: its creator died in between).
    """
    from harness.search import reap_dead_trials, worker_id

    storage = study._storage
    for generation in range(10_000):
        name = FINAL_LOCK.format(study=study.study_name, generation=generation)
        try:
            storage.create_new_study([StudyDirection.MAXIMIZE], name)
        except DuplicatedStudyError:
            lock = optuna.load_study(study_name=name, storage=storage)
            reap_dead_trials(lock, max_retries=0)
            trials = lock.get_trials(deepcopy=False)
            if not trials and not empty_is_dead:
                return "(a worker that is starting)"
            if trials and trials[0].state == TrialState.RUNNING:
                return trials[0].user_attrs.get("worker", "?")
            continue  # released (COMPLETE) or its holder died (FAIL): the next generation is free
        lock = optuna.load_study(study_name=name, storage=storage)
        trial = ask(lock)
        trial.set_user_attr("worker", worker_id())
        beat = heartbeat(storage, trial._trial_id)
        beat.__enter__()
        return FinalClaim(lock, trial, beat)
    raise RuntimeError(f"no free final-phase lock for {study.study_name}")


def claim_final(study: optuna.Study, done: Callable[[], bool], wait: bool,
                say: Callable[[str], None] = lambda _: None) -> FinalClaim | None:
    """Claim the final phase, or return None when it is done (``done()``) or, with ``wait=False``,
    held by another live process. With ``wait=True``, wait for the holder to finish or die."""
    poll = float(getattr(study._storage, "heartbeat_interval", None) or 1.0)
    empty_since: float | None = None
    told = False
    while not done():
        got = try_claim_final(study, empty_is_dead=empty_since is not None and time.monotonic() - empty_since > 10 * poll)
        if isinstance(got, FinalClaim):
            return got
        if not wait:
            say(f"the seed re-runs of {study.study_name} are being run by {got}")
            return None
        empty_since = (empty_since or time.monotonic()) if got.startswith("(") else None
        if not told:
            say(f"waiting for {got}, which runs the seed re-runs of {study.study_name}")
            told = True
        time.sleep(poll)
    return None


# -- the worker command ----------------------------------------------------------------------

def suite_spec(suite) -> dict[str, Any]:
    """The suite as plain JSON for the study's user attributes, without its storage URL (which
    may hold a password; a worker is given the URL on its own command line)."""
    spec = dataclasses.asdict(suite)
    spec["storage"] = None
    return spec


def suite_from_spec(spec: dict[str, Any]):
    from harness.suite import DatasetSpec, RowSpec, Suite, validate

    def build(cls, data: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})

    return validate(build(Suite, {**spec, "datasets": [build(DatasetSpec, d) for d in spec["datasets"]],
                                  "rows": [build(RowSpec, r) for r in spec["rows"]]}))


def load_meta(storage, study_name: str, wait_s: float) -> dict[str, Any]:
    """The ``harness`` attribute of ``study_name``, waiting up to ``wait_s`` for its creator."""
    from harness.report.collect import META_KEY

    deadline = time.monotonic() + wait_s
    while True:
        try:
            meta = optuna.load_study(study_name=study_name, storage=storage).user_attrs.get(META_KEY)
        except KeyError:
            meta = None
        if meta and "spec" in meta:
            return meta
        if time.monotonic() >= deadline:
            if meta is None:
                raise ConfigError(f"no study {study_name!r} in the storage (start it with `harness run --storage ...`)")
            raise ConfigError(f"study {study_name!r} was not created by `harness run` of this version")
        time.sleep(0.5)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
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
               out: str | None = None, device: str | None = None, wait_s: float = 60.0) -> int:
    """Work on one study until its budget is reached (or ``n_trials`` ran here); the process that
    sees the budget reached runs the seed re-runs and writes the suite's tables. Returns an exit code."""
    from harness.plugins import load_plugins
    from harness.runner import resolve_device, row_method, row_task, run_row, write_suite_tables
    from harness.search import make_storage, redact, worker_id

    meta = load_meta(make_storage(url, Path(".")), study_name, wait_s)
    suite = suite_from_spec(meta["spec"])
    if device:
        suite = suite.replace(device=device)
    storage = make_storage(url, Path("."), heartbeat=suite.heartbeat)
    registry = load_plugins(modules=list(dict.fromkeys([*plugin_modules, *meta.get("plugin_modules", [])])))
    ds = next(d for d in suite.datasets if d.label == meta["dataset"])
    row = next(r for r in suite.rows_for(ds) if r.name == meta["row"])
    method = row_method(registry, suite, row)
    dev = resolve_device(suite.device)
    task = row_task(registry, suite, ds, row, dev)
    out_dir = Path(out) if out else Path("results") / suite.name
    console.print(f"worker {worker_id()} on {study_name} ({redact(url)})", highlight=False)
    with _sigterm_as_interrupt():
        outcome = run_row(suite, ds, row, method, task, storage, dev, out_dir, max_trials=n_trials,
                          worker=True, say=lambda m: console.print(m, highlight=False))
    if outcome.status == "waiting":
        console.print(outcome.detail, highlight=False)
        return 0
    if outcome.status in ("ok", "partial", "FAIL") and outcome.ran_final:
        paths = write_suite_tables(storage, suite, out_dir)
        console.print(f"tables: {paths['summary_md']}", highlight=False)
    elif outcome.status == "ok":
        console.print(f"{study_name}: the search and its seed re-runs are complete", highlight=False)
    if outcome.status in ("FAIL", "partial"):
        console.print(f"harness: error: {meta['dataset']} · {meta['row']}: {outcome.detail}", highlight=False)
        return 2
    return 0


def worker_seed(sampler_seed: int) -> int:
    """Each worker samples with its own seed: identical seeds would propose identical trials."""
    return (sampler_seed * 1_000_003 + os.getpid() * 7919 + time.time_ns()) % (2**31)
