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

Labels, directions and formats come from :mod:`harness.metrics`; the ECE in a reliability diagram's
title is the summary's (mean over seeds), the same number as in the tables.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from harness.metrics import COLUMNS, ECE_BINS, ECE_DEFINITION, all_metrics, column
from harness.report.tables import _atomic_write, nan_mean_std, to_markdown
from harness.shift import SHIFT_UNITS

# Beside every registered metric, the shift tables carry these where rows have them.
SHIFT_EXTRA = ("entropy", "mutual_information", "ece_uncalibrated", "nll_uncalibrated")
SHIFT_SHOWN = ("accuracy", "ece", "nll", "entropy", "ece_uncalibrated", "nll_uncalibrated")
SHIFT_PLOTTED = ("accuracy", "ece", "nll")
CALIBRATION_SHOWN = ("accuracy", "ece", "nll", "ece_uncalibrated", "nll_uncalibrated", "temperature", "entropy",
                     "mutual_information")
# OOD uncertainty scores (higher = more likely out of distribution) and how a heading names them.
OOD_SCORES = {"entropy": "entropy", "max_prob": "1 − max p", "mutual_information": "mutual information"}


def shift_metrics() -> tuple[str, ...]:
    return (*(m.name for m in all_metrics()), *SHIFT_EXTRA)


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


def plot_reliability(frame: pd.DataFrame, path: Path, dataset: str, summary: pd.DataFrame) -> None:
    """Reliability diagrams of one data set, one panel per method (bins pooled over seeds); each
    title gives the method's ECE from ``summary`` (mean over seeds), as the tables do."""
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
        scored = summary[(summary["dataset"] == dataset) & (summary["method"] == method)]
        ece = column("ece")
        title = method
        if not scored.empty and "ece_mean" in scored:
            title += f"\n{ece.label} {ece.format(scored['ece_mean'].iloc[0])}"
        if not unc.empty:
            ax.step((unc["lower"] + unc["upper"]).to_numpy() / 2, unc["accuracy"], where="mid", color="black",
                    linestyle=":", label="before calibration")
            if not scored.empty and "ece_uncalibrated_mean" in scored:
                title += f" (before {ece.format(scored['ece_uncalibrated_mean'].iloc[0])})"
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
    fig.suptitle(f"{dataset}: reliability (bins pooled over seeds, ECE mean over seeds; grey bars: examples "
                 "per bin)", fontsize=10)
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
        long.append({**base, "shift": "none", "intensity": 0.0, **{m: r.get(m) for m in shift_metrics()}})
        for s in r["shift"]:
            long.append({**base, "shift": s["shift"], "intensity": float(s["intensity"]),
                         **{m: s.get(m) for m in shift_metrics()}})
    frame = pd.DataFrame(long)
    if frame.empty:
        return frame
    out = []
    for keys, g in frame.groupby(["dataset", "method", "shift", "intensity"], sort=False):
        row = {**dict(zip(["dataset", "method", "shift", "intensity"], keys)), "seeds": len(g)}
        for m in shift_metrics():
            vals = pd.to_numeric(g[m], errors="coerce").to_numpy(float)
            if np.isnan(vals).all():
                continue
            row[f"{m}_mean"], row[f"{m}_std"] = nan_mean_std(vals)
        out.append(row)
    return pd.DataFrame(out)


def _pm(r: pd.Series, name: str) -> str:
    """``mean ± std`` of a row's column in its declared format; empty where the row lacks it."""
    mean, std = r.get(f"{name}_mean"), r.get(f"{name}_std")
    if mean is None or mean != mean:
        return ""
    return column(name).format_pm(mean, std)


