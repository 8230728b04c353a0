"""The one report pipeline, used by ``harness run`` and ``harness report``: rows in, every frame built
once, then every writer and the terminal table fed from those frames.

    report = build(rows, provenance, studies=studies, title="default")
    paths = report.write(out_dir)          # per_seed.csv, summary.*, provenance.json, uncertainty
                                           # reports, statistics, LaTeX, figures, index.html
    console.print(report.terminal_table())
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import pandas as pd
from rich.table import Table

from harness.report.continual import write_stream_figures
from harness.report.tables import aggregate, display_frame, per_seed_frame, write_tables
from harness.report.uncertainty import ood_frame, reliability_frame, shift_frame, write_uncertainty_reports

if TYPE_CHECKING:
    from harness.report.plots import StudyRecord

# Columns whose text must stay on one line in a terminal (a method name split in two reads as two rows).
NO_WRAP = ("data set", "method")


@dataclass
class Report:
    """Everything one report shows, computed once from the per-seed rows."""

    title: str
    provenance: dict[str, Any]
    rows: list[dict[str, Any]]  # as collected from the storage
    per_seed: pd.DataFrame      # one row per (data set, method, seed)
    summary: pd.DataFrame       # mean, std and CI over seeds per (data set, method)
    shown: pd.DataFrame         # the summary as people read it
    reliability: pd.DataFrame   # per-bin reliability, per seed and pooled
    shift: pd.DataFrame         # metrics under shift per intensity
    ood: pd.DataFrame           # OOD-detection AUROC per OOD set
    studies: list[StudyRecord] = field(default_factory=list)
    descriptions: dict[str, dict[str, str]] = field(default_factory=dict)

    def write(self, out_dir: Path, html_path: Path | None = None) -> dict[str, Path]:
        """Write every table, report and the page into ``out_dir`` (the page to ``html_path`` if
        given); return the paths by name (``summary_md``, ``html``, ``reliability_png:<data set>``, …)."""
        from harness.report.html import write_report  # matplotlib loads only when a report is written

        out_dir = Path(out_dir)
        paths = write_tables(out_dir, self.per_seed, self.summary, self.shown, self.provenance, self.title)
        paths.update(write_uncertainty_reports(out_dir, self.summary, self.reliability, self.shift, self.ood))
        paths.update(write_stream_figures(out_dir, self.rows))
        paths.update(write_report(
            out_dir, per_seed=self.per_seed, summary=self.summary, shown=self.shown, reliability=self.reliability,
            shift=self.shift, ood=self.ood, provenance=self.provenance, title=self.title, studies=self.studies,
            html_path=html_path, descriptions=self.descriptions, drawn=paths,
        ))
        return paths

    def seed_lines(self, metric: str = "accuracy", all_pairs: int = 6) -> list[str]:
        """How many seeds each difference in ``metric`` needs, one sentence per comparison. A data set
        with more than ``all_pairs`` comparisons keeps those against its best row (by mean
        ``metric``): the terminal stays short, and comparisons.md has every pair."""
        from harness.report.comparisons import terminal_lines
        from harness.report.stats import pairwise_comparisons, sense_of

        if self.per_seed.empty:
            return []
        sense = sense_of(metric)
        comp = pairwise_comparisons(self.per_seed, {metric: sense})
        if comp is None or comp.empty or metric not in self.per_seed:
            return terminal_lines(comp, metric)
        keep = []
        for dataset, part in comp.groupby("dataset", sort=False):
            part = part[part["metric"] == metric]
            if len(part) > all_pairs:
                rows = self.per_seed[self.per_seed["dataset"] == dataset]
                if rows.empty:  # the comparison over all data sets: the best mean over all of them
                    rows = self.per_seed
                means = rows.groupby("method")[metric].mean().dropna()
                if not means.empty:
                    best = means.idxmax() if sense == "higher" else means.idxmin()
                    part = part[(part["method_a"] == best) | (part["method_b"] == best)]
            keep.append(part)
        return terminal_lines(pd.concat(keep) if keep else comp.iloc[:0], metric)

    def terminal_table(self) -> Table:
        """The summary as a rich table; data set and method names never break over two lines."""
        table = Table(title=f"{self.title}: test split, mean ± std over seeds")
        for col in self.shown.columns:
            if col in NO_WRAP:
                table.add_column(str(col), no_wrap=True)
            else:
                table.add_column(str(col), overflow="fold")
        for _, r in self.shown.iterrows():
            table.add_row(*[str(v) for v in r.tolist()])
        return table


def build(rows: Iterable[dict[str, Any]], provenance: dict[str, Any], *, studies: list[StudyRecord] | None = None,
          title: str = "", descriptions: dict[str, dict[str, str]] | None = None) -> Report:
    """Build every frame of the report from the per-seed rows (as :func:`harness.report.collect.collect_rows`
    returns them) once. ``descriptions`` maps a plugin's method name to its description and citation."""
    rows = list(rows)
    per_seed = per_seed_frame(rows)
    summary = aggregate(per_seed)
    shown = display_frame(summary) if not summary.empty else pd.DataFrame()
    return Report(
        title=title or provenance.get("suite", "") or "harness results", provenance=provenance, rows=rows,
        per_seed=per_seed, summary=summary, shown=shown, reliability=reliability_frame(rows),
        shift=shift_frame(rows), ood=ood_frame(rows), studies=list(studies or []), descriptions=dict(descriptions or {}),
    )


__all__ = ["Report", "build"]
