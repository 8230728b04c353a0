"""Per-seed and aggregate tables, written as CSV, Markdown and HTML with their provenance."""
from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from harness.metrics import ECE_DEFINITION
from harness.report.stats import bootstrap_ci

METRICS = ("accuracy", "ece", "nll", "brier")
LOWER_IS_BETTER = {"ece", "nll", "brier"}
THROUGHPUT = ("train_samples_per_s", "infer_samples_per_s")
# Aggregated like the headline metrics where rows have them (harness.evaluate: uncertainty, calibration).
UNCERTAINTY = ("entropy", "mutual_information", "ece_uncalibrated", "nll_uncalibrated", "brier_uncalibrated",
               "temperature")
NESTED = ("reliability", "reliability_uncalibrated", "shift", "ood")  # reported by harness.report.uncertainty
PER_SEED_COLUMNS = (
    "dataset", "method", "seed", "status", "reason", *METRICS, *THROUGHPUT, "fit_s", "infer_s",
    "params_total", "params_trainable", "trainable_fraction", "peak_mem_mb", "wall_s",
    "n_train", "n_val", "n_test", "n_unlabeled", "val_accuracy", "best_trial",
    "trials_complete", "trials_pruned", "trials_failed", "plugin", "plugin_method", "config",
)


def per_seed_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per (data set, method, seed); extra columns a method recorded come last."""
    rows = [dict(r) for r in rows]
    for r in rows:
        for key in NESTED:
            r.pop(key, None)
        if isinstance(r.get("config"), dict):
            r["config"] = json.dumps(r["config"], sort_keys=True)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(PER_SEED_COLUMNS))
    cols = [c for c in PER_SEED_COLUMNS if c in frame.columns]
    extra = sorted(c for c in frame.columns if c not in cols and c != "suite")
    return frame[cols + extra]


def aggregate(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and 95 % bootstrap CI over seeds of every metric, per (data set, method)."""
    out = []
    if per_seed.empty:
        return pd.DataFrame()
    for (dataset, method), group in per_seed.groupby(["dataset", "method"], sort=False):
        ok = group[group["status"] == "ok"]
        row: dict[str, Any] = {"dataset": dataset, "method": method, "seeds": len(ok),
                               "failed_seeds": int((group["status"] != "ok").sum())}
        if ok.empty:
            reasons = group.get("reason")
            row["status"] = "FAIL"
            row["reason"] = str(reasons.dropna().iloc[0]) if reasons is not None and reasons.notna().any() else "failed"
            out.append(row)
            continue
        row["status"] = "ok"
        numeric = [c for c in ok.columns if c.startswith("extra_") and pd.api.types.is_numeric_dtype(ok[c])]
        present = [c for c in UNCERTAINTY if c in ok.columns and ok[c].notna().any()]
        for m in (*METRICS, *present, *numeric):
            vals = ok[m].astype(float).to_numpy()
            lo, hi = bootstrap_ci(vals)
            row[f"{m}_mean"] = float(np.nanmean(vals))
            row[f"{m}_std"] = float(np.nanstd(vals, ddof=1)) if len(vals) > 1 else 0.0
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = lo, hi
        for c in (*THROUGHPUT, "params_total", "params_trainable", "trainable_fraction", "peak_mem_mb", "fit_s", "wall_s"):
            if c in ok.columns:
                row[c] = float(ok[c].astype(float).mean())
        for c in ("n_train", "n_val", "n_test", "n_unlabeled", "trials_complete", "trials_pruned", "trials_failed",
                  "val_accuracy", "config"):
            if c in ok.columns:
                row[c] = ok[c].iloc[0]
        out.append(row)
    return pd.DataFrame(out)


