"""The GNN papers' early-stopping rules, fed one epoch's validation loss and accuracy at a time."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from harness.errors import ConfigError


@dataclass(frozen=True)
class Decision:
    """What a stopping rule says after an epoch: keep these weights as the ones to test, and/or stop."""

    snapshot: bool
    stop: bool


class StoppingRule(Protocol):
    """Fed each epoch's validation loss and accuracy, in order; ``restores`` says whether the
    snapshotted weights (rather than the last ones) are tested."""

    restores: bool

    def update(self, val_loss: float, val_acc: float) -> Decision: ...


class WindowStopping:
    """Kipf & Welling's rule: once more than ``window + 1`` epochs have run, stop when the epoch's
    validation loss exceeds the mean of the ``window`` epochs before it. The last weights are tested."""

    restores = False

    def __init__(self, window: int = 10):
        self.window = window
        self.losses: list[float] = []

    def update(self, val_loss: float, val_acc: float) -> Decision:
        self.losses.append(val_loss)
        previous = self.losses[-self.window - 1:-1]
        stop = len(self.losses) > self.window + 1 and val_loss > sum(previous) / len(previous)
        return Decision(snapshot=False, stop=stop)


class LossAccuracyPatience:
    """Veličković et al.'s rule: an epoch whose validation loss is at most the lowest so far *or*
    whose accuracy is at least the highest so far resets the patience counter; one that does both
    is snapshotted; ``patience`` epochs in a row doing neither stop training. The last snapshot is
    tested (ties count as improvements, so later epochs on a plateau win)."""

    restores = True

    def __init__(self, patience: int = 100):
        self.patience = patience
        self.best_loss, self.best_acc, self.bad_epochs = math.inf, -math.inf, 0

    def update(self, val_loss: float, val_acc: float) -> Decision:
        loss_ok, acc_ok = val_loss <= self.best_loss, val_acc >= self.best_acc
        if not (loss_ok or acc_ok):
            self.bad_epochs += 1
            return Decision(snapshot=False, stop=self.bad_epochs >= self.patience)
        self.best_loss, self.best_acc = min(val_loss, self.best_loss), max(val_acc, self.best_acc)
        self.bad_epochs = 0
        return Decision(snapshot=loss_ok and acc_ok, stop=False)


STOPPING_RULES = {"window": WindowStopping, "loss_accuracy": LossAccuracyPatience}


def stopping_rule(name: str, patience: int) -> StoppingRule:
    """The stopping rule of a configuration's ``stopping`` key, with its window or patience."""
    if name not in STOPPING_RULES:
        raise ConfigError(f"unknown stopping rule {name!r} (known: {', '.join(STOPPING_RULES)})")
    return STOPPING_RULES[name](int(patience))
