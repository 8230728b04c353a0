"""Has MAE's pre-training budget plateaued? The curve of one pre-training run, epoch by epoch.

Runs the masked-autoencoder pre-training stage of ``benchmarks/mae.yaml`` once (the ``mae`` method's
default configuration on MNIST-5k with 10 labels per class and the 500-image validation split, one
seed) and records after every epoch the mean training loss and the masked reconstruction loss on
the validation images under one fixed mask; every ``--probe-every`` epochs it also trains the
method's linear probe on a copy of the encoder as it stands and records its validation accuracy.
The cosine schedule is that of the full budget, so the curve is the one the suite's rows were
pre-trained along (not a shorter run's).

    python benchmarks/mae_pretrain_curve.py                  # writes results/mae_pretrain_curve/
    python benchmarks/mae_pretrain_curve.py --epochs 4 --probe-every 2 --out /tmp/curve   # a quick look
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import pandas as pd
import torch

from harness.configs import default_config
from harness.context import FitContext
from harness.data import load_task
from harness.plugins import load_plugins, plugin_distributions
from harness.report.provenance import gather, now
from harness.report.tables import to_markdown
from harness.toolkit.mae import MaskedAutoencoder, pretrain_masked, random_masking
from harness.toolkit.models import network_from_config
from harness.toolkit.pretrain import fit_probe
from harness.toolkit.train import val_accuracy
from harness_plugins.representation.training import pretraining_images


@torch.no_grad()
def held_out_loss(mae: MaskedAutoencoder, x: torch.Tensor, kept: torch.Tensor, mask: torch.Tensor) -> float:
    """The masked reconstruction loss of ``x`` under one fixed mask, in eval mode."""
    was = mae.training
    mae.eval()
    loss = mae.masked_loss(x, kept, mask)[0]
    mae.train(was)
    return float(loss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="pre-training epochs (default: the method's)")
    parser.add_argument("--probe-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/mae_pretrain_curve"))
    args = parser.parse_args(argv)

    registry = load_plugins()
    task = load_task(registry, "mnist5k", labels_per_class=10, val_frac=0.1)
    config = default_config(registry.methods["mae"], task)
    if args.epochs is not None:  # a shorter budget for a quick look, outside the space's grid of 20s
        config["pretrain_epochs"] = args.epochs
    ctx = FitContext(device=torch.device("cpu"), seed=args.seed, phase="final")
    torch.manual_seed(args.seed)
    net = network_from_config(config, task)
    mae = MaskedAutoencoder(net.encoder, task.input_shape[0], float(config["mask_ratio"]),
                            int(config["decoder_dim"]), int(config["decoder_depth"]), bool(config["norm_pix_loss"]))
    x = pretraining_images(task)
    kept, mask = random_masking(len(task.val.x), mae.num_patches(task.val.x), mae.mask_ratio,
                                generator=torch.Generator().manual_seed(1))
    rows: list[dict] = []

    def after_epoch() -> float:
        epoch = len(rows) + 1
        row = {"epoch": epoch, "val_masked_loss": held_out_loss(mae, task.val.x, kept, mask)}
        if epoch % args.probe_every == 0 or epoch == int(config["pretrain_epochs"]):
            with torch.random.fork_rng():  # the probe leaves the pre-training's random stream alone
                probe = network_from_config(config, task)
                probe.encoder = copy.deepcopy(mae.encoder)
                probe_ctx = FitContext(device=ctx.device, seed=args.seed, phase="final")
                fit_probe(probe, task, config, probe_ctx)
                row["probe_val_accuracy"] = 100 * val_accuracy(probe, task.val, probe_ctx)
        rows.append(row)
        print(json.dumps(row), flush=True)
        return -row["val_masked_loss"]

    started = now()
    history = pretrain_masked(mae, x, config, ctx, val_fn=after_epoch)
    frame = pd.DataFrame(rows)
    frame.insert(1, "step", frame["epoch"] * history.steps_per_epoch)
    frame.insert(2, "train_loss", history.loss)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "curve.csv", index=False)
    table = frame.round(4).astype(object).where(frame.notna(), "")  # integers stay integers, gaps blank
    (args.out / "curve.md").write_text(to_markdown(table) + "\n")
    prov = gather(plugin_distributions(registry), device=ctx.device, started_at=started, finished_at=now(),
                  seed=args.seed, config=config, steps_per_epoch=history.steps_per_epoch,
                  seconds=round(history.seconds, 1))
    (args.out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
