"""The :class:`FitContext` the core hands to ``harness_fit`` and ``harness_evaluate``."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

log = logging.getLogger("harness")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that one seed on CPU gives the same numbers twice."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class FitContext:
    """Everything a method needs from the core besides the task and its configuration.

    ``epochs`` is the training budget the suite gives every method alike (a method may read its own
    ``config["epochs"]`` instead only where its search space tunes it). ``report(step, value)`` sends
    the validation accuracy after each epoch to the Optuna pruner and raises ``optuna.TrialPruned``
    when the trial should stop. ``track(module)`` tells the core which networks make up the fitted
    model (for the parameter columns); the training toolkit calls it for you. ``samples_seen`` is
    counted by the toolkit and gives the train-throughput column.

    ``extras``: numbers a method records about its fitted model while scoring the test split (a
    VAE's negative ELBO, a diffusion model's bits/dim); each becomes an ``extra_<name>`` column of
    the per-seed table and is aggregated over seeds like the headline metrics. ``artifact_dir`` is
    a folder beside the tables for files a method writes in the final phase (sample grids; create
    it before writing); it is ``None`` while tuning.

    ``previous``: in the task kinds fitted in stages (:mod:`harness.tasks`), what ``harness_fit``
    returned for the stage before: the model after the previous experience of a stream, the
    meta-trained model when adapting to a few-shot episode; ``None`` at the first stage. A method
    continues from it; the task it is handed holds the current stage's data only.
    """

    device: torch.device
    seed: int
    epochs: int = 20
    time_limit: float | None = None
    amp: bool = False
    compile: bool = False
    cache_dir: Path = field(default_factory=lambda: Path(".harness-cache"))
    phase: str = "tune"
    reporter: Callable[[int, float], None] | None = None
    samples_seen: int = 0
    modules: list[nn.Module] = field(default_factory=list)
    extras: dict = field(default_factory=dict)
    artifact_dir: Path | None = None
    previous: Any = None

    def report(self, step: int, value: float) -> None:
        if self.reporter is not None:
            self.reporter(step, value)

    def track(self, *modules: nn.Module) -> None:
        for m in modules:
            if all(m is not seen for seen in self.modules):
                self.modules.append(m)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A generator on the context's device seeded from the context seed."""
        g = torch.Generator(device=self.device)
        g.manual_seed(self.seed * 1000003 + offset)
        return g

    def log(self, msg: str, *args) -> None:
        log.info(msg, *args)

    def parameter_counts(self) -> tuple[int, int]:
        """(total, trainable) parameters over the tracked modules, shared tensors counted once."""
        seen: dict[int, torch.nn.Parameter] = {}
        for m in self.modules:
            for p in m.parameters():
                seen.setdefault(id(p), p)
        total = sum(p.numel() for p in seen.values())
        trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
        return total, trainable
