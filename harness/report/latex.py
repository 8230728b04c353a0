"""LaTeX tables for papers (booktabs): the summary with the best mean per data set in bold, and
the average ranks. Written by hand, so no template engine is needed."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from harness.metrics import COLUMNS as DECLARED
from harness.metrics import ECE_BINS, Column, all_metrics
from harness.report.stats import RankResult

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "<": r"\textless{}", ">": r"\textgreater{}"}


def escape(text: Any) -> str:
    """``text`` with every LaTeX special character made literal."""
    return "".join(_SPECIAL.get(c, c) for c in str(text))


def header(col: Column) -> str:
    """A column's title in a paper's table: its label in sentence case, the unit in brackets."""
    label = col.label[:1].upper() + col.label[1:]
    return escape(label) + (f" ({escape(col.unit)})" if col.unit else "")


def _cell(col: Column, value: Any) -> str:
    return col.format(value).replace("–", "--")


def summary_latex(summary: pd.DataFrame, caption: str = "", label: str = "tab:results") -> str:
    """Mean ± std over seeds per (data set, method); the best mean per data set and metric in bold."""
    ok = summary[summary["status"] == "ok"] if "status" in summary else summary.iloc[0:0]
    metrics = [m for m in all_metrics() if f"{m.name}_mean" in summary]
    head = ["Data set", "Method", *(header(m) for m in metrics), "Train/s", "Infer/s", "Seeds"]
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{ll" + "r" * (len(head) - 2) + "}", r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
    for i, (dataset, group) in enumerate(ok.groupby("dataset", sort=False)):
        if i:
            lines.append(r"\midrule")
        best = {}
        for m in metrics:
            vals = group[f"{m.name}_mean"].astype(float)
            best[m.name] = vals.max() if m.higher_is_better else vals.min()
        for j, (_, r) in enumerate(group.iterrows()):
            cells = [escape(dataset) if j == 0 else "", escape(r["method"])]
            for m in metrics:
                mean, std = float(r[f"{m.name}_mean"]), float(r[f"{m.name}_std"])
                if math.isnan(mean):
                    cells.append("--")
                    continue
                text = m.format(mean)
                if text == m.format(best[m.name]):  # ties as printed are all bold
                    text = r"\textbf{" + text + "}"
                cells.append(f"{text} $\\pm$ {m.format(std)}")
            cells += [_cell(DECLARED["train_samples_per_s"], r.get("train_samples_per_s")),
                      _cell(DECLARED["infer_samples_per_s"], r.get("infer_samples_per_s")), str(int(r["seeds"]))]
            lines.append(" & ".join(cells) + r" \\")
    failed = summary[summary["status"] != "ok"] if "status" in summary else summary.iloc[0:0]
    for _, r in failed.iterrows():
        lines.append(" & ".join([escape(r["dataset"]), escape(r["method"]),
                                 r"\multicolumn{" + str(len(head) - 2) + r"}{l}{failed}"]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    text = escape(caption) if caption else (
        "Test split, mean $\\pm$ std over seeds of the configuration tuned on validation; best mean per data "
        f"set in bold. ECE: {ECE_BINS} equal-width bins, top label.")
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
