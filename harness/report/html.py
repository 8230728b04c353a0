"""The head-to-head report: one self-contained HTML page (inline CSS and JS, figures as data URIs)
with the tables, the statistics, the figures and the provenance; plus the statistics as CSV and the
tables as LaTeX beside it.

Every string that comes from a plugin or a suite (method and data set names, descriptions, configs)
is HTML-escaped, and the page's Content-Security-Policy lets only its own sorting script run.
"""
from __future__ import annotations

import base64
import hashlib
import html
import math
from pathlib import Path
from typing import Any, Iterable

import optuna
import pandas as pd

from harness.metrics import ECE_DEFINITION, column
from harness.report import plots
from harness.report.comparisons import comparisons_markdown, display, round_decisions
from harness.report.latex import ranks_latex, summary_latex
from harness.report.power import NOTES as POWER_NOTES, plan_text
from harness.report.provenance import provenance_items
from harness.report.stats import (
    NO_VARIANCE, RankResult, average_ranks, compared_metrics, methods_text, pairwise_comparisons, sense_of,
)
from harness.report.sweep import write_sweep
from harness.report.tables import _atomic_write, display_sort_keys
from harness.report.continual import STREAM_CAPTION
from harness.report.uncertainty import ood_display, plot_reliability, plot_shift
from harness.robustness import summary_notes

RANKED = ("accuracy", "ece")  # metrics with ranks, Friedman test and CD diagram on the page
PAGE_COMPARED = ("accuracy", "ece")  # pairwise tables shown open; the others are folded


def _label(metric: str) -> str:
    declared = column(metric)
    return declared.label if declared is not None else metric

# Click a header to sort by it (again: reverse). Cells sort by data-v where given, numbers as numbers.
SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      function key(row) {
        var cell = row.cells[col]; if (!cell) return "";
        var v = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
        var n = parseFloat(v);
        return isNaN(n) || !isFinite(v) ? v.toLowerCase() : n;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), c;
        if (typeof x === "number" && typeof y === "number") c = x - y;
        else if (typeof x === "number") c = -1;
        else if (typeof y === "number") c = 1;
        else c = x < y ? -1 : x > y ? 1 : 0;
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
""".strip()

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1400px;
       padding: 1rem 2rem 3rem; color: #1d2430; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 2px solid #d6dbe3; padding-bottom: .2rem; margin-top: 2.2rem; }
nav a { margin-right: 1rem; } .muted { color: #5b6575; font-size: .9rem; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: .86rem; }
th, td { border-bottom: 1px solid #e3e7ee; padding: .28rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f5f9; position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #9aa3b2; }
table.sortable th[aria-sort=ascending]::after { content: " \\2191"; color: #1d2430; }
table.sortable th[aria-sort=descending]::after { content: " \\2193"; color: #1d2430; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.sig td { background: #eef7ee; } tr.fail td { background: #fbeeee; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; height: auto; border: 1px solid #e3e7ee; }
figcaption { font-size: .85rem; color: #5b6575; }
code, pre { background: #f3f5f9; padding: .1rem .3rem; border-radius: 3px; font-size: .85rem; }
pre { padding: .6rem; overflow-x: auto; white-space: pre-wrap; }
details summary { cursor: pointer; font-weight: 600; margin: .5rem 0; }
.scroll { overflow-x: auto; }
""".strip()


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None