def _fmt(v: float, digits: int) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _count(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    v = float(v)
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if v >= div:
            return f"{v / div:.1f}{unit}"
    return f"{v:.0f}"


def display_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The aggregate table as people read it: accuracy in %, mean ± std, CI, throughput."""
    rows = []
    for _, r in summary.iterrows():
        if r.get("status") != "ok":
            rows.append({"data set": r["dataset"], "method": r["method"], "accuracy %": "FAIL",
                         "note": str(r.get("reason", ""))[:120]})
            continue
        acc = lambda k: 100 * r[k]  # noqa: E731
        row = {
            "data set": r["dataset"],
            "method": r["method"],
            "accuracy %": f"{acc('accuracy_mean'):.2f} ± {acc('accuracy_std'):.2f}",
            "95% CI": f"[{acc('accuracy_ci_low'):.2f}, {acc('accuracy_ci_high'):.2f}]",
            "ECE": f"{_fmt(r['ece_mean'], 4)} ± {_fmt(r['ece_std'], 4)}",
            "NLL": f"{_fmt(r['nll_mean'], 4)} ± {_fmt(r['nll_std'], 4)}",
            "Brier": f"{_fmt(r['brier_mean'], 4)} ± {_fmt(r['brier_std'], 4)}",
            "train samples/s": _count(r.get("train_samples_per_s")),
            "infer samples/s": _count(r.get("infer_samples_per_s")),
            "params": _count(r.get("params_total")),
            "trainable": _count(r.get("params_trainable")),
            "trained %": _fmt(100 * r["trainable_fraction"], 1) if r.get("trainable_fraction") == r.get("trainable_fraction") else "–",
            "seeds": int(r["seeds"]),
        }
        for c, label in (("entropy", "entropy"), ("mutual_information", "MI"), ("ece_uncalibrated", "ECE before TS"),
                         ("nll_uncalibrated", "NLL before TS"), ("temperature", "T")):
            if f"{c}_mean" in summary.columns and r[f"{c}_mean"] == r[f"{c}_mean"]:
                row[label] = f"{_fmt(r[f'{c}_mean'], 4)} ± {_fmt(r[f'{c}_std'], 4)}"
        for c in summary.columns:
            if c.startswith("extra_") and c.endswith("_mean") and r[c] == r[c]:
                name = c[len("extra_"):-len("_mean")]
                row[name] = f"{r[c]:.4g} ± {r[c[:-5] + '_std']:.2g}"
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def to_markdown(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in frame.iterrows():
        lines.append("| " + " | ".join(esc(v) for v in r.tolist()) + " |")
    return "\n".join(lines) + "\n"


def provenance_markdown(prov: dict[str, Any]) -> str:
    lines = ["## How this table was made", ""]
    for key in ("command", "git_commit", "started_at", "finished_at", "device", "hardware", "seeds",
                "data_seed", "sampler", "pruner", "budget", "storage"):
        if key in prov:
            lines.append(f"- **{key.replace('_', ' ')}**: `{prov[key]}`")
    if "versions" in prov:
        lines.append("- **versions**: " + ", ".join(f"{k} {v}" for k, v in prov["versions"].items()))
    if prov.get("plugins"):
        lines.append("- **plugins**: " + ", ".join(f"{k} ({v})" for k, v in prov["plugins"].items()))
    for run in prov.get("earlier_runs", ()):
        lines.append(f"- **rows computed by an earlier run** ({', '.join(run['rows'])}): command `{run.get('command')}`, "
                     f"git commit `{run.get('git_commit')}`, finished at `{run.get('finished_at')}`")
    lines.append(f"- **ECE**: {ECE_DEFINITION}; accuracy, ECE, NLL and Brier are mean ± std over seeds, "
                 "CI: 95 % percentile bootstrap of the mean over seeds; Brier is Σ_k (p_k − y_k)² (0–2).")
    lines.append("- **throughput**: train samples/s = examples processed by the training loop / fit wall time "
                 "(validation included); infer samples/s = test examples / evaluate wall time.")
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_tables(rows: list[dict[str, Any]], out_dir: Path, provenance: dict[str, Any], title: str = "") -> dict[str, Path]:
    """Write per-seed and summary tables (CSV, Markdown, HTML) and the provenance into ``out_dir``.

    Every file is written to a temporary name and renamed into place, so an interrupted write never
    leaves a half-written table.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = per_seed_frame(rows)
    summary = aggregate(seeds)
    shown = display_frame(summary) if not summary.empty else pd.DataFrame()
    paths = {
        "per_seed_csv": out_dir / "per_seed.csv",
        "summary_csv": out_dir / "summary.csv",
        "summary_md": out_dir / "summary.md",
        "summary_html": out_dir / "summary.html",
        "provenance_json": out_dir / "provenance.json",
    }
    _atomic_write(paths["per_seed_csv"], seeds.to_csv(index=False))
    _atomic_write(paths["summary_csv"], summary.to_csv(index=False))
    heading = f"# {title or provenance.get('suite', 'results')}\n\n"
    _atomic_write(paths["summary_md"], heading + to_markdown(shown) + "\n" + provenance_markdown(provenance))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        + html.escape(title or "harness results")
        + "</title></head><body>"
        + f"<h1>{html.escape(title or 'harness results')}</h1>"
        + shown.to_html(index=False, escape=True, border=0)
        + "<pre>" + html.escape(provenance_markdown(provenance)) + "</pre></body></html>\n"
    )
    _atomic_write(paths["summary_html"], page)
    _atomic_write(paths["provenance_json"], json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n")
    from harness.report.uncertainty import write_uncertainty_reports  # it builds on this module

    paths.update(write_uncertainty_reports(rows, out_dir))
    return paths
