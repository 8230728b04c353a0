"""The per-seed and summary frames, the display frame people read, and their CSV / Markdown / HTML
files. Which metrics there are, and how each is labelled and printed, comes from
:mod:`harness.metrics`; this module only decides which columns a table has and in what order."""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from harness.metrics import PART_ACCURACY, PART_CI, Column, all_metrics, column
from harness.redaction import redact
from harness.robustness import FLAGS, REASON, attacked_columns, parse_key, summary_notes
from harness.report.provenance import provenance_markdown
from harness.report.stats import bootstrap_ci

THROUGHPUT = ("train_samples_per_s", "infer_samples_per_s")
# Aggregated like the headline metrics where rows have them (harness.evaluate: uncertainty, calibration).
UNCERTAINTY = ("entropy", "mutual_information", "ece_uncalibrated", "nll_uncalibrated", "brier_uncalibrated",
               "temperature")
# Shown in the summary beside the metrics, in this order, where rows have them.
SHOWN_COUNTS = ("train_samples_per_s", "infer_samples_per_s", "params_total", "params_trainable",
                "trainable_fraction")
SHOWN_UNCERTAINTY = ("entropy", "mutual_information", "ece_uncalibrated", "nll_uncalibrated", "temperature")
# The task kinds' own columns (harness.tasks), aggregated and shown like the metrics where rows have them.
TASK_KIND_COLUMNS = ("forgetting", "bwt")
NESTED = ("reliability", "reliability_uncalibrated", "shift", "ood", "accuracy_matrix", "experience_classes")  # reported by harness.report.uncertainty
CI_HEADING = "95% CI"  # of the headline (first registered) metric


def metric_names() -> tuple[str, ...]:
    """The registered metrics' names, the headline (accuracy) first."""
    return tuple(m.name for m in all_metrics())


def per_seed_columns() -> tuple[str, ...]:
    return ("dataset", "method", "seed", "status", "reason", *metric_names(), *THROUGHPUT, "fit_s", "infer_s",
            "params_total", "params_trainable", "trainable_fraction", "peak_mem_mb", "wall_s",
            "n_train", "n_val", "n_test", "n_unlabeled", "val_accuracy", "best_trial",
            "trials_complete", "trials_pruned", "trials_failed", "trials_infra", "plugin", "plugin_method", "config")


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
        return pd.DataFrame(columns=list(per_seed_columns()))
    for key in ("seed", "best_trial"):  # a FAIL row has no seed: keep the column integer, not float
        if key in frame.columns:
            frame[key] = pd.to_numeric(frame[key], errors="coerce").astype("Int64")
    cols = [c for c in per_seed_columns() if c in frame.columns]
    extra = sorted(c for c in frame.columns if c not in cols and c != "suite")
    return frame[cols + extra]


def nan_mean_std(vals: np.ndarray) -> tuple[float, float]:
    """Mean and sample std over the finite values (NaN when none; std 0 for one): what np.nanmean
    and np.nanstd give, without their "Mean of empty slice" / "Degrees of freedom" warnings."""
    finite = vals[~np.isnan(vals)]
    if finite.size == 0:
        return float("nan"), float("nan")
    return float(finite.mean()), float(finite.std(ddof=1)) if finite.size > 1 else 0.0


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
        parts = [c for c in ok.columns if c.startswith((PART_ACCURACY, PART_CI)) and column(c) is not None]
        present = [c for c in (*metric_names(), *attacked_columns(ok.columns), *TASK_KIND_COLUMNS, *parts, *UNCERTAINTY)
                   if c in ok.columns and ok[c].notna().any()]
        for m in (*present, *numeric):
            vals = ok[m].astype(float).to_numpy()
            lo, hi = bootstrap_ci(vals)
            row[f"{m}_mean"], row[f"{m}_std"] = nan_mean_std(vals)
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = lo, hi
        for c in (*THROUGHPUT, "params_total", "params_trainable", "trainable_fraction", "peak_mem_mb", "fit_s", "wall_s"):
            if c in ok.columns:
                row[c] = float(ok[c].astype(float).mean())
        for c in ("n_train", "n_val", "n_test", "n_unlabeled", "trials_complete", "trials_pruned", "trials_failed",
                  "trials_infra", "val_accuracy", "config"):
            if c in ok.columns:
                row[c] = ok[c].iloc[0]
        if REASON in ok.columns and ok[REASON].notna().any():
            row[REASON] = str(ok[REASON].dropna().iloc[0])
        if FLAGS in ok.columns and ok[FLAGS].notna().any():  # flagged, never hidden: every seed's flags
            row[FLAGS] = "; ".join(f"seed {s}: {f}" for s, f in zip(ok["seed"], ok[FLAGS]) if isinstance(f, str))
        out.append(row)
    return pd.DataFrame(out)