def table(frame: pd.DataFrame, sort_keys: pd.DataFrame | None = None, cls: str = "sortable",
          row_classes: Iterable[str] | None = None, numeric: Iterable[str] = ()) -> str:
    """An escaped HTML table; ``sort_keys`` (same shape) gives each cell's sort value."""
    numeric = set(numeric)
    head = "".join(f"<th scope='col'>{esc(c)}</th>" for c in frame.columns)
    classes = list(row_classes) if row_classes is not None else [""] * len(frame)
    body = []
    keys = sort_keys.reset_index(drop=True) if sort_keys is not None else pd.DataFrame()
    for i, (_, r) in enumerate(frame.iterrows()):
        cells = []
        for c in frame.columns:
            attrs = " class='num'" if c in numeric else ""
            key = _num(keys.at[i, c]) if c in keys.columns else None
            if key is not None:
                attrs += f" data-v='{min(max(key, -1e308), 1e308)!r}'"  # ±inf sorts at the ends
            cells.append(f"<td{attrs}>{esc(r[c])}</td>")
        cls_attr = f" class='{esc(classes[i])}'" if classes[i] else ""
        body.append(f"<tr{cls_attr}>" + "".join(cells) + "</tr>")
    return (f"<div class='scroll'><table class='{esc(cls)}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _img(data: bytes, alt: str, caption: str = "") -> str:
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure><img alt='{esc(alt)}' src='{src}'>{cap}</figure>"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-@" else "_" for c in str(name))


def summary_table(summary: pd.DataFrame, shown: pd.DataFrame) -> str:
    """The display frame as a sortable table, each cell sorting by the number it shows."""
    fails = ["fail" if st != "ok" else "" for st in summary["status"]]
    numeric = [c for c in shown.columns if c not in ("data set", "method", "note")]
    return table(shown, display_sort_keys(summary, shown), row_classes=fails, numeric=numeric)


def _p(v: Any) -> str:
    v = _num(v)
    if v is None:
        return "–"
    return "< 0.0001" if v < 1e-4 else f"{v:.4f}"


def _p_eq(v: Any) -> str:
    """``p = 0.0123`` or ``p < 0.0001``."""
    text = _p(v)
    return "p " + (text if text.startswith("<") else "= " + text)


def _stat(v: float) -> str:
    return "∞" if v == math.inf else f"{v:.3f}"


def _signed(v: Any, digits: int, scale: float = 1.0) -> str:
    v = _num(v)
    if v is None:
        return "–"
    if math.isinf(v):
        return "+∞" if v > 0 else "−∞"
    return f"{scale * v:+.{digits}f}"


def comparisons_table(comp: pd.DataFrame, metric: str, provenance: dict[str, Any] | None = None) -> str:
    part = comp[comp["metric"] == metric].reset_index(drop=True)
    declared = column(metric)
    scale, digits = (declared.scale, declared.digits) if declared is not None else (1.0, 4)
    unit = " (pp)" if declared is not None and declared.unit == "%" else ""  # a difference of percentages
    shown = pd.DataFrame({
        "data set": part["dataset"], "method a": part["method_a"], "method b": part["method_b"],
        "pairs": [f"{n} {unit_name}" for n, unit_name in zip(part["n"], part["paired_over"])],
        f"mean a − b{unit}": [_signed(v, digits, scale) for v in part["mean_diff"]],
        "95% CI (paired bootstrap)": [f"[{_signed(lo, digits, scale)}, {_signed(hi, digits, scale)}]"
                                      for lo, hi in zip(part["ci_low"], part["ci_high"])],
        "test": part["test"], "statistic": [_signed(v, 3) for v in part["statistic"]],
        "p": [_p(v) for v in part["p_value"]], "p (Holm)": [_p(v) for v in part["p_holm"]],
        "effect size": [f"{e} {_signed(v, 2)}" if e else "–" for e, v in zip(part["effect_name"], part["effect"])],
        "better (α = 0.05)": part["better"], "note": part["note"],
        f"smallest detectable{unit}": [_abs(v, digits, scale) for v in part["min_detectable"]],
        "seeds needed": ["–" if v != v else f"{int(v):,}" for v in part["seeds_needed"]],
        "in words": [plan_text(r, *display(metric)) for r in part.to_dict("records")],
    })
    rounds = round_decisions(provenance or {}, metric)
    if rounds:
        shown.insert(12, "seed rounds (always-valid)",
                     [rounds.get((r["dataset"], r["method_a"], r["method_b"]), "–") for r in part.to_dict("records")])
    keys = pd.DataFrame({f"mean a − b{unit}": part["mean_diff"], "95% CI (paired bootstrap)": part["ci_low"],
                         "statistic": part["statistic"], "p": part["p_value"], "p (Holm)": part["p_holm"],
                         "effect size": part["effect"], "pairs": part["n"],
                         f"smallest detectable{unit}": part["min_detectable"], "seeds needed": part["seeds_needed"]})
    sig = ["sig" if b not in ("no significant difference", "no test") else "" for b in part["better"]]
    return table(shown, keys, row_classes=sig, numeric=["pairs", f"mean a − b{unit}", "95% CI (paired bootstrap)",
                                                         "statistic", "p", "p (Holm)", "effect size",
                                                         f"smallest detectable{unit}", "seeds needed"])


