"""LaTeX tables for papers (booktabs): the summary with the best mean per data set in bold, and
the average ranks. Written by hand, so no template engine is needed."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from harness.report.stats import RankResult

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "<": r"\textless{}", ">": r"\textgreater{}"}
# (summary column, header, scale, digits, higher is better)
COLUMNS = (("accuracy", r"Accuracy (\%)", 100.0, 2, True), ("ece", "ECE", 1.0, 4, False),
           ("nll", "NLL", 1.0, 4, False), ("brier", "Brier", 1.0, 4, False))


def escape(text: Any) -> str:
    """``text`` with every LaTeX special character made literal."""
    return "".join(_SPECIAL.get(c, c) for c in str(text))


def _count(v: Any) -> str:
    if v is None or v != v:
        return "--"
    v = float(v)
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if v >= div:
            return f"{v / div:.1f}{unit}"
    return f"{v:.0f}"


def summary_latex(summary: pd.DataFrame, caption: str = "", label: str = "tab:results") -> str:
    """Mean ± std over seeds per (data set, method); the best mean per data set and metric in bold."""
    ok = summary[summary["status"] == "ok"] if "status" in summary else summary.iloc[0:0]
    head = ["Data set", "Method", *(c[1] for c in COLUMNS), "Train/s", "Infer/s", "Seeds"]
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{ll" + "r" * (len(head) - 2) + "}", r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
    for i, (dataset, group) in enumerate(ok.groupby("dataset", sort=False)):
        if i:
            lines.append(r"\midrule")
        best = {}
        for col, _, _, _, higher in COLUMNS:
            vals = group[f"{col}_mean"].astype(float)
            best[col] = vals.max() if higher else vals.min()
        for j, (_, r) in enumerate(group.iterrows()):
            cells = [escape(dataset) if j == 0 else "", escape(r["method"])]
            for col, _, scale, digits, _ in COLUMNS:
                mean, std = float(r[f"{col}_mean"]), float(r[f"{col}_std"])
                if math.isnan(mean):
                    cells.append("--")
                    continue
                text = f"{scale * mean:.{digits}f}"
                if text == f"{scale * best[col]:.{digits}f}":  # ties as printed are all bold
                    text = r"\textbf{" + text + "}"
                cells.append(f"{text} $\\pm$ {scale * std:.{digits}f}")
            cells += [_count(r.get("train_samples_per_s")), _count(r.get("infer_samples_per_s")), str(int(r["seeds"]))]
            lines.append(" & ".join(cells) + r" \\")
    failed = summary[summary["status"] != "ok"] if "status" in summary else summary.iloc[0:0]
    for _, r in failed.iterrows():
        lines.append(" & ".join([escape(r["dataset"]), escape(r["method"]),
                                 r"\multicolumn{" + str(len(head) - 2) + r"}{l}{failed}"]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    text = escape(caption) if caption else (
        "Test split, mean $\\pm$ std over seeds of the configuration tuned on validation; best mean per data "
        "set in bold. ECE: 15 equal-width bins, top label.")
    lines += [r"\caption{" + text + "}",
              r"\label{" + label + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def ranks_latex(result: RankResult, label: str = "tab:ranks") -> str:
    """Average rank per method (1 = best) with the Friedman test and the critical difference."""
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{lr}", r"\toprule",
             r"Method & Average rank \\", r"\midrule"]
    lines += [f"{escape(m)} & {r:.2f} " + r"\\" for m, r in result.average.items()]
    lines += [r"\bottomrule", r"\end{tabular}"]
    text = f"Average rank by {escape(result.metric)} over {result.n_datasets} data sets (1 = best)."
    if result.friedman_p == result.friedman_p:
        text += (f" Friedman $\\chi^2 = {result.friedman_statistic:.2f}$, $p = {result.friedman_p:.3g}$; "
                 f"Nemenyi critical difference {result.critical_difference:.2f} at $\\alpha = 0.05$.")
    lines += [r"\caption{" + text + "}", r"\label{" + label + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


__all__ = ["summary_latex", "ranks_latex", "escape"]
