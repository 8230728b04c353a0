"""How the phases score the task kinds beyond classification (:mod:`harness.tasks`).

Each kind keeps the protocol of classification — tune on validation data, re-train the frozen
configuration over seeds, score the test data once — and the one hook API: ``harness_fit`` and
``harness_evaluate``, called in stages where the kind has stages.

* stream: ``harness_fit`` once per experience, with that experience's task alone and
  ``ctx.previous`` the state after the experience before; after each, ``harness_evaluate`` on every
  experience's validation (tuning) or test (final) split gives the accuracy matrix ``R``.
* episodic: ``harness_fit`` meta-trains on the meta-train task; then, per episode, ``harness_fit``
  adapts to the support set (``ctx.previous`` the meta-trained state) and ``harness_evaluate``
  predicts the query set.
* multitask: one ``harness_fit``; ``harness_evaluate`` returns probabilities per head.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any


from harness.context import FitContext
from harness.errors import PluginOutputError
from harness.metrics import accuracy
from harness.phases.fitting import fit, peak_memory_mb, predict, sync
from harness.plugins import Method
from harness.predictions import check_probabilities
from harness.tasks import task_kind
from harness.tasks.episodic import episode_task, episodes, mean_ci95
from harness.tasks.stream import experience_accuracy, stream_metrics


@dataclasses.dataclass
class _Run:
    """What one protocol run measured: metrics, plus what the final phase stores beside them."""

    metrics: dict[str, Any]
    fit_s: float = 0.0
    infer_s: float = 0.0
    scored: int = 0


def run_stream(method: Method, task, config: dict[str, Any], ctx: FitContext, split: str) -> _Run:
    """Fit experience by experience; score every experience's ``split`` after each: the matrix ``R``."""
    ctx.reporter = None  # each experience restarts its epochs: one pruning curve would not be monotone in steps
    run = _Run({})
    matrix: list[list[float]] = []
    state = None
    for exp in task.experiences:
        ctx.previous = state
        fitted = fit(method, exp.without_test(), config, ctx)
        run.fit_s += fitted.fit_s
        state = fitted.state
        row = []
        for other in task.experiences:
            data = other.test if split == "test" else other.val
            predictions, seconds = predict(fitted, data, other.num_classes)
            run.infer_s += seconds
            run.scored += len(data)
            row.append(experience_accuracy(predictions.probs, data.y,
                                           other.meta["classes"] if task.scenario == "task" else None))
        matrix.append(row)
    ctx.previous = None
    run.metrics = {**stream_metrics(matrix), "accuracy_matrix": matrix,
                   "experience_classes": [list(c) for c in task.classes], "scenario": task.scenario}
    return run


def run_episodic(method: Method, task, config: dict[str, Any], ctx: FitContext, split: str) -> _Run:
    """Meta-train once, then adapt to and score every episode of every shot setting."""
    spec = task.spec
    fitted = fit(method, task.meta_train.without_test(), config, ctx)
    run = _Run({}, fit_s=fitted.fit_s)
    pool, count = (task.test_pool, spec.test_episodes) if split == "test" else (task.val_pool, spec.val_episodes)
    for s_i, shot in enumerate(spec.shots):
        scores = []
        # The same episodes for every method of a table; another set per seed in the final phase.
        seed = (ctx.seed if split == "test" else 0) * 1009 + shot
        for e_i, episode in enumerate(episodes(pool, spec.ways, shot, spec.queries, count, seed)):
            ectx = dataclasses.replace(ctx, previous=fitted.state, modules=[], extras={}, samples_seen=0,
                                       reporter=None)
            sync(ctx.device)
            started = time.perf_counter()
            adapted = method.fit(episode_task(task.meta_train, episode.support, spec.ways, shot, e_i), config, ectx)
            probs = method.predict(adapted, episode.query.without_labels(), ectx).checked(
                len(episode.query), spec.ways, method.name).probs
            sync(ctx.device)
            run.infer_s += time.perf_counter() - started
            run.scored += len(episode.query)
            scores.append(accuracy(probs, episode.query.y))
        mean, half = mean_ci95(scores)
        run.metrics[f"accuracy_{shot}shot"] = mean
        run.metrics[f"ci95_{shot}shot"] = half
        if s_i == 0:
            run.metrics["accuracy"] = mean
    run.metrics["episodes"] = count
    return run


def run_multitask(method: Method, task, config: dict[str, Any], ctx: FitContext, split: str) -> _Run:
    """One fit; each head scored on ``split``; the headline is the mean over heads."""
    fitted = fit(method, task.task.without_test(), config, ctx)
    data = task.task.test if split == "test" else task.task.val
    sync(ctx.device)
    started = time.perf_counter()
    probs = method.predict(fitted.state, data.without_labels(), ctx).probs
    sync(ctx.device)
    run = _Run({}, fit_s=fitted.fit_s, infer_s=time.perf_counter() - started, scored=len(data))
    heads = task.heads
    if not isinstance(probs, dict) or set(probs) != set(heads):
        raise PluginOutputError(f"{method.name}: harness_evaluate on a multi-task task must return a dict of "
                                f"probabilities by head ({', '.join(heads)})")
    for h, (name, k) in enumerate(heads.items()):
        p = check_probabilities(probs[name], len(data), k, method.name)
        run.metrics[f"accuracy_{name}"] = accuracy(p, data.y[:, h])
    run.metrics["accuracy"] = sum(run.metrics[f"accuracy_{n}"] for n in heads) / len(heads)
    return run


PROTOCOLS = {"stream": run_stream, "episodic": run_episodic, "multitask": run_multitask}


def validation_metrics(method: Method, task, config: dict[str, Any], ctx: FitContext) -> dict[str, float]:
    """A tuning trial's metrics on the validation data of a task of another kind."""
    run = PROTOCOLS[task_kind(task)](method, task, config, ctx, "val")
    out = {k: v for k, v in run.metrics.items() if isinstance(v, float)}
    out["infer_samples_per_s"] = run.scored / max(run.infer_s, 1e-9)
    return out


def seed_result(method: Method, task, config: dict[str, Any], ctx: FitContext) -> dict[str, Any]:
    """One final-phase seed of a task of another kind: fitted without test data, test scored once."""
    wall = time.perf_counter()
    run = PROTOCOLS[task_kind(task)](method, task, config, ctx, "test")
    total, trainable = ctx.parameter_counts()
    return {
        "status": "ok",
        **run.metrics,
        "train_samples_per_s": ctx.samples_seen / run.fit_s if run.fit_s > 0 and ctx.samples_seen else float("nan"),
        "infer_samples_per_s": run.scored / run.infer_s if run.infer_s > 0 else float("nan"),
        "fit_s": run.fit_s,
        "infer_s": run.infer_s,
        "params_total": total,
        "params_trainable": trainable,
        "trainable_fraction": trainable / total if total else float("nan"),
        "peak_mem_mb": peak_memory_mb(ctx.device),
        "wall_s": time.perf_counter() - wall,
        "samples_seen": ctx.samples_seen,
        **{f"extra_{k}": v for k, v in ctx.extras.items() if isinstance(v, (int, float, str))},
    }