def _abs(v: Any, digits: int, scale: float = 1.0) -> str:
    v = _num(v)
    return "–" if v is None else f"{scale * v:.{digits}f}"


def ranks_table(res: RankResult) -> str:
    frame = res.ranks.T.copy()
    frame = frame.loc[list(res.average)]
    shown = pd.DataFrame({"method": frame.index, "average rank": [f"{res.average[m]:.2f}" for m in frame.index]})
    keys = pd.DataFrame({"average rank": [res.average[m] for m in frame.index]})
    for ds in frame.columns:
        shown[f"rank on {ds}"] = [f"{v:g}" for v in frame[ds]]
        keys[f"rank on {ds}"] = frame[ds].to_numpy()
    return table(shown, keys, numeric=[c for c in shown.columns if c != "method"])


def friedman_text(res: RankResult) -> str:
    text = (f"Ranked by mean {_label(res.metric)} over seeds per data set "
            f"({sense_of(res.metric)} is better; "
            f"rank 1 = best, ties share the mean rank); {res.n_methods} method{'s' * (res.n_methods != 1)} on "
            f"{res.n_datasets} data set"
            f"{'s' * (res.n_datasets != 1)}.")
    if res.dropped:
        text += f" Left out for lacking a result on every data set: {', '.join(res.dropped)}."
    if res.friedman_p == res.friedman_p:
        text += (f" Friedman test (scipy.stats.friedmanchisquare): χ² = {res.friedman_statistic:.3f}, "
                 f"{_p_eq(res.friedman_p)}; Iman–Davenport F = {_stat(res.iman_davenport_f)}, "
                 f"{_p_eq(res.iman_davenport_p)}. Nemenyi critical difference at α = 0.05: "
                 f"{res.critical_difference:.3f} — two methods whose average ranks differ by at least this much "
                 "differ significantly" + (" (the Friedman test rejects equal ranks, so the post-hoc test applies)."
                                           if res.friedman_p < 0.05 else
                                           "; the Friedman test does not reject equal ranks, so read the diagram "
                                           "with care."))
    elif res.note:
        text += " " + res.note
    return text


def provenance_html(prov: dict[str, Any]) -> str:
    body = "".join(f"<tr><th scope='row'>{esc(k)}</th><td>" + (f"<code>{esc(v)}</code>" if code else esc(v))
                   + "</td></tr>" for k, v, code in provenance_items(prov))
    return f"<table class='provenance'><tbody>{body}</tbody></table>"


def methods_html(per_seed: pd.DataFrame, descriptions: dict[str, dict[str, str]] | None) -> str:
    if per_seed.empty:
        return ""
    descriptions = descriptions or {}
    first = per_seed.drop_duplicates(["dataset", "method"])

    def column(name: str) -> list[str]:
        return first[name].fillna("").astype(str).tolist() if name in first else [""] * len(first)

    names = column("plugin_method")
    shown = pd.DataFrame({
        "data set": column("dataset"), "row": column("method"), "plugin": column("plugin"), "method": names,
        "description": [descriptions.get(m, {}).get("description", "") for m in names],
        "citation": [descriptions.get(m, {}).get("citation", "") for m in names],
        "tuned configuration (re-trained over seeds)": column("config"),
    })
    shown = shown.loc[:, [c for c in shown.columns if (shown[c].astype(str) != "").any()]]
    return table(shown.reset_index(drop=True))


