"""CASH: the method itself as a searched choice, with each method's own space conditional on it.

One study samples ``method`` as a categorical parameter and then that method's search space, with
every parameter name prefixed by the method (``erm:lr``, ``logreg:C``): two methods may both call a
parameter ``lr`` with different ranges, and Optuna needs one distribution per name. The winner is
re-trained over seeds like any row (the row ``cash``); the best trial of each method is listed
beside it, so the table shows what the search chose and by how much.

Pinning inside CASH: ``method=NAME`` fixes the method, ``NAME:param=V`` one of its parameters, and
an unprefixed ``param=V`` overrides that key of whichever method is chosen.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from harness import records
from harness.configs import defaults_for
from harness.info import MethodInfo
from harness.plugins import Method, Registry
from harness.records import val_accuracy


class PrefixedTrial:
    """A trial whose ``suggest_*`` store parameters under ``prefix + name``; all else passes through."""

    def __init__(self, trial: Any, prefix: str):
        self._trial = trial
        self._prefix = prefix

    def __getattr__(self, name: str):
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(param: str, *args, **kwargs):
            return attr(f"{self._prefix}{param}", *args, **kwargs)

        return suggest


class CashMethod:
    """Several methods behind the one name ``cash``; its configuration is ``{"method", "config"}``."""

    name = "cash"

    def __init__(self, registry: Registry, names: tuple[str, ...] | list[str]):
        self.methods: dict[str, Method] = {n: registry.method(n) for n in names}
        kinds = tuple(dict.fromkeys(k for m in self.methods.values() for k in m.info.kinds))
        self.info = MethodInfo("cash", kinds, "the method chosen by the search among " + ", ".join(names))
        self.plugin = ", ".join(dict.fromkeys(m.plugin for m in self.methods.values()))

    def default_trials(self, task, pinned: dict[str, Any]) -> list[dict[str, Any]]:
        """Each method's default configuration as a first trial, so every method is tried once
        at its paper settings before the sampler takes over."""
        defaults = {n: defaults_for(self.methods[n].info, task) for n in self.candidates(task)}
        return [{"method": n, **{f"{n}:{k}": v for k, v in d.items() if k not in pinned}} for n, d in defaults.items() if d]

    def candidates(self, task) -> list[str]:
        return [n for n, m in self.methods.items() if task.kind in m.info.kinds]

    def search_space(self, trial, task) -> dict[str, Any]:
        choice = trial.suggest_categorical("method", self.candidates(task))
        config = self.methods[choice].search_space(PrefixedTrial(trial, f"{choice}:"), task)
        return {"method": choice, "config": config}

    def _inner(self, config: dict[str, Any]) -> tuple[Method, dict[str, Any]]:
        overrides = {k: v for k, v in config.items() if k not in ("method", "config")}
        return self.methods[config["method"]], {**config["config"], **overrides}

    def fit(self, task, config: dict[str, Any], ctx) -> tuple[str, Any]:
        method, inner = self._inner(config)
        return method.name, method.fit(task, inner, ctx)

    def predict(self, fitted: tuple[str, Any], split, ctx):
        name, state = fitted
        return self.methods[name].predict(state, split, ctx)

    def evaluate(self, fitted: tuple[str, Any], split, ctx):
        name, state = fitted
        return self.methods[name].evaluate(state, split, ctx)


def per_method_best(study: optuna.Study) -> pd.DataFrame:
    """The best trial of each method in a CASH study: its validation accuracy and configuration."""
    trials = study.get_trials(deepcopy=False)
    names = list(dict.fromkeys(t.params["method"] for t in trials if "method" in t.params))
    best_number = study.user_attrs.get(records.BEST_TRIAL)
    rows = []
    for name in names:
        mine = [t for t in trials if t.params.get("method") == name]
        done = [t for t in mine if t.state == TrialState.COMPLETE]
        best = max(done, key=lambda t: (val_accuracy(t), -t.number)) if done else None
        rows.append({
            "method": name,
            "trials_complete": len(done),
            "trials_failed": sum(t.state == TrialState.FAIL for t in mine),
            "trials_pruned": sum(t.state == TrialState.PRUNED for t in mine),
            "best_val_accuracy": val_accuracy(best) if best else float("nan"),
            "best_trial": best.number if best else None,
            "winner": best is not None and best.number == best_number,
            "config": json.dumps(best.user_attrs.get(records.CONFIG, {}).get("config", {}), sort_keys=True) if best else "",
        })
    frame = pd.DataFrame(rows, columns=["method", "trials_complete", "trials_failed", "trials_pruned",
                                        "best_val_accuracy", "best_trial", "winner", "config"])
    return frame.sort_values("best_val_accuracy", ascending=False, na_position="last", kind="stable")


def write_per_method(study: optuna.Study, out_dir: Path, stem: str) -> dict[str, Path]:
    """``<stem>.csv`` and ``<stem>.md``: the per-method best of a CASH study."""
    from harness.report.tables import to_markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    frame = per_method_best(study)
    paths = {"csv": out_dir / f"{stem}.csv", "md": out_dir / f"{stem}.md"}
    frame.to_csv(paths["csv"], index=False)
    paths["md"].write_text(
        f"# CASH: best trial per method ({study.study_name})\n\nValidation accuracy of each method's best "
        "trial in the one CASH search; `winner` is the configuration re-trained over seeds (the row `cash`).\n\n"
        + to_markdown(frame.round(5))
    )
    return paths
