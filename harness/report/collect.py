"""Read per-seed rows and their provenance back from an Optuna storage."""
from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from harness.evaluate import RESULT_PREFIX

META_KEY = "harness"


def harness_studies(storage, suite: str | None = None) -> list[tuple[Any, dict[str, Any]]]:
    """(study summary, harness metadata) of every harness study in the storage, in creation order."""
    out = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        meta = summary.user_attrs.get(META_KEY)
        if not meta or (suite is not None and meta.get("suite") != suite):
            continue
        out.append((summary, meta))
    out.sort(key=lambda sm: (sm[1].get("dataset_order", 0), sm[1].get("row_order", 0), sm[0]._study_id))
    return out


def collect_rows(storage, suite: str | None = None) -> list[dict[str, Any]]:
    """One dict per (data set, method, seed): the per-seed table, straight from the storage."""
    rows: list[dict[str, Any]] = []
    for summary, meta in harness_studies(storage, suite):
        attrs = summary.user_attrs
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counts = {s.name.lower(): sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        base = {
            "suite": meta["suite"], "dataset": meta["dataset"], "method": meta["row"],
            "plugin_method": meta["method"], "plugin": meta.get("plugin", ""),
            "trials_complete": counts["complete"], "trials_pruned": counts["pruned"], "trials_failed": counts["fail"],
            "best_trial": attrs.get("best_trial"), "val_accuracy": attrs.get("best_val_accuracy"),
            "config": attrs.get("final_config"), **{k: v for k, v in meta.get("sizes", {}).items()},
        }
        results = {int(k[len(RESULT_PREFIX):]): v for k, v in attrs.items() if k.startswith(RESULT_PREFIX)}
        if not results and attrs.get("failure"):
            rows.append({**base, "seed": None, "status": "FAIL", "reason": attrs["failure"]})
        for seed in sorted(results):
            rows.append({**base, "seed": seed, **results[seed]})
    return rows


def collect_provenance(storage, suite: str | None = None) -> dict[str, Any]:
    """The provenance of the latest run that computed rows of the suite; rows computed by earlier
    runs are listed under ``earlier_runs`` with their own command, commit and dates."""
    runs: dict[tuple[str, str], tuple[dict[str, Any], list[str]]] = {}
    for summary, meta in harness_studies(storage, suite):
        p = summary.user_attrs.get("provenance")
        if not p:
            continue
        key = (str(p.get("started_at", "")), str(p.get("git_commit", "")))
        runs.setdefault(key, (p, []))[1].append(f"{meta.get('dataset')} · {meta.get('row')}")
    if not runs:
        return {}
    ordered = sorted(runs.values(), key=lambda pr: str(pr[0].get("finished_at", "")))
    prov = dict(ordered[-1][0])
    if len(ordered) > 1:
        prov["earlier_runs"] = [{"rows": rows, **{k: p.get(k) for k in ("command", "git_commit", "started_at", "finished_at")}}
                                for p, rows in ordered[:-1]]
    return prov
