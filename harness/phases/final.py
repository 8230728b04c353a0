"""The final phase: the frozen best configuration, re-trained over seeds and scored once on test.

Each seed's row is stored on the study (``result:SEED``, :mod:`harness.records`) as soon as it is
computed, so an interrupted run resumes with the seeds it has not finished and the table never holds
a row twice.

Uncertainty, scored from the same probabilities:

* ``entropy``: mean predictive entropy on the test split; when the method returns member predictions
  (``Predictions.members``: an ensemble, MC dropout) also ``mutual_information`` (mean BALD score).
* ``calibrate`` (a suite row's opt-in): the fitted model is also evaluated on the validation split,
  a temperature is fitted there (:mod:`harness.calibration`) and applied to every test-time
  prediction; the headline metrics are the calibrated ones, ``ece_uncalibrated`` /
  ``nll_uncalibrated`` / ``temperature`` sit beside them.
* ``shift`` / ``ood`` (a suite's opt-in, image tasks): after the test evaluation the same
  ``harness_evaluate`` scores shifted copies of the test split and out-of-distribution sets
  (:mod:`harness.shift`); per-shift metrics and OOD AUROCs are stored in the seed result.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
import torch

from harness import records, robustness
from harness.calibration import apply_temperature, fit_temperature
from harness.errors import StorageUnavailableError, failure_reason
from harness.metrics import ECE_BINS, classification_metrics, entropy, mutual_information, reliability
from harness.phases import kinds
from harness.phases.fitting import Fitted, PhaseSettings, fit, peak_memory_mb, predict
from harness.plugins import Method
from harness.predictions import Predictions
from harness.shift import ShiftSpec, apply_shift, auroc, ood_images
from harness.task import Split, Task
from harness.tasks import CLASSIFICATION, task_kind


@dataclass(frozen=True)
class FinalSettings:
    """How a row's best configuration is re-trained: ``phase`` is shared with tuning."""

    seeds: list[int]
    phase: PhaseSettings
    artifact_dir: Path | None = None
    calibrate: str | None = None
    shifts: tuple[ShiftSpec, ...] = ()
    ood: tuple[str, ...] = ()
    best_trial: int | None = None  # the tuning trial whose configuration this is: tags each result
    robustness: robustness.AttackSettings | None = None  # white-box attacks on the test split


def run_seed(method: Method, task: Task, config: dict[str, Any], seed: int, s: FinalSettings) -> dict[str, Any]:
    """Fit with ``seed`` on the task without its test split, then score the test split."""
    artifacts = s.artifact_dir / f"seed{seed}" if s.artifact_dir is not None else None
    ctx = s.phase.context(seed, "final", artifact_dir=artifacts)
    if task_kind(task) != CLASSIFICATION:  # a stream, multi-task or episodic task: its own protocol
        return kinds.seed_result(method, task, config, ctx)
    wall = time.perf_counter()
    fitted = fit(method, task.without_test(), config, ctx)
    predictions, infer_s = predict(fitted, task.test, task.num_classes)
    extras = {**ctx.extras, **predictions.extras}
    probs, members = predictions.probs, predictions.members
    uncertainty = _uncertainty(probs, members)
    calibrated: dict[str, Any] = {}
    temperature = None
    if s.calibrate == "temperature":
        val_probs = predict(fitted, task.val, task.num_classes)[0].probs
        temperature = fit_temperature(val_probs, task.val.y)
        before = classification_metrics(probs, task.test.y)
        calibrated = {"temperature": temperature, "ece_uncalibrated": before["ece"],
                      "nll_uncalibrated": before["nll"], "brier_uncalibrated": before["brier"],
                      "reliability_uncalibrated": _bins_json(reliability(probs, task.test.y, ECE_BINS))}
        probs = apply_temperature(probs, temperature)
        uncertainty["entropy"] = _uncertainty(probs, None)["entropy"]
    metrics = classification_metrics(probs, task.test.y)
    bins = reliability(probs, task.test.y, ECE_BINS)
    shifted = _score_shifts(fitted, task, s.shifts, temperature) if task.kind == "image" else []
    ood = _score_ood(fitted, task, s.ood, probs, members, temperature) if task.kind == "image" else {}
    robust = {}
    if s.robustness is not None:  # attacks the fitted model through its differentiable view
        robust = robustness.score(method.differentiable(fitted.state, ctx), task.test.x, task.test.y,
                                  s.robustness, task.input_range, task.num_classes, seed)
    total, trainable = ctx.parameter_counts()
    fit_s = fitted.fit_s
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
        "peak_mem_mb": peak_memory_mb(s.phase.device),
        "wall_s": time.perf_counter() - wall,
        "samples_seen": ctx.samples_seen,
        **{f"extra_{k}": v for k, v in extras.items() if isinstance(v, (int, float, str))},
        **uncertainty,
        **calibrated,
        **robust,
        "reliability": _bins_json(bins),
        **({"shift": shifted} if shifted else {}),
        **({"ood": ood} if ood else {}),
    }


