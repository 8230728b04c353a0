"""Training-size sweeps in a report: a data set run at several label budgets (``mnist5k@10pc``,
``mnist5k@50pc``, ``mnist5k``; see :mod:`harness.sweeps`) shown as one curve per method.

``sweep.csv`` holds accuracy and ECE (mean, 95 % bootstrap CI over seeds) per size and method;
``sweep.md`` that table and, per size, every pair of methods' paired accuracy difference with its
paired-bootstrap CI and test (so "A is ahead at 10 labels per class" reads off one line); the figure
draws both metrics against the number of labelled training examples.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from harness.metrics import column
from harness.report.plots import label, method_colours, save_png
from harness.report.stats import paired_compare
from harness.report.tables import _atomic_write, to_markdown

_BUDGET = re.compile(r"^(?P<base>.+)@(?:(?P<per_class>\d+)pc|(?P<fraction>[0-9.eE-]+))$")
METRICS = ("accuracy", "ece")


def size_of(dataset: str) -> tuple[str, str]:
    """(the data set without its label budget, the budget as people read it): ``mnist5k@10pc`` →
    (``mnist5k``, ``10/class``); a label without a budget is the whole train split, ``all``."""
    match = _BUDGET.match(dataset)
    if match is None:
        return dataset, "all"
    if match["per_class"] is not None:
        return match["base"], f"{match['per_class']}/class"
    return match["base"], f"{float(match['fraction']):g} of train"


def sweep_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (sweep, size, method) of every data set that appears at two or more sizes, smallest
    training split first: ``n_train`` and each metric's mean and CI over seeds."""
    if summary.empty or "n_train" not in summary:
        return pd.DataFrame()
    ok = summary[summary["status"] == "ok"].copy()
    ok[["sweep", "size"]] = [size_of(d) for d in ok["dataset"]] if len(ok) else pd.DataFrame(columns=[0, 1])
    swept = ok.groupby("sweep")["dataset"].transform("nunique") >= 2 if len(ok) else ok["dataset"]
    ok = ok[swept.astype(bool)] if len(ok) else ok
    if ok.empty:
        return pd.DataFrame()
    keep = ["sweep", "size", "dataset", "method", "n_train", "seeds"]
    keep += [f"{m}_{s}" for m in METRICS for s in ("mean", "ci_low", "ci_high") if f"{m}_{s}" in ok]
    ok["n_train"] = pd.to_numeric(ok["n_train"], errors="coerce")
    return ok[keep].sort_values(["sweep", "n_train"], kind="stable").reset_index(drop=True)