def shift_markdown(frame: pd.DataFrame) -> str:
    shown = pd.DataFrame([{
        "data set": r["dataset"], "method": r["method"], "shift": r["shift"], "intensity": f"{r['intensity']:g}",
        **{column(m).heading: _pm(r, m) for m in SHIFT_SHOWN}, "seeds": int(r["seeds"]),
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
    metrics = [column(m) for m in SHIFT_PLOTTED]
    fig, axes = plt.subplots(len(metrics), len(shifts), figsize=(3.6 * len(shifts), 2.8 * len(metrics)),
                             squeeze=False)
    for j, shift in enumerate(shifts):
        for method in dict.fromkeys(data["method"]):
            g = data[(data["method"] == method) & data["shift"].isin([shift, "none"])].sort_values("intensity")
            for i, m in enumerate(metrics):
                ax = axes[i][j]
                ax.errorbar(g["intensity"], m.scale * g[f"{m.name}_mean"], yerr=m.scale * g[f"{m.name}_std"],
                            marker="o", markersize=3, capsize=2, label=method)
                ax.set_ylabel(m.heading)
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
                row[f"{col}_mean"], row[f"{col}_std"] = nan_mean_std(vals)
        out.append(row)
    return pd.DataFrame(out)


def ood_display(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The OOD table as people read it, and the number each AUROC cell sorts by."""
    auroc = COLUMNS["ood_auroc"]
    scores = [s for s in OOD_SCORES if f"auroc_{s}_mean" in frame]
    shown = pd.DataFrame({"data set": frame["dataset"], "method": frame["method"], "OOD set": frame["ood_set"],
                          **{f"{auroc.label} {OOD_SCORES[s]}": [auroc.format_pm(m, sd) for m, sd in
                                                                zip(frame[f"auroc_{s}_mean"], frame[f"auroc_{s}_std"])]
                             for s in scores}, "seeds": frame["seeds"]})
    keys = pd.DataFrame({f"{auroc.label} {OOD_SCORES[s]}": frame[f"auroc_{s}_mean"] for s in scores})
    return shown, keys


def ood_markdown(frame: pd.DataFrame) -> str:
    return ("# Out-of-distribution detection\n\nAUROC (mean ± std over seeds) of telling the OOD set "
            "from the test split by each uncertainty score (higher score = more likely OOD; 0.5 is "
            "chance). OOD sets are made from the test images: `rotate90` (turned on their side), "
            "`noise` (uniform noise images), `permuted` (each image's pixels shuffled).\n\n"
            + to_markdown(ood_display(frame)[0]))


def _ci(r: pd.Series, name: str) -> str:
    if f"{name}_mean" not in r or r[f"{name}_mean"] != r[f"{name}_mean"]:
        return ""
    c = column(name)
    return f"{c.format(r[f'{name}_mean'])} {c.format_ci(r[f'{name}_ci_low'], r[f'{name}_ci_high'])}"


def calibration_markdown(summary: pd.DataFrame) -> str:
    """In-distribution calibration per row, every figure with its 95 % bootstrap CI over seeds."""
    summary = summary[summary["status"] == "ok"]
    shown = pd.DataFrame([{
        "data set": r["dataset"], "method": r["method"], **{column(m).heading: _ci(r, m) for m in CALIBRATION_SHOWN},
        "seeds": int(r["seeds"]),
    } for _, r in summary.iterrows()])
    shown = shown.loc[:, [c for c in shown.columns if (shown[c] != "").any()]]
    return ("# In-distribution calibration\n\nMean [95 % percentile-bootstrap CI over seeds] on the test "
            f"split. {ECE_DEFINITION}. `before TS`: the same predictions before temperature scaling "
            "(T fitted on the validation split by NLL). Entropy and mutual information in nats.\n\n"
            + to_markdown(shown))


def write_uncertainty_reports(out_dir: Path, summary: pd.DataFrame, reliability: pd.DataFrame,
                              shift: pd.DataFrame, ood: pd.DataFrame) -> dict[str, Path]:
    """Write every uncertainty report the prebuilt frames have data for; return their paths."""
    paths: dict[str, Path] = {}
    if any(f"{c}_mean" in summary for c in ("mutual_information", "temperature")) or not shift.empty or not ood.empty:
        paths["calibration_md"] = out_dir / "calibration.md"
        _atomic_write(paths["calibration_md"], calibration_markdown(summary))
    if not reliability.empty:
        paths["reliability_csv"] = out_dir / "reliability.csv"
        _atomic_write(paths["reliability_csv"], reliability.to_csv(index=False))
        for ds in dict.fromkeys(reliability["dataset"]):
            paths[f"reliability_png:{ds}"] = out_dir / f"reliability_{_safe(ds)}.png"
            plot_reliability(reliability, paths[f"reliability_png:{ds}"], ds, summary)
    if not shift.empty:
        paths["shift_csv"] = out_dir / "shift.csv"
        paths["shift_md"] = out_dir / "shift.md"
        _atomic_write(paths["shift_csv"], shift.to_csv(index=False))
        _atomic_write(paths["shift_md"], shift_markdown(shift))
        for ds in dict.fromkeys(shift["dataset"]):
            paths[f"shift_png:{ds}"] = out_dir / f"shift_{_safe(ds)}.png"
            plot_shift(shift, paths[f"shift_png:{ds}"], ds)
    if not ood.empty:
        paths["ood_csv"] = out_dir / "ood.csv"
        paths["ood_md"] = out_dir / "ood.md"
        _atomic_write(paths["ood_csv"], ood.to_csv(index=False))
        _atomic_write(paths["ood_md"], ood_markdown(ood))
    return paths


__all__ = ["write_uncertainty_reports", "reliability_frame", "shift_frame", "ood_frame", "ood_display", "ECE_BINS"]
