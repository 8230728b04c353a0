"""Every record the harness stores on an Optuna study or trial, and the queries that read them back.

A study of a suite row carries, as user attributes:

========================  ============================================================================
``harness``               :class:`StudyMeta`: suite, data set, row, method, sizes, objectives, the budget
                          the row really had, the suite spec a worker rebuilds it from; ``schema`` version
``provenance``            the run that computed the row (command, commit, hardware, budget, dates)
``result:<seed>``         one seed's test-split metrics (``status`` ``ok`` or ``FAIL`` with ``reason``)
``final_config``          the configuration re-trained over seeds
``best_trial``            number of the tuning trial re-trained over seeds
``best_val_accuracy``     its validation accuracy
``failure``               why the row has no result (every trial failed)
========================  ============================================================================

and each of its trials: ``config`` (what ``harness_search_space`` returned), ``val`` (validation
metrics), ``worker`` (``host:pid``) and ``worker_start`` (when that process started: a recycled pid
is not the same worker), and when it failed :class:`TrialFailure` (``fail_reason``,
``fail_kind``, ``retries_exhausted``); a retried configuration has ``retry_of`` and ``retries``.

Records written before the schema was versioned (no ``schema`` key: version 1) are migrated on
read; a record of a newer version than this code knows is refused with a one-line error.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness.errors import ConfigError

SCHEMA_VERSION = 2

# study attributes
META = "harness"
PROVENANCE = "provenance"
RESULT_PREFIX = "result:"
FINAL_CONFIG = "final_config"
BEST_TRIAL = "best_trial"
BEST_VAL_ACCURACY = "best_val_accuracy"
FAILURE = "failure"
SEQUENTIAL = "seed_rounds"  # the stopping rule, looks and seeds of a seed-rounds run (harness.rounds)

# trial attributes
CONFIG = "config"
VAL = "val"
WORKER = "worker"
WORKER_START = "worker_start"
FAIL_REASON = "fail_reason"
FAIL_KIND = "fail_kind"
RETRIES = "retries"
RETRY_OF = "retry_of"
RETRIES_EXHAUSTED = "retries_exhausted"

# fail kinds
METHOD = "method"  # the plugin raised, diverged or returned bad probabilities: counts, never retried
INFRASTRUCTURE = "infrastructure"  # the worker died or lost its storage: retried
SURPLUS = "surplus"  # given back unrun: trials running elsewhere already fill the budget; never counts


@dataclass(frozen=True)
class Budget:
    """What a row is given: tuning trials, seed re-runs, training epochs and pinned parameters."""

    trials: int
    seeds: int
    epochs: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyMeta:
    """The ``harness`` record of a row's study: what it is and how to rebuild it in a worker."""

    suite: str
    dataset: str
    row: str
    method: str
    plugin: str = ""
    dataset_order: int = 0
    row_order: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    kind: str = ""
    objectives: tuple[str, ...] = ("accuracy",)
    cash: tuple[str, ...] = ()
    spec: dict[str, Any] | None = None  # the suite, as plain JSON, without its storage URL
    plugin_modules: tuple[str, ...] = ()
    budget: Budget | None = None  # None in records written before budgets were stored
    settings: dict[str, Any] | None = None  # what shapes the results (:func:`settings_change`); None before
    schema: int = SCHEMA_VERSION

    def to_attr(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["objectives"], out["cash"] = list(self.objectives), list(self.cash)
        out["plugin_modules"] = list(self.plugin_modules)
        return out

    @classmethod
    def from_attr(cls, data: dict[str, Any], where: str = "a study") -> StudyMeta:
        """Read a stored record, migrating older versions."""
        version = data.get("schema", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ConfigError(f"{where} was written by a newer harness (record schema {version}; this one "
                              f"reads up to {SCHEMA_VERSION}): upgrade harness to read it")
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        budget = known.get("budget")
        known["budget"] = Budget(**budget) if isinstance(budget, dict) else None
        for key in ("objectives", "cash", "plugin_modules"):
            if key in known:
                known[key] = tuple(known[key] or ())
        known["schema"] = SCHEMA_VERSION
        return cls(**known)


@dataclass(frozen=True)
class TrialFailure:
    """Why a trial failed, and whether its configuration is retried."""

    reason: str
    kind: str = METHOD
    retries_exhausted: bool | None = None

    def attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = {FAIL_REASON: self.reason, FAIL_KIND: self.kind}
        if self.retries_exhausted is not None:
            out[RETRIES_EXHAUSTED] = self.retries_exhausted
        return out


def result_key(seed: int) -> str:
    return f"{RESULT_PREFIX}{seed}"


# Settings a row may change without invalidating what is stored: more trials extend the search, more
# or fewer seeds add or hide seed rows. Any other difference means the stored results answer another
# question.
EXTENDABLE = ("trials", "seeds")


# settings that shape only a search: an untuned row's results do not depend on them, and the pruner's
# not those of a search whose trials never reported an intermediate value
PRUNER_ONLY = frozenset({"pruner", "pruner_settings"})
SEARCH_ONLY = frozenset({"sampler", "sampler_seed"}) | PRUNER_ONLY


def settings_change(stored: StudyMeta, settings: dict[str, Any], reported: bool = True) -> tuple[str, Any] | None:
    """The first setting (key, stored value) in which ``stored`` differs from ``settings`` and that
    forbids reusing its results, or None. Fewer trials than stored count as such a change, and
    :data:`SEARCH_ONLY` settings do not for a row tuned neither then nor now, nor :data:`PRUNER_ONLY`
    ones when no stored trial ``reported`` an intermediate value (no pruner could act on it); records
    written before settings were stored are compared on their budget alone."""
    old = stored.settings
    if old is None:
        if stored.budget is None:
            return None
        old = {"epochs": stored.budget.epochs, "params": stored.budget.params, "trials": stored.budget.trials}
    # a row that was not tuned, and is not now, ran no search: the sampler and pruner never touched it
    untuned = old.get("trials") == 0 and settings.get("trials") == 0
    for key, value in old.items():
        if key == "seeds" or key not in settings or (untuned and key in SEARCH_ONLY):
            continue
        if not reported and key in PRUNER_ONLY:
            continue
        new = settings[key]
        if key == "trials" and isinstance(value, int) and isinstance(new, int) and new >= value:
            continue
        if _plain(value) != _plain(new):
            return key, value
    return None


def _plain(value: Any) -> Any:
    """``value`` as the storage hands it back (tuples become lists), so stored and new compare alike."""
    import json

    return json.loads(json.dumps(value, default=str))


# -- queries on stored studies and trials -------------------------------------------------------

def study_meta(attrs: dict[str, Any], name: str = "a study") -> StudyMeta | None:
    """The :class:`StudyMeta` in a study's user attributes, or None for a study the harness did not make."""
    data = attrs.get(META)
    return StudyMeta.from_attr(data, f"study {name!r}") if data else None


def harness_studies(storage, suite: str | None = None) -> list[tuple[Any, StudyMeta]]:
    """(study summary, metadata) of every harness study in the storage, in table order."""
    out = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        meta = study_meta(summary.user_attrs, summary.study_name)
        if meta is None or (suite is not None and meta.suite != suite):
            continue
        out.append((summary, meta))
    out.sort(key=lambda sm: (sm[1].dataset_order, sm[1].row_order, sm[0]._study_id))
    return out


def stored_results(study: optuna.Study | Any) -> dict[int, dict[str, Any]]:
    """Seed → stored result row of a study (or a study summary)."""
    return {int(k[len(RESULT_PREFIX):]): v for k, v in study.user_attrs.items()
            if k.startswith(RESULT_PREFIX) and v is not None}  # None: withdrawn (a stale configuration's)


def val_accuracy(t: FrozenTrial) -> float:
    """A finished trial's validation accuracy, whatever its objectives were."""
    val = t.user_attrs.get(VAL, {})
    return val["accuracy"] if "accuracy" in val else t.values[0]


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The trial re-trained over seeds: the best validation accuracy; in a multi-objective study
    the Pareto-optimal trial with the best validation accuracy."""
    if len(study.directions) > 1:
        complete = study.best_trials
    else:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    # Ties on accuracy go to the lower validation NLL, then the earlier trial.
    return max(complete, key=lambda t: (val_accuracy(t), -t.user_attrs.get(VAL, {}).get("nll", math.inf), -t.number))


def failure_summary(study: optuna.Study) -> str:
    """One line on why no trial of ``study`` completed."""
    reasons = [t.user_attrs.get(FAIL_REASON, "unknown") for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))]
    if not reasons:
        return "no trial completed"
    top = max(set(reasons), key=reasons.count)
    return f"all {len(reasons)} trials failed; most often: {top}"


def collect_rows(storage, suite: str | None = None) -> list[dict[str, Any]]:
    """One dict per (data set, method, seed): the per-seed table, straight from the storage."""
    rows: list[dict[str, Any]] = []
    for summary, meta in harness_studies(storage, suite):
        attrs = summary.user_attrs
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counts = {s.name.lower(): sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED)}
        infra = sum(t.state == TrialState.FAIL and t.user_attrs.get(FAIL_KIND) == INFRASTRUCTURE for t in trials)
        base = {
            "suite": meta.suite, "dataset": meta.dataset, "method": meta.row,
            "plugin_method": meta.method, "plugin": meta.plugin,
            "trials_complete": counts["complete"], "trials_pruned": counts["pruned"],
            # the method's failures apart from the worker's (killed, interrupted, storage lost)
            "trials_failed": sum(t.state == TrialState.FAIL and t.user_attrs.get(FAIL_KIND, METHOD) == METHOD
                                 for t in trials),
            "trials_infra": infra,
            "best_trial": attrs.get(BEST_TRIAL), "val_accuracy": attrs.get(BEST_VAL_ACCURACY),
            "config": attrs.get(FINAL_CONFIG), **meta.sizes,
        }
        results = stored_results(summary)
        if meta.budget is not None and isinstance((meta.settings or {}).get("seed_base"), int):
            first = meta.settings["seed_base"]  # the seeds the row was last asked for, no others
            results = {s: r for s, r in results.items() if first <= s < first + meta.budget.seeds}
        if not results and attrs.get(FAILURE):
            rows.append({**base, "seed": None, "status": "FAIL", "reason": attrs[FAILURE]})
        for seed in sorted(results):
            rows.append({**base, "seed": seed, **results[seed]})
    return rows


def collect_provenance(storage, suite: str | None = None) -> dict[str, Any]:
    """The provenance of the latest run that computed rows of the suite; rows computed by earlier
    runs are listed under ``earlier_runs`` with their own command, commit and dates. ``budgets``
    lists the budget each row really had (rows stored before budgets were recorded have none)."""
    runs: dict[tuple[str, str], tuple[dict[str, Any], list[str]]] = {}
    budgets: dict[str, dict[str, Any]] = {}
    rounds: list[dict[str, Any]] = []
    for summary, meta in harness_studies(storage, suite):
        p = summary.user_attrs.get(PROVENANCE)
        if summary.user_attrs.get(SEQUENTIAL):
            rounds.append(summary.user_attrs[SEQUENTIAL])
        if meta.budget is not None:
            budgets[f"{meta.dataset} · {meta.row}"] = dataclasses.asdict(meta.budget)
        if not p:
            continue
        key = (str(p.get("started_at", "")), str(p.get("git_commit", "")))
        runs.setdefault(key, (p, []))[1].append(f"{meta.dataset} · {meta.row}")
    if not runs:
        return {}
    ordered = sorted(runs.values(), key=lambda pr: str(pr[0].get("finished_at", "")))
    prov = dict(ordered[-1][0])
    if len(ordered) > 1:
        keys = ("command", "git_commit", "started_at", "finished_at", "device", "torch_threads", "hardware")
        prov["earlier_runs"] = [{"rows": rows, **{k: p.get(k) for k in keys}}
                                for p, rows in ordered[:-1]]
    if budgets:
        prov["budgets"] = budgets
    if rounds:
        prov["seed_rounds"] = max(rounds, key=lambda r: str(r.get("finished_at", "")))
    return prov
