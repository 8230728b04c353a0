"""The one routine that fits a method, predicts a split, checks the probabilities and times both.

Tuning, the seed re-runs, ``harness bench`` and ``harness plugins --check`` all call :func:`fit` and
:func:`predict`; probabilities are checked exactly once per prediction, here.
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from harness.context import FitContext, seed_everything
from harness.plugins import Method
from harness.predictions import Predictions
from harness.task import Split, Task


@dataclass(frozen=True)
class PhaseSettings:
    """What every fit of a row gets, in either phase: its training budget, device and precision."""

    epochs: int
    device: torch.device
    amp: bool = True
    compile: bool = False
    cache_dir: Path = field(default_factory=lambda: Path(".harness-cache"))

    def context(self, seed: int, phase: str, *, reporter: Callable[[int, float], None] | None = None,
                artifact_dir: Path | None = None) -> FitContext:
        return FitContext(device=self.device, seed=seed, epochs=self.epochs, amp=self.amp, compile=self.compile,
                          cache_dir=self.cache_dir, phase=phase, reporter=reporter, artifact_dir=artifact_dir)


@dataclass
class Fitted:
    """A fitted method: its opaque state, the context it was fitted in, and the seconds it took."""

    method: Method
    state: Any
    ctx: FitContext
    fit_s: float


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def fit(method: Method, task: Task, config: dict[str, Any], ctx: FitContext) -> Fitted:
    """Seed everything with ``ctx.seed`` and fit; the GPU is synchronised around the timed region."""
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    seed_everything(ctx.seed)
    sync(ctx.device)
    started = time.perf_counter()
    state = method.fit(task, config, ctx)
    sync(ctx.device)
    return Fitted(method, state, ctx, time.perf_counter() - started)


def predict(fitted: Fitted, split: Split, num_classes: int) -> tuple[Predictions, float]:
    """Checked predictions of an unlabelled copy of ``split``, and the seconds the call took."""
    unlabelled = split.without_labels() if split.y is not None else split
    sync(fitted.ctx.device)
    started = time.perf_counter()
    raw = fitted.method.predict(fitted.state, unlabelled, fitted.ctx)
    sync(fitted.ctx.device)
    elapsed = time.perf_counter() - started
    return raw.checked(len(split), num_classes, fitted.method.name), elapsed