def _display_sources(summary: pd.DataFrame) -> list[tuple[str, Column | None, str]]:
    """(heading, declaration, summary column it shows and sorts by) for each column of the display
    frame, in order; ``mean ± std`` columns point at their ``_mean``."""
    cols = summary.columns
    out: list[tuple[str, Column | None, str]] = []
    for i, m in enumerate(all_metrics()):
        if f"{m.name}_mean" in cols:
            out.append((m.heading, m, f"{m.name}_mean"))
            if i == 0:
                out.append((CI_HEADING, m, f"{m.name}_ci_low"))
    attacked = attacked_columns(c[:-len("_mean")] for c in cols if c.endswith("_mean"))
    out += [(column(c).heading, column(c), f"{c}_mean") for c in attacked]
    out += [(column(c).heading, column(c), f"{c}_mean") for c in TASK_KIND_COLUMNS if f"{c}_mean" in cols]
    out += [(column(c[:-5]).heading, column(c[:-5]), c) for c in cols
            if c[:-5].startswith((PART_ACCURACY, PART_CI)) and c.endswith("_mean") and column(c[:-5]) is not None]
    out += [(column(c).heading, column(c), c) for c in SHOWN_COUNTS]
    out.append(("seeds", None, "seeds"))
    out += [(column(c).heading, column(c), f"{c}_mean") for c in SHOWN_UNCERTAINTY if f"{c}_mean" in cols]
    out += [(c[len("extra_"):-len("_mean")], None, c) for c in cols if c.startswith("extra_") and c.endswith("_mean")]
    return out


def display_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The aggregate table as people read it: each metric as mean ± std in its own format, the
    headline metric's CI, throughput and sizes; uncertainty and plugin extras where rows have them."""
    sources = _display_sources(summary)
    headline = all_metrics()[0]
    rows = []
    for _, r in summary.iterrows():
        if r.get("status") != "ok":
            rows.append({"data set": r["dataset"], "method": r["method"], headline.heading: "FAIL",
                         "note": str(r.get("reason", ""))[:120]})
            continue
        row: dict[str, Any] = {"data set": r["dataset"], "method": r["method"]}
        for heading, col, key in sources:
            if heading == CI_HEADING:
                row[heading] = col.format_ci(r[key], r[f"{col.name}_ci_high"])
            elif key == "seeds":
                row[heading] = int(r["seeds"])
            elif key.endswith("_mean"):
                mean, std = r[key], r[key[:-len("_mean")] + "_std"]
                if col is not None and (col.name in [m.name for m in all_metrics()] or parse_key(col.name)):
                    row[heading] = col.format_pm(mean, std)
                elif mean == mean:  # uncertainty and extras only where this row has them
                    row[heading] = col.format_pm(mean, std) if col is not None else f"{mean:.4g} ± {std:.2g}"
            else:
                row[heading] = col.format(r.get(key))
        rows.append(row)
    frame = pd.DataFrame(rows)
    # Columns in the declared order, also those the first rows lack (another task kind's, a plugin's extras).
    declared = ["data set", "method", *(heading for heading, _, _ in sources)]
    frame = frame[[c for c in declared if c in frame.columns] + [c for c in frame.columns if c not in declared]]
    return frame.astype(object).fillna("")  # object first: no pandas fill-value warning


def display_sort_keys(summary: pd.DataFrame, shown: pd.DataFrame) -> pd.DataFrame:
    """The number each cell of ``shown`` (from :func:`display_frame`) sorts by."""
    sources = {heading: key for heading, _, key in _display_sources(summary)}
    return pd.DataFrame({c: summary[sources[c]].to_numpy() if sources.get(c) in summary else [None] * len(summary)
                         for c in shown.columns})


def to_markdown(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in frame.iterrows():
        lines.append("| " + " | ".join(esc(v) for v in r.tolist()) + " |")
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all; a temporary name per process, as two runs on one folder
    (or ``--workers``) may write the same table at once."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_tables(out_dir: Path, per_seed: pd.DataFrame, summary: pd.DataFrame, shown: pd.DataFrame,
                 provenance: dict[str, Any], title: str) -> dict[str, Path]:
    """Write the per-seed and summary tables (CSV, Markdown, HTML) and the provenance into ``out_dir``.

    Every file is written to a temporary name and renamed into place, so an interrupted write never
    leaves a half-written table.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "per_seed_csv": out_dir / "per_seed.csv",
        "summary_csv": out_dir / "summary.csv",
        "summary_md": out_dir / "summary.md",
        "summary_html": out_dir / "summary.html",
        "provenance_json": out_dir / "provenance.json",
    }
    _atomic_write(paths["per_seed_csv"], per_seed.to_csv(index=False))
    _atomic_write(paths["summary_csv"], summary.to_csv(index=False))
    how = provenance_markdown(provenance)
    notes = summary_notes(summary.to_dict("records")) if not summary.empty else []
    if notes:  # under the table, beside the numbers they qualify
        how = "\n".join(f"- {n}" for n in notes) + "\n\n" + how
    _atomic_write(paths["summary_md"], f"# {title}\n\n" + to_markdown(shown) + "\n" + how)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title></head><body>"
        + f"<h1>{html.escape(title)}</h1>"
        + shown.to_html(index=False, escape=True, border=0)
        + "<pre>" + html.escape(how) + "</pre></body></html>\n"
    )
    _atomic_write(paths["summary_html"], page)
    # Masked again here: a run stored by an older version may hold a credential in its command line.
    _atomic_write(paths["provenance_json"], redact(json.dumps(provenance, indent=2, sort_keys=True, default=str)) + "\n")
    return paths
