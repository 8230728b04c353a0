"""Uncertainty reports built from the stored per-seed results: reliability diagrams, calibration
under shift, out-of-distribution detection. Each is a CSV, a Markdown table and (where it is a
picture) a PNG beside the main tables; each is written only when some row has the data.

* ``reliability.csv`` / ``reliability_<data set>.png``: accuracy and mean confidence per ECE bin with
  the bin counts, per seed and pooled over seeds (``seed = all``); calibrated rows also carry the
  bins of their uncalibrated probabilities (``probabilities = uncalibrated``).
* ``shift.csv`` / ``shift.md`` / ``shift_<data set>.png``: accuracy, ECE, NLL (mean ± std over seeds)
  per shift and intensity; intensity 0 is the clean test split.
* ``ood.csv`` / ``ood.md``: AUROC of each uncertainty score per OOD set.
* ``calibration.md``: in-distribution ECE and NLL with their 95 % CIs over seeds, before and after
  temperature scaling, mean entropy and mutual information (written when a row has any of these
  beyond entropy, or shift results).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from harness.metrics import ECE_BINS, ECE_DEFINITION
from harness.report.tables import _atomic_write, aggregate, per_seed_frame, to_markdown
from harness.shift import SHIFT_UNITS

SHIFT_METRICS = ("accuracy", "ece", "nll", "brier", "entropy", "mutual_information", "ece_uncalibrated",
                 "nll_uncalibrated")
OOD_SCORES = ("entropy", "max_prob", "mutual_information")


def _ok(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == "ok"]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-@" else "_" for c in name)


def reliability_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per (data set, method, probabilities, seed, bin); ``seed = "all"`` pools the seeds
    (counts summed, confidence and accuracy averaged with the counts as weights)."""
    out = []
    for r in _ok(rows):
        for kind, key in (("as scored", "reliability"), ("uncalibrated", "reliability_uncalibrated")):
            bins = r.get(key)
            if not bins:
                continue
            k = len(bins["count"])
            for b in range(k):
                out.append({"dataset": r["dataset"], "method": r["method"], "probabilities": kind,
                            "seed": str(r["seed"]), "bin": b, "lower": b / k, "upper": (b + 1) / k,
                            "count": int(bins["count"][b]),
                            "confidence": np.nan if bins["confidence"][b] is None else bins["confidence"][b],
                            "accuracy": np.nan if bins["accuracy"][b] is None else bins["accuracy"][b]})
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    pooled = []
    for keys, g in frame.groupby(["dataset", "method", "probabilities", "bin"], sort=False):
        n = g["count"].sum()
        w = g["count"].to_numpy(float)
        pooled.append({**dict(zip(["dataset", "method", "probabilities", "bin"], keys)), "seed": "all",
                       "lower": g["lower"].iloc[0], "upper": g["upper"].iloc[0], "count": int(n),
                       "confidence": float(np.nansum(g["confidence"].to_numpy() * w) / n) if n else np.nan,
                       "accuracy": float(np.nansum(g["accuracy"].to_numpy() * w) / n) if n else np.nan})
    return pd.concat([frame, pd.DataFrame(pooled)], ignore_index=True)


def _ece(g: pd.DataFrame) -> float:
    n = g["count"].sum()
    filled = g[g["count"] > 0]
    return float((filled["count"] / n * (filled["accuracy"] - filled["confidence"]).abs()).sum()) if n else np.nan