def gap_frame(per_seed: pd.DataFrame, sweep: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Per sweep size, every pair of methods (in the order the table first lists them): the paired
    difference a − b of ``metric`` over the seeds both completed, its 95 % paired-bootstrap CI and test."""
    if sweep.empty:
        return pd.DataFrame()
    ok = per_seed[per_seed["status"] == "ok"]
    out: list[dict[str, Any]] = []
    for (name, dataset), group in sweep.groupby(["sweep", "dataset"], sort=False):
        methods = list(dict.fromkeys(group["method"]))
        wide = ok[ok["dataset"] == dataset].pivot_table(index="seed", columns="method", values=metric)
        for i, a in enumerate(methods):
            for b in methods[i + 1:]:
                both = wide[[a, b]].dropna() if {a, b} <= set(wide.columns) else pd.DataFrame(columns=[a, b])
                res = paired_compare(both[a], both[b])
                out.append({"sweep": name, "size": group["size"].iloc[0], "dataset": dataset,
                            "n_train": group["n_train"].iloc[0], "a": a, "b": b, "metric": metric,
                            "seeds": res.n, "mean_diff": res.mean_diff, "ci_low": res.ci_low, "ci_high": res.ci_high,
                            "test": res.test, "p_value": res.p_value,
                            "ci_excludes_zero": bool(res.ci_low > 0 or res.ci_high < 0)})
    return pd.DataFrame(out)


def sweep_figure(sweep: pd.DataFrame, name: str) -> Figure:
    """Accuracy and ECE against labelled training examples (log scale) for sweep ``name``, one line
    per method; bars are 95 % bootstrap CIs over seeds."""
    import matplotlib.pyplot as plt

    rows = sweep[sweep["sweep"] == name]
    metrics = [m for m in METRICS if f"{m}_mean" in rows]
    colours = method_colours(rows["method"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4.2), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        col = column(metric)
        for method, group in rows.groupby("method", sort=False):
            mean = col.scale * group[f"{metric}_mean"]
            err = [col.scale * (group[f"{metric}_mean"] - group[f"{metric}_ci_low"]).clip(lower=0),
                   col.scale * (group[f"{metric}_ci_high"] - group[f"{metric}_mean"]).clip(lower=0)]
            ax.errorbar(group["n_train"], mean, yerr=err, marker="o", capsize=3, color=colours[method],
                        label=label(method))
        ax.set_xscale("log")
        ticks = list(dict.fromkeys(zip(rows["n_train"], rows["size"])))
        ax.set_xticks([n for n, _ in ticks], [f"{n:.0f}\n({size})" for n, size in ticks], fontsize=8)
        ax.minorticks_off()
        ax.set(xlabel="labelled training examples", ylabel=f"test {col.heading} ({col.sense} is better)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"{label(name)}: metrics against training size (mean, 95 % bootstrap CI over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def sweep_markdown(sweep: pd.DataFrame, gaps: pd.DataFrame) -> str:
    """The sweep table and the paired gaps as Markdown."""
    acc, ece = column("accuracy"), column("ece")
    table = pd.DataFrame({
        "sweep": sweep["sweep"], "size": sweep["size"], "train examples": sweep["n_train"].map(lambda n: f"{n:.0f}"),
        "method": sweep["method"], "seeds": sweep["seeds"],
        acc.heading: [acc.format(v) for v in sweep["accuracy_mean"]],
        "95% CI": [acc.format_ci(lo, hi) for lo, hi in zip(sweep["accuracy_ci_low"], sweep["accuracy_ci_high"])],
        ece.heading: [ece.format(v) for v in sweep["ece_mean"]],
        "ECE 95% CI": [ece.format_ci(lo, hi) for lo, hi in zip(sweep["ece_ci_low"], sweep["ece_ci_high"])],
    })
    text = "# Training-size sweep\n\nTest split, mean and 95 % percentile-bootstrap CI over seeds.\n\n" + to_markdown(table)
    if not gaps.empty:
        diffs = pd.DataFrame({
            "sweep": gaps["sweep"], "size": gaps["size"], "a − b": gaps["a"] + " − " + gaps["b"],
            "seeds": gaps["seeds"],
            f"Δ {acc.heading}": [f"{acc.scale * v:+.2f}" for v in gaps["mean_diff"]],
            "95% CI": [f"[{acc.scale * lo:+.2f}, {acc.scale * hi:+.2f}]" for lo, hi in zip(gaps["ci_low"], gaps["ci_high"])],
            "test": gaps["test"], "p": [f"{p:.3g}" if p == p else "–" for p in gaps["p_value"]],
        })
        text += ("\n## Paired accuracy differences per size\n\nSame seeds paired; CI: percentile bootstrap of the "
                 "mean difference.\n\n" + to_markdown(diffs))
    return text


def write_sweep(out_dir: Path, per_seed: pd.DataFrame, summary: pd.DataFrame) -> tuple[dict[str, Path], list[tuple[str, bytes]]]:
    """Write ``sweep.csv``, ``sweep.md`` and ``plots/sweep_<name>.png`` when the report has a sweep;
    return the paths by name and each figure's (sweep name, PNG bytes) for the page."""
    sweep = sweep_frame(summary)
    if sweep.empty:
        return {}, []
    out_dir = Path(out_dir)
    gaps = gap_frame(per_seed, sweep)
    paths = {"sweep_csv": out_dir / "sweep.csv", "sweep_md": out_dir / "sweep.md"}
    _atomic_write(paths["sweep_csv"], sweep.to_csv(index=False))
    _atomic_write(paths["sweep_md"], sweep_markdown(sweep, gaps))
    figures = []
    for name in dict.fromkeys(sweep["sweep"]):
        path = out_dir / "plots" / f"sweep_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        figures.append((name, save_png(sweep_figure(sweep, name), path)))
        paths[f"plot:sweep_{name}"] = path
    return paths, figures


__all__ = ["gap_frame", "size_of", "sweep_figure", "sweep_frame", "sweep_markdown", "write_sweep"]
