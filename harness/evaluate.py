"""The frozen best configuration, re-trained over seeds and scored once on the test split.

Each seed's row is stored in the study's user attributes as soon as it is computed (``result:SEED``),
so an interrupted run resumes with the seeds it has not finished and the table never holds a row
twice.
"""
from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
import torch

from harness.context import FitContext, seed_everything
from harness.metrics import ECE_BINS, classification_metrics, reliability
from harness.plugins import Method, check_probabilities
from harness.search import failure_reason
from harness.task import Task

RESULT_PREFIX = "result:"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


@dataclass
class FinalSettings:
    seeds: list[int]
    epochs: int
    device: torch.device
    amp: bool = True
    cache_dir: Path = Path(".harness-cache")
    artifact_dir: Path | None = None


def stored_results(study: optuna.Study) -> dict[int, dict[str, Any]]:
    out = {}
    for key, value in study.user_attrs.items():
        if key.startswith(RESULT_PREFIX):
            out[int(key[len(RESULT_PREFIX):])] = value
    return out


def run_seed(method: Method, task: Task, config: dict[str, Any], seed: int, s: FinalSettings) -> dict[str, Any]:
    """Fit with ``seed`` on the task without its test split, then score the test split."""
    fit_task = task.without_test()
    artifacts = s.artifact_dir / f"seed{seed}" if s.artifact_dir is not None else None
    ctx = FitContext(device=s.device, seed=seed, epochs=s.epochs, amp=s.amp, cache_dir=s.cache_dir,
                     phase="final", artifact_dir=artifacts)
    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)
    seed_everything(seed)
    wall = time.perf_counter()
    fitted = method.fit(fit_task, config, ctx)
    _sync(s.device)
    fit_s = time.perf_counter() - wall
    test = task.test.without_labels()
    t0 = time.perf_counter()
    probs = method.evaluate(fitted, test, ctx)
    _sync(s.device)
    infer_s = time.perf_counter() - t0
    probs = check_probabilities(probs, len(task.test), task.num_classes, method.name)
    metrics = classification_metrics(probs, task.test.y)
    bins = reliability(probs, task.test.y, ECE_BINS)
    total, trainable = ctx.parameter_counts()
    return {
        "status": "ok",
        **metrics,
        "train_samples_per_s": ctx.samples_seen / fit_s if fit_s > 0 and ctx.samples_seen else float("nan"),
        "infer_samples_per_s": len(task.test) / infer_s if infer_s > 0 else float("nan"),
        "fit_s": fit_s,
        "infer_s": infer_s,
        "params_total": total,
        "params_trainable": trainable,
        "trainable_fraction": trainable / total if total else float("nan"),
        "peak_mem_mb": _peak_memory_mb(s.device),
        "wall_s": time.perf_counter() - wall,
        "samples_seen": ctx.samples_seen,
        **{f"extra_{k}": v for k, v in ctx.extras.items() if isinstance(v, (int, float, str))},
        "reliability": {
            "count": bins.count.tolist(),
            "confidence": [None if c != c else c for c in bins.confidence.tolist()],
            "accuracy": [None if a != a else a for a in bins.accuracy.tolist()],
        },
    }


def run_seeds(
    study: optuna.Study,
    method: Method,
    task: Task,
    config: dict[str, Any],
    settings: FinalSettings,
    on_seed: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[int, dict[str, Any]]:
    """Run every seed that has no stored result yet; return all results by seed."""
    done = stored_results(study)
    study.set_user_attr("final_config", config)
    for seed in settings.seeds:
        if seed in done:
            continue
        try:
            row = run_seed(method, task, config, seed, settings)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # third-party code: record the failure, keep the other seeds
            row = {"status": "FAIL", "reason": failure_reason(exc)}
        row = json.loads(json.dumps(row, default=float))  # what the storage will hold
        study.set_user_attr(f"{RESULT_PREFIX}{seed}", row)
        done[seed] = row
        if on_seed is not None:
            on_seed(seed, row)
    return {s: done[s] for s in settings.seeds if s in done}