def _figures(summary: pd.DataFrame, rel: pd.DataFrame, shift: pd.DataFrame, ood: pd.DataFrame,
             studies: list[plots.StudyRecord], rank_results: dict[str, RankResult | None], out_dir: Path,
             drawn: dict[str, Path]) -> tuple[dict[str, list[str]], dict[str, Path]]:
    """Every figure as embedded HTML by section, and the PNG files written (those in ``drawn`` are reused)."""
    fig_dir = out_dir / "plots"
    html_by: dict[str, list[str]] = {"overview": [], "reliability": [], "tuning": [], "pareto": [], "ranks": [],
                                     "shift": [], "robustness": [], "stream": []}
    paths: dict[str, Path] = {}

    def add(section: str, fig, name: str, alt: str, caption: str = "") -> None:
        if fig is None:
            return
        path = fig_dir / f"{name}.png"
        html_by[section].append(_img(plots.save_png(fig, path), alt, caption))
        paths[f"plot:{name}"] = path

    add("overview", plots.accuracy_vs_ece(summary), "accuracy_vs_ece", "accuracy against ECE",
        "Each point is a method's mean over seeds; bars are 95 % percentile-bootstrap CIs over seeds.")
    add("overview", plots.accuracy_vs_throughput(summary), "accuracy_vs_throughput", "accuracy against throughput",
        "Throughput on a log scale; accuracy bars are 95 % bootstrap CIs over seeds.")
    for metric, res in rank_results.items():
        add("ranks", plots.cd_diagram(res) if res else None, f"cd_{metric}", f"critical-difference diagram, {metric}",
            "Red bars join methods whose average ranks differ by less than the critical difference.")
    if not rel.empty:
        for ds in dict.fromkeys(rel["dataset"]):
            path = drawn.get(f"reliability_png:{ds}")
            if path is None or not path.is_file():
                path = out_dir / f"reliability_{_safe(ds)}.png"  # where the uncertainty tables put it
                plot_reliability(rel, path, ds, summary)
            html_by["reliability"].append(_img(path.read_bytes(), f"reliability diagrams, {ds}",
                                               f"{ds}: pooled over seeds; {ECE_DEFINITION}."))
            paths[f"reliability_png:{ds}"] = path
    for ds in dict.fromkeys(summary["dataset"]) if "dataset" in summary else ():
        add("robustness", plots.accuracy_vs_eps(summary, ds), f"robustness_{_safe(ds)}", f"accuracy against ε, {ds}",
            f"{ds}: test accuracy under L∞ PGD (solid) and FGSM (dashed) against ε on the data's scale; ε 0 is "
            "the clean test split; bars are 95 % bootstrap CIs over seeds. Rows without a differentiable view "
            "of their model are left out (see the notes under the summary table).")
    for ds in dict.fromkeys(shift["dataset"]) if not shift.empty else ():
        path = drawn.get(f"shift_png:{ds}")
        if path is None or not path.is_file():
            path = out_dir / f"shift_{_safe(ds)}.png"
            plot_shift(shift, path, ds)
        html_by["shift"].append(_img(path.read_bytes(), f"calibration under shift, {ds}",
                                     f"{ds}: accuracy, ECE and NLL (mean ± std over seeds) on shifted copies of the "
                                     "test split; intensity 0 is the clean split."))
        paths[f"shift_png:{ds}"] = path
    for key, path in drawn.items():  # continual streams: the accuracy matrices (harness.report.continual)
        if key.startswith("accuracy_matrix_png:") and path.is_file():
            html_by["stream"].append(_img(path.read_bytes(), f"accuracy matrix, {key.split(':', 1)[1]}",
                                          STREAM_CAPTION))
            paths[key] = path
    if not ood.empty:
        shown, keys = ood_display(ood)
        html_by["shift"].append("<h3>Out-of-distribution detection</h3><p class='muted'>AUROC (mean ± std over seeds) "
                                "of telling each OOD set from the test split by an uncertainty score; 0.5 is chance."
                                "</p>" + table(shown, keys, numeric=[*keys.columns, "seeds"]))
    for ds in dict.fromkeys(r.dataset for r in studies):
        add("tuning", plots.optimisation_history(studies, ds), f"history_{_safe(ds)}", f"optimisation history, {ds}",
            f"{ds}: objective of every trial on the validation split and the best so far; the star is the trial "
            "re-trained over seeds.")
        importances = {r.method: plots.param_importances(r.study) for r in studies if r.dataset == ds}
        trials = {r.method: len(r.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
                  for r in studies if r.dataset == ds}
        add("tuning", plots.importance_figure(importances, ds, trials), f"importance_{_safe(ds)}",
            f"parameter importance, {ds}", "fANOVA importance (optuna.importance, seed 0) of each parameter for the "
            "objective; methods with fewer than 2 completed trials or nothing tuned are left out.")
    for rec in studies:
        if len(rec.study.directions) < 2:
            continue
        existing = out_dir / f"pareto_{_safe(rec.dataset)}_{_safe(rec.method)}.png"
        caption = (f"{rec.dataset} · {rec.method}: validation objectives of every trial; red: the Pareto front; "
                   "star: the trial re-trained over seeds.")
        if existing.is_file():
            html_by["pareto"].append(_img(existing.read_bytes(), f"Pareto front, {rec.dataset} {rec.method}", caption))
        else:
            add("pareto", plots.pareto_figure(rec), f"pareto_{_safe(rec.dataset)}_{_safe(rec.method)}",
                f"Pareto front, {rec.dataset} {rec.method}", caption)
    return html_by, paths


def method_descriptions(registry) -> dict[str, dict[str, str]]:
    """Each registered method's description and citation, for the page's method table."""
    return {name: {"description": m.info.description, "citation": m.info.citation}
            for name, m in registry.methods.items()}


def write_report(out_dir: Path, *, per_seed: pd.DataFrame, summary: pd.DataFrame, shown: pd.DataFrame,
                 reliability: pd.DataFrame, shift: pd.DataFrame, ood: pd.DataFrame, provenance: dict[str, Any],
                 title: str, studies: list[plots.StudyRecord] | None = None, html_path: Path | None = None,
                 descriptions: dict[str, dict[str, str]] | None = None,
                 drawn: dict[str, Path] | None = None) -> dict[str, Path]:
    """Write the statistics (``comparisons.csv``, ``ranks.csv``), LaTeX tables (``summary.tex``,
    ``ranks_<metric>.tex``), the figures (``plots/``) and the page (``html_path``, default
    ``out_dir/index.html``) from the frames :func:`harness.report.pipeline.build` made.
    ``descriptions`` maps a plugin's method name to its description and citation; ``drawn`` holds the
    reliability and shift figures already written, which are embedded as they are rather than drawn twice."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = Path(html_path) if html_path else out_dir / "index.html"
    studies = studies or []
    comp = pairwise_comparisons(per_seed) if not per_seed.empty else pd.DataFrame()
    ranked = {m: average_ranks(per_seed, m) for m in compared_metrics()} if not per_seed.empty else {}
    paths: dict[str, Path] = {"comparisons_csv": out_dir / "comparisons.csv", "ranks_csv": out_dir / "ranks.csv",
                              "summary_tex": out_dir / "summary.tex", "html": html_path}
    _atomic_write(paths["comparisons_csv"], comp.to_csv(index=False))
    paths["comparisons_md"] = out_dir / "comparisons.md"
    _atomic_write(paths["comparisons_md"], comparisons_markdown(comp, provenance, title, methods_text(per_seed)))
    _atomic_write(paths["ranks_csv"], _ranks_frame(ranked).to_csv(index=False))
    if not summary.empty:
        _atomic_write(paths["summary_tex"], summary_latex(summary))
    else:
        del paths["summary_tex"]
    for metric, res in ranked.items():
        if res is not None and metric in RANKED and res.n_datasets >= 2:
            paths[f"ranks_tex:{metric}"] = out_dir / f"ranks_{metric}.tex"
            _atomic_write(paths[f"ranks_tex:{metric}"], ranks_latex(res, label=f"tab:ranks-{metric}"))
    figures, fig_paths = _figures(summary, reliability, shift, ood, studies, {m: ranked.get(m) for m in RANKED},
                                  out_dir, drawn or {})
    paths.update(fig_paths)
    sweep_paths, sweep_figures = write_sweep(out_dir, per_seed, summary)
    paths.update(sweep_paths)
    figures["sweep"] = [_img(png, f"training-size sweep, {name}", f"{name}: test accuracy and ECE against the "
                             "number of labelled training examples; bars are 95 % bootstrap CIs over seeds. Table "
                             "and paired differences: sweep.md.") for name, png in sweep_figures]
    page = render_page(title, provenance, per_seed, summary, shown, comp, ranked, figures, descriptions)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(html_path, page)
    return paths


def _ranks_frame(ranked: dict[str, RankResult | None]) -> pd.DataFrame:
    out = []
    for metric, res in ranked.items():
        if res is None:
            continue
        for method, avg in res.average.items():
            out.append({"metric": metric, "method": method, "average_rank": avg, "datasets": res.n_datasets,
                        **{f"rank:{ds}": res.ranks.loc[ds, method] for ds in res.ranks.index},
                        "friedman_chi2": res.friedman_statistic, "friedman_p": res.friedman_p,
                        "iman_davenport_f": res.iman_davenport_f, "iman_davenport_p": res.iman_davenport_p,
                        "critical_difference": res.critical_difference})
    return pd.DataFrame(out)


def render_page(title: str, provenance: dict[str, Any], per_seed: pd.DataFrame, summary: pd.DataFrame,
                shown: pd.DataFrame, comp: pd.DataFrame, ranked: dict[str, RankResult | None], figures: dict[str, list[str]],
                descriptions: dict[str, dict[str, str]] | None = None) -> str:
    """The page as one string: nothing in it is fetched from anywhere."""
    sections: list[tuple[str, str, str]] = []
    n_rows = 0 if summary.empty else len(summary)
    if summary.empty:
        sections.append(("summary", "Summary", "<p>No results stored yet.</p>"))
    else:
        sections.append(("summary", "Summary", (
            f"<p class='muted'>Test split: mean ± std over seeds of the configuration tuned on validation; "
            f"95 % CI: percentile bootstrap of the mean over seeds. {esc(ECE_DEFINITION)}. {n_rows} rows. "
            "Click a column header to sort.</p>" + summary_table(summary, shown)
            + "".join(f"<p class='muted'>{esc(n)}</p>" for n in summary_notes(summary.to_dict("records"))))))
    stat_parts = [f"<p>{esc(methods_text(per_seed))}</p>"]
    compared = per_seed.loc[per_seed["status"] == "ok", "method"].nunique() if "status" in per_seed else 0
    if compared < 2:
        stat_parts = ["<p>Fewer than two methods have results: there is nothing to compare head to head.</p>"]
    for metric in RANKED if compared >= 2 else ():
        res = ranked.get(metric)
        if res is None:
            continue
        stat_parts.append(f"<h3>Average ranks: {esc(_label(metric))}</h3><p>{esc(friedman_text(res))}</p>"
                          + ranks_table(res))
        cd = [f for f in figures["ranks"] if f"critical-difference diagram, {metric}" in f]
        stat_parts.extend(cd)
    if not comp.empty:
        for metric in compared_metrics(comp["metric"]):
            if metric not in set(comp["metric"]):
                continue
            body = comparisons_table(comp, metric, provenance)
            if (comp.loc[comp["metric"] == metric, "note"] == NO_VARIANCE).any():
                body += ("<p class='muted'>“No test”: both methods gave the same result on every seed (e.g. a "
                         "deterministic method on fixed splits), so the difference is the same on every pair and "
                         "the seeds carry no evidence about it beyond its size.</p>")
            body += f"<p class='muted'>{esc(POWER_NOTES)}</p>"
            head = f"Pairwise comparisons: {esc(_label(metric))} ({sense_of(metric)} is better)"
            if metric in PAGE_COMPARED:
                stat_parts.append(f"<h3>{head}</h3>" + body)
            else:
                stat_parts.append(f"<details><summary>{head}</summary>{body}</details>")
    sections.append(("statistics", "Statistics", "".join(stat_parts)))
    fig_html = "".join(figures["overview"])
    if figures["reliability"]:
        fig_html += "<h3>Reliability diagrams</h3>" + "".join(figures["reliability"])
    if figures["stream"]:
        fig_html += "<h3>Accuracy matrices (continual streams)</h3>" + "".join(figures["stream"])
    if fig_html:
        sections.append(("plots", "Plots", fig_html))
    if figures.get("sweep"):
        sections.append(("sweep", "Training size", "".join(figures["sweep"])))
    if figures["shift"]:
        sections.append(("shift", "Shift and OOD", "".join(figures["shift"])))
    if figures["robustness"]:
        sections.append(("robustness", "Robustness", "".join(figures["robustness"])))
    if figures["tuning"]:
        sections.append(("tuning", "Tuning", "".join(figures["tuning"])))
    if figures["pareto"]:
        sections.append(("pareto", "Pareto fronts", "<p class='muted'>Multi-objective studies: every completed "
                         "trial on the validation split.</p>" + "".join(figures["pareto"])))
    methods = methods_html(per_seed, descriptions)
    if methods:
        sections.append(("methods", "Methods", methods))
    if not per_seed.empty:
        keep = [c for c in per_seed.columns if c not in ("config",) and per_seed[c].notna().any()]
        seeds = per_seed[keep].copy()
        for c in seeds.columns:
            if pd.api.types.is_float_dtype(seeds[c]):
                seeds[c] = seeds[c].map(lambda v: "" if v != v else f"{v:.6g}")
        seeds = seeds.astype(object).fillna("")  # integer columns with a gap (a FAIL row's seed) too
        classes = ["fail" if s != "ok" else "" for s in per_seed["status"]]
        sections.append(("seeds", "Per seed", f"<details><summary>{len(per_seed)} per-seed rows</summary>"
                         + table(seeds, per_seed[keep], row_classes=classes) + "</details>"))
    sections.append(("provenance", "Provenance", provenance_html(provenance)))

    nav = "".join(f"<a href='#{sid}'>{esc(name)}</a>" for sid, name, _ in sections)
    body = "".join(f"<section id='{sid}'><h2>{esc(name)}</h2>{content}</section>" for sid, name, content in sections)
    script_hash = base64.b64encode(hashlib.sha256(SORT_JS.encode()).digest()).decode()
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'; "
           "base-uri 'none'; form-action 'none'")
    made = esc(provenance.get("finished_at") or provenance.get("started_at") or "")
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{csp}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='icon' href='data:,'>"
        f"<title>{esc(title)} · harness report</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p class='muted'>harness head-to-head report"
        + (f" · {made}" if made else "")
        + (f" · commit <code>{esc(provenance['git_commit'])}</code>" if provenance.get("git_commit") else "")
        + f"</p><nav>{nav}</nav></header><main>{body}</main>"
        f"<script>{SORT_JS}</script></body></html>\n"
    )


__all__ = ["write_report", "render_page", "method_descriptions", "table", "esc"]
