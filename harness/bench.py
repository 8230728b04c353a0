"""``harness bench``: a throughput table in the style of timm's benchmark, for each method's model.

Each method is trained with its default configuration (plus pinned values) for a few epochs after
a one-epoch warm-up, and its ``harness_evaluate`` is timed over several repeats after a warm-up
call; the GPU is synchronised around every timed region. Columns follow timm's ``benchmark.py``:
train and inference samples/s, step times, batch size, parameter counts, peak memory.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness.data import load_task
from harness.errors import failure_reason
from harness.phases import PhaseSettings, default_config, fit, predict
from harness.phases.fitting import peak_memory_mb
from harness.plugins import Registry
from harness.report.provenance import gather, now
from harness.report.tables import to_markdown


@dataclass
class BenchSettings:
    dataset: str = "digits"
    device: torch.device = torch.device("cpu")
    epochs: int = 2
    repeats: int = 5
    amp: bool = True
    compile: bool = False
    pinned: dict[str, Any] | None = None


def bench_method(registry: Registry, name: str, s: BenchSettings) -> dict[str, Any]:
    method = registry.method(name)
    task = load_task(registry, s.dataset, device=s.device)
    row: dict[str, Any] = {"method": name, "dataset": s.dataset, "device": str(s.device),
                           "precision": "bf16-autocast" if s.amp and s.device.type == "cuda" else "fp32"}
    if task.kind not in method.info.kinds:
        return {**row, "status": "skipped", "reason": f"{name} does not support {task.kind} tasks"}
    try:
        fit_task = task.without_test()
        config = default_config(method, fit_task, s.pinned or {})
        phase = PhaseSettings(epochs=s.epochs, device=s.device, amp=s.amp, compile=s.compile)
        warm_up = dataclasses.replace(phase, epochs=1)
        fit(method, fit_task, config, warm_up.context(0, "bench"))  # allocator, kernels, compilation
        fitted = fit(method, fit_task, config, phase.context(0, "bench"))
        ctx, fit_s = fitted.ctx, fitted.fit_s
        predict(fitted, task.test, task.num_classes)  # warm-up
        times = [predict(fitted, task.test, task.num_classes)[1] for _ in range(s.repeats)]
    except Exception as exc:  # one method's failure is its row, the others still run
        return {**row, "status": "FAIL", "reason": failure_reason(exc)}
    test = task.test
    total, trainable = ctx.parameter_counts()
    batch = config.get("batch_size")
    train_rate = ctx.samples_seen / fit_s if ctx.samples_seen else float("nan")
    infer_s = statistics.median(times)
    return {
        **row, "status": "ok",
        "train_samples_per_s": train_rate,
        "train_step_ms": 1000 * batch / train_rate if batch and train_rate == train_rate else float("nan"),
        "train_batch_size": batch,
        "infer_samples_per_s": len(test) / infer_s,
        "infer_ms_per_call": 1000 * infer_s,
        "infer_batch_size": len(test),
        "param_count": total, "trainable_params": trainable,
        "peak_mem_mb": peak_memory_mb(s.device),
        "epochs": s.epochs, "repeats": s.repeats, "config": json.dumps(config, sort_keys=True),
    }


def run_bench(registry: Registry, methods: list[str], s: BenchSettings, out_dir: Path) -> pd.DataFrame:
    rows = [bench_method(registry, m, s) for m in methods]
    frame = pd.DataFrame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / "bench.csv", index=False)
    prov = gather(device=s.device, dataset=s.dataset, epochs=s.epochs, repeats=s.repeats, amp=s.amp,
                  compile=s.compile, finished_at=now())
    cols = [c for c in ("method", "status", "train_samples_per_s", "train_step_ms", "train_batch_size",
                        "infer_samples_per_s", "infer_ms_per_call", "param_count", "trainable_params", "peak_mem_mb",
                        "precision", "reason") if c in frame.columns]
    shown = frame[cols].round(1).fillna("")
    (out_dir / "bench.md").write_text(
        f"# Throughput on {s.dataset}, {s.device}\n\n" + to_markdown(shown)
        + f"\n- command: `{prov['command']}`\n- git commit: `{prov['git_commit']}`\n- hardware: {prov['hardware']}\n"
        "- train: default configuration, one warm-up epoch, then the timed fit (validation per epoch included); "
        "inference: median of the timed `harness_evaluate` calls on the test split after one warm-up call.\n")
    (out_dir / "provenance.json").write_text(json.dumps(prov, indent=2, default=str) + "\n")
    return frame