def plot_reliability(frame: pd.DataFrame, path: Path, dataset: str) -> None:
    """Reliability diagrams of one data set, one panel per method (pooled over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = frame[(frame["dataset"] == dataset) & (frame["seed"] == "all")]
    methods = list(dict.fromkeys(data["method"]))
    cols = min(4, len(methods))
    rows = -(-len(methods) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.6 * rows), squeeze=False)
    for ax, method in zip(axes.flat, methods):
        g = data[(data["method"] == method) & (data["probabilities"] == "as scored")]
        width = float(g["upper"].iloc[0] - g["lower"].iloc[0])
        centres = (g["lower"] + g["upper"]).to_numpy() / 2
        ax.bar(centres, g["accuracy"].fillna(0), width=width, edgecolor="black", linewidth=0.5,
               color="tab:blue", label="accuracy")
        ax.bar(centres, (g["confidence"] - g["accuracy"]).fillna(0), bottom=g["accuracy"].fillna(0), width=width,
               facecolor="none", edgecolor="tab:red", hatch="//", linewidth=0.5, label="gap to confidence")
        unc = data[(data["method"] == method) & (data["probabilities"] == "uncalibrated")]
        title = f"{method}\nECE {_ece(g):.3f}"
        if not unc.empty:
            ax.step((unc["lower"] + unc["upper"]).to_numpy() / 2, unc["accuracy"], where="mid", color="black",
                    linestyle=":", label="before calibration")
            title += f" (before {_ece(unc):.3f})"
        ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
        counts = ax.twinx()
        counts.bar(centres, g["count"], width=width * 0.35, color="gray", alpha=0.5)
        counts.set_ylabel("examples", fontsize=7)
        counts.tick_params(labelsize=7)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
        ax.set_title(title, fontsize=9)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{dataset}: reliability (pooled over seeds; grey bars: examples per bin)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def shift_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Mean and std over seeds of every metric per (data set, method, shift, intensity); each method
    with shift results also gets its clean test metrics as ``shift = none``, intensity 0."""
    long = []
    for r in _ok(rows):
        if not r.get("shift"):
            continue
        base = {"dataset": r["dataset"], "method": r["method"], "seed": r["seed"]}
        long.append({**base, "shift": "none", "intensity": 0.0, **{m: r.get(m) for m in SHIFT_METRICS}})
        for s in r["shift"]:
            long.append({**base, "shift": s["shift"], "intensity": float(s["intensity"]),
                         **{m: s.get(m) for m in SHIFT_METRICS}})
    frame = pd.DataFrame(long)
    if frame.empty:
        return frame
    out = []
    for keys, g in frame.groupby(["dataset", "method", "shift", "intensity"], sort=False):
        row = {**dict(zip(["dataset", "method", "shift", "intensity"], keys)), "seeds": len(g)}
        for m in SHIFT_METRICS:
            vals = pd.to_numeric(g[m], errors="coerce").to_numpy(float)
            if np.isnan(vals).all():
                continue
            row[f"{m}_mean"] = float(np.nanmean(vals))
            row[f"{m}_std"] = float(np.nanstd(vals, ddof=1)) if len(vals) > 1 else 0.0
        out.append(row)
    return pd.DataFrame(out)


def _pm(r: pd.Series, m: str, digits: int = 3, scale: float = 1.0) -> str:
    mean, std = r.get(f"{m}_mean"), r.get(f"{m}_std")
    if mean is None or mean != mean:
        return ""
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def shift_markdown(frame: pd.DataFrame) -> str:
    shown = pd.DataFrame([{
        "data set": r["dataset"], "method": r["method"], "shift": r["shift"],
        "intensity": f"{r['intensity']:g}", "accuracy %": _pm(r, "accuracy", 2, 100), "ECE": _pm(r, "ece"),
        "NLL": _pm(r, "nll"), "entropy": _pm(r, "entropy"), "ECE before TS": _pm(r, "ece_uncalibrated"),
        "NLL before TS": _pm(r, "nll_uncalibrated"), "seeds": int(r["seeds"]),
    } for _, r in frame.iterrows()])
    shown = shown.loc[:, [c for c in shown.columns if (shown[c] != "").any()]]
    units = ", ".join(f"{k}: {v}" for k, v in SHIFT_UNITS.items())
    return ("# Calibration under shift\n\nMean ± std over seeds on shifted copies of the test split "
            f"(intensity: {units}; `none` is the clean test split). {ECE_DEFINITION}. Rows with a "
            "temperature use the one fitted on the clean validation split.\n\n" + to_markdown(shown))


def plot_shift(frame: pd.DataFrame, path: Path, dataset: str) -> None:
    """Accuracy, ECE and NLL against intensity, one column per shift, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = frame[frame["dataset"] == dataset]
    shifts = [s for s in dict.fromkeys(data["shift"]) if s != "none"]
    metrics = (("accuracy", "accuracy"), ("ece", "ECE"), ("nll", "NLL"))
    fig, axes = plt.subplots(len(metrics), len(shifts), figsize=(3.6 * len(shifts), 2.8 * len(metrics)),
                             squeeze=False)
    for j, shift in enumerate(shifts):
        for method in dict.fromkeys(data["method"]):
            g = data[(data["method"] == method) & data["shift"].isin([shift, "none"])].sort_values("intensity")
            for i, (m, label) in enumerate(metrics):
                ax = axes[i][j]
                ax.errorbar(g["intensity"], g[f"{m}_mean"], yerr=g[f"{m}_std"], marker="o", markersize=3,
                            capsize=2, label=method)
                ax.set_ylabel(label)
        for i in range(len(metrics)):
            axes[i][j].grid(alpha=0.3)
        axes[0][j].set_title(shift)
        axes[-1][j].set_xlabel(SHIFT_UNITS.get(shift, "intensity"))
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{dataset}: calibration under shift (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ood_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Mean and std over seeds of each AUROC per (data set, method, OOD set)."""
    long = []
    for r in _ok(rows):
        for name, scores in (r.get("ood") or {}).items():
            long.append({"dataset": r["dataset"], "method": r["method"], "ood_set": name, **scores})
    frame = pd.DataFrame(long)
    if frame.empty:
        return frame
    out = []
    for keys, g in frame.groupby(["dataset", "method", "ood_set"], sort=False):
        row = {**dict(zip(["dataset", "method", "ood_set"], keys)), "seeds": len(g)}
        for s in OOD_SCORES:
            col = f"auroc_{s}"
            if col in g and g[col].notna().any():
                vals = g[col].astype(float).to_numpy()
                row[f"{col}_mean"] = float(np.nanmean(vals))
                row[f"{col}_std"] = float(np.nanstd(vals, ddof=1)) if len(vals) > 1 else 0.0
        out.append(row)
    return pd.DataFrame(out)