def _bins_json(bins) -> dict[str, list]:
    return {
        "count": bins.count.tolist(),
        "confidence": [None if c != c else c for c in bins.confidence.tolist()],
        "accuracy": [None if a != a else a for a in bins.accuracy.tolist()],
    }


def _uncertainty(probs: torch.Tensor, members: torch.Tensor | None) -> dict[str, float]:
    out = {"entropy": entropy(probs).mean().item()}
    if members is not None:
        out["mutual_information"] = mutual_information(members.detach().to("cpu", torch.float64)).mean().item()
    return out


def _score_shifts(fitted: Fitted, task: Task, shifts: tuple[ShiftSpec, ...],
                  temperature: float | None) -> list[dict[str, Any]]:
    """Metrics on every shifted copy of the test split (calibrated with the row's temperature)."""
    out = []
    for spec in shifts:
        split = Split(apply_shift(task.test.x, spec), None, task.test.index)
        p: Predictions = predict(fitted, split, task.num_classes)[0]
        probs = p.probs
        row: dict[str, Any] = {"shift": spec.name, "intensity": spec.intensity}
        if temperature is not None:
            before = classification_metrics(probs, task.test.y)
            row.update(ece_uncalibrated=before["ece"], nll_uncalibrated=before["nll"])
            probs = apply_temperature(probs, temperature)
        row.update(classification_metrics(probs, task.test.y))
        row.update(_uncertainty(probs, p.members))
        out.append(row)
    return out


def _score_ood(fitted: Fitted, task: Task, sets: tuple[str, ...], probs: torch.Tensor,
               members: torch.Tensor | None, temperature: float | None) -> dict[str, dict[str, float]]:
    """AUROC of uncertainty scores between the test split (in) and each OOD set (out)."""
    def scores(p: torch.Tensor, m: torch.Tensor | None) -> dict[str, torch.Tensor]:
        out = {"entropy": entropy(p), "max_prob": 1 - p.max(1).values}
        if m is not None:
            out["mutual_information"] = mutual_information(m.detach().to("cpu", torch.float64))
        return out

    inside = scores(probs, members)
    result = {}
    for name in sets:
        split = Split(ood_images(task.test.x, name), None, task.test.index)
        p = predict(fitted, split, task.num_classes)[0]
        out_probs = apply_temperature(p.probs, temperature) if temperature is not None else p.probs
        outside = scores(out_probs, p.members)
        result[name] = {f"auroc_{k}": auroc(inside[k], outside[k]) for k in inside if k in outside}
    return result


def run_seeds(
    study: optuna.Study,
    method: Method,
    task: Task,
    config: dict[str, Any],
    settings: FinalSettings,
    on_seed: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[int, dict[str, Any]]:
    """Run every seed that has no stored result yet; return all results by seed."""
    done = records.stored_results(study)
    study.set_user_attr(records.FINAL_CONFIG, config)
    for seed in settings.seeds:
        if seed in done:
            continue
        try:
            row = run_seed(method, task, config, seed, settings)
        except (KeyboardInterrupt, StorageUnavailableError):
            raise
        except Exception as exc:  # third-party code: record the failure, keep the other seeds
            row = {"status": "FAIL", "reason": failure_reason(exc)}
        if settings.best_trial is not None:
            row[records.BEST_TRIAL] = settings.best_trial
        row = json.loads(json.dumps(row, default=float))  # what the storage will hold
        study.set_user_attr(records.result_key(seed), row)
        done[seed] = row
        if on_seed is not None:
            on_seed(seed, row)
    return {s: done[s] for s in settings.seeds if s in done}
