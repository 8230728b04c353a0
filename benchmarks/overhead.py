"""What the harness costs over a hand-written PyTorch loop, in train samples per second.

The same network, data, batch size, optimiser, schedule and epochs are trained (a) by a plain loop
written out below and (b) through the harness: the ``erm`` plugin's ``fit`` over the shared
toolkit, called by the core's seed re-run (``harness.phases.final.run_seed``), which also times it,
counts parameters and scores the test split. Both loops evaluate validation accuracy once per
epoch (the harness uses it for early stopping, best-weight restoring and pruning). Runs are
interleaved (hand, harness, hand, ...) so drifts in machine load hit both alike; the ratio is
harness ÷ hand, per workload, as the median over repeats.

    python benchmarks/overhead.py                 # CPU here; on a GPU machine add --device cuda
    python benchmarks/overhead.py --device cuda --compile   # both loops under torch.compile

On CUDA both loops run under bf16 autocast with the data on the device. ``--compile``: the hand loop
compiles its model, the harness its training step (``--compile`` of ``harness run``); the compilation
falls in the warm-up run, not in the timed ones.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from harness.data import load_task
from harness.phases import FinalSettings, PhaseSettings, run_seed
from harness.plugins import load_plugins
from harness.report.provenance import gather, now
from harness.report.tables import to_markdown
from harness.toolkit.models import create_model

WORKLOADS = {
    # name: (data set, config for erm)
    "cnn-mnist5k": ("mnist5k", {"model": "cnn", "width": 32, "batchnorm": True, "dropout": 0.0, "optimizer": "adamw",
                                "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 128, "grad_clip": 0.0, "augment": "none"}),
    "mlp-digits": ("digits", {"model": "mlp", "hidden": 256, "batchnorm": True, "dropout": 0.0, "optimizer": "adamw",
                              "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 64, "grad_clip": 0.0, "augment": "none"}),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hand_written(task, config: dict, epochs: int, seed: int, device: torch.device, compile: bool = False) -> float:
    """A plain loop: build the model, then shuffle, slice batches, forward, backward, step, and take
    the validation accuracy once per epoch."""
    sync(device)
    start = time.perf_counter()  # like the harness's fit time, this includes building the model
    torch.manual_seed(seed)
    kwargs = {"hidden": config["hidden"]} if config["model"] == "mlp" else {"width": config["width"]}
    model = create_model(config["model"], task, batchnorm=config["batchnorm"], dropout=config["dropout"], **kwargs).to(device)
    if compile:
        model = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    x, y = task.train.x, task.train.y
    bs = config["batch_size"]
    steps = len(x) // bs + (len(x) % bs >= 2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps * epochs)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), device=device)
        for i in range(steps):
            idx = perm[i * bs:(i + 1) * bs]
            with amp:
                loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad(), amp:
            (model(task.val.x).argmax(1) == task.val.y).float().mean().item()
    sync(device)
    return len(x) * epochs / (time.perf_counter() - start)


def through_harness(method, task, config: dict, epochs: int, seed: int, device: torch.device,
                    compile: bool = False) -> float:
    phase = PhaseSettings(epochs=epochs, device=device, compile=compile)
    row = run_seed(method, task, config, seed, FinalSettings(seeds=[seed], phase=phase))
    return row["train_samples_per_s"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workloads", nargs="*", default=list(WORKLOADS))
    p.add_argument("--compile", action="store_true", help="torch.compile the hand loop's model and the harness's step")
    p.add_argument("--out", default="results/overhead")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    registry = load_plugins()
    erm = registry.method("erm")
    rows = []
    for name in args.workloads:
        dataset, config = WORKLOADS[name]
        task = load_task(registry, dataset, device=device)
        hand_written(task, config, 1, 0, device, args.compile)  # warm-up: allocator, kernels, caches, compilation
        through_harness(erm, task, config, 1, 0, device, args.compile)
        for r in range(args.repeats):
            hand = hand_written(task, config, args.epochs, r, device, args.compile)
            harness = through_harness(erm, task, config, args.epochs, r, device, args.compile)
            rows.append({"workload": name, "repeat": r, "hand_samples_per_s": hand,
                         "harness_samples_per_s": harness, "ratio": harness / hand})
            print(f"{name} repeat {r}: hand {hand:,.0f}/s  harness {harness:,.0f}/s  ratio {harness / hand:.3f}",
                  flush=True)
    frame = pd.DataFrame(rows)
    summary = frame.groupby("workload", sort=False).agg(
        hand_samples_per_s=("hand_samples_per_s", "median"), harness_samples_per_s=("harness_samples_per_s", "median"),
        ratio_median=("ratio", "median"), ratio_min=("ratio", "min"), ratio_max=("ratio", "max"),
        repeats=("ratio", "size")).reset_index()
    out = Path(args.out) / device.type
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "overhead_runs.csv", index=False)
    summary.to_csv(out / "overhead.csv", index=False)
    prov = gather(device=device, epochs=args.epochs, repeats=args.repeats, workloads=WORKLOADS, compile=args.compile,
                  precision="bf16 autocast" if device.type == "cuda" else "fp32", finished_at=now())
    shown = summary.round({"hand_samples_per_s": 0, "harness_samples_per_s": 0, "ratio_median": 3, "ratio_min": 3,
                           "ratio_max": 3})
    (out / "overhead.md").write_text(
        f"# Harness overhead on {device.type}{' with torch.compile' if args.compile else ''}\n\nTrain samples/s, median over {args.repeats} interleaved repeats of "
        f"{args.epochs} epochs; ratio = harness ÷ hand-written loop.\n\n" + to_markdown(shown)
        + f"\n- command: `{prov['command']}`\n- git commit: `{prov['git_commit']}`\n- hardware: {prov['hardware']}\n")
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str) + "\n")
    print(to_markdown(shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