def ood_markdown(frame: pd.DataFrame) -> str:
    shown = pd.DataFrame([{
        "data set": r["dataset"], "method": r["method"], "OOD set": r["ood_set"],
        "AUROC entropy": _pm(r, "auroc_entropy"), "AUROC 1 − max p": _pm(r, "auroc_max_prob"),
        "AUROC mutual information": _pm(r, "auroc_mutual_information"), "seeds": int(r["seeds"]),
    } for _, r in frame.iterrows()])
    return ("# Out-of-distribution detection\n\nAUROC (mean ± std over seeds) of telling the OOD set "
            "from the test split by each uncertainty score (higher score = more likely OOD; 0.5 is "
            "chance). OOD sets are made from the test images: `rotate90` (turned on their side), "
            "`noise` (uniform noise images), `permuted` (each image's pixels shuffled).\n\n" + to_markdown(shown))


def _ci(r: pd.Series, m: str) -> str:
    if f"{m}_mean" not in r or r[f"{m}_mean"] != r[f"{m}_mean"]:
        return ""
    return f"{r[f'{m}_mean']:.4f} [{r[f'{m}_ci_low']:.4f}, {r[f'{m}_ci_high']:.4f}]"


def calibration_markdown(rows: list[dict[str, Any]]) -> str:
    """In-distribution calibration per row, every figure with its 95 % bootstrap CI over seeds."""
    summary = aggregate(per_seed_frame(rows))
    summary = summary[summary["status"] == "ok"]
    shown = pd.DataFrame([{
        "data set": r["dataset"], "method": r["method"], "accuracy": _ci(r, "accuracy"), "ECE": _ci(r, "ece"),
        "NLL": _ci(r, "nll"), "ECE before TS": _ci(r, "ece_uncalibrated"), "NLL before TS": _ci(r, "nll_uncalibrated"),
        "T": _ci(r, "temperature"), "entropy": _ci(r, "entropy"), "mutual information": _ci(r, "mutual_information"),
        "seeds": int(r["seeds"]),
    } for _, r in summary.iterrows()])
    shown = shown.loc[:, [c for c in shown.columns if (shown[c] != "").any()]]
    return ("# In-distribution calibration\n\nMean [95 % percentile-bootstrap CI over seeds] on the test "
            f"split. {ECE_DEFINITION}. `before TS`: the same predictions before temperature scaling "
            "(T fitted on the validation split by NLL). Entropy and mutual information in nats.\n\n"
            + to_markdown(shown))


def write_uncertainty_reports(rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """Write every uncertainty report the stored rows have data for; return their paths."""
    paths: dict[str, Path] = {}
    if any(k in r for r in _ok(rows) for k in ("mutual_information", "temperature", "shift", "ood")):
        paths["calibration_md"] = out_dir / "calibration.md"
        _atomic_write(paths["calibration_md"], calibration_markdown(rows))
    rel = reliability_frame(rows)
    if not rel.empty:
        paths["reliability_csv"] = out_dir / "reliability.csv"
        _atomic_write(paths["reliability_csv"], rel.to_csv(index=False))
        for ds in dict.fromkeys(rel["dataset"]):
            paths[f"reliability_png:{ds}"] = out_dir / f"reliability_{_safe(ds)}.png"
            plot_reliability(rel, paths[f"reliability_png:{ds}"], ds)
    shift = shift_frame(rows)
    if not shift.empty:
        paths["shift_csv"] = out_dir / "shift.csv"
        paths["shift_md"] = out_dir / "shift.md"
        _atomic_write(paths["shift_csv"], shift.to_csv(index=False))
        _atomic_write(paths["shift_md"], shift_markdown(shift))
        for ds in dict.fromkeys(shift["dataset"]):
            paths[f"shift_png:{ds}"] = out_dir / f"shift_{_safe(ds)}.png"
            plot_shift(shift, paths[f"shift_png:{ds}"], ds)
    ood = ood_frame(rows)
    if not ood.empty:
        paths["ood_csv"] = out_dir / "ood.csv"
        paths["ood_md"] = out_dir / "ood.md"
        _atomic_write(paths["ood_csv"], ood.to_csv(index=False))
        _atomic_write(paths["ood_md"], ood_markdown(ood))
    return paths


__all__ = ["write_uncertainty_reports", "reliability_frame", "shift_frame", "ood_frame", "ECE_BINS"]
