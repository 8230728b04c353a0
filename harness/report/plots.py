"""The report's figures (matplotlib, Agg): accuracy against ECE and throughput, optimisation history,
parameter importance, Pareto fronts and critical-difference diagrams. Each function returns a
figure; :func:`save_png` writes it and returns the PNG bytes for embedding."""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from harness.metrics import column  # noqa: E402
from harness.report.stats import RankResult  # noqa: E402
from harness.robustness import FGSM, ROBUST, attacked_columns, parse_key  # noqa: E402

DPI = 100


def quiet_glyphs() -> None:
    """Names in scripts the plotting font lacks (CJK, Devanagari …) draw as boxes; matplotlib's
    "Glyph … missing from font" warning for each is noise in a report run, so it is silenced."""
    import warnings

    warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from (current )?font", category=UserWarning)
    warnings.filterwarnings("ignore", message=r"Matplotlib currently does not support", category=UserWarning)


quiet_glyphs()


@dataclass
class StudyRecord:
    """A row's tuning study with the harness metadata that names it."""

    suite: str
    dataset: str
    method: str
    study: optuna.Study
    objectives: tuple[str, ...]
    retrained: int | None = None  # the trial re-trained over seeds


def load_studies(storage, suite: str | None = None, wanted: set[tuple[str, str]] | None = None,
                 names: Iterable[str] | None = None) -> list[StudyRecord]:
    """The harness studies of a suite (optionally only the named ones or the wanted (data set, row) pairs)."""
    from harness.report.collect import harness_studies

    names = set(names) if names else None
    out = []
    for summary, meta in harness_studies(storage, suite):
        if names is not None and summary.study_name not in names:
            continue
        if wanted is not None and (meta["dataset"], meta["row"]) not in wanted:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        objectives = tuple(meta.get("objectives") or ("accuracy",) * len(study.directions))
        if len(objectives) != len(study.directions):
            objectives = tuple(f"objective {i}" for i in range(len(study.directions)))
        out.append(StudyRecord(meta["suite"], meta["dataset"], meta["row"], study, objectives,
                               summary.user_attrs.get("best_trial")))
    return out


def label(text: Any) -> str:
    """Text matplotlib draws literally (a ``$`` would otherwise start mathtext)."""
    return str(text).replace("\\", "\\\\").replace("$", r"\$")


def method_colours(methods: Iterable[str]) -> dict[str, Any]:
    """One colour per method, the same in every figure."""
    names = list(dict.fromkeys(methods))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(names)}


def save_png(fig: Figure, path: Path | None = None) -> bytes:
    """Render ``fig`` to PNG (and to ``path`` if given), close it, return the bytes. A figure marked
    ``fig.harness_tight = True`` (text outside its axes) is cropped to what it draws."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight" if getattr(fig, "harness_tight", False) else None)
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two runs on one folder write at once
        tmp.write_bytes(data)
        tmp.replace(path)
    return data


def _ok(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["status"] == "ok"] if "status" in summary else summary.iloc[0:0]


def _panels(n: int, width: float = 5.0, height: float = 4.0, cols: int = 3) -> tuple[Figure, np.ndarray]:
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def _err(r: pd.Series, metric: str, scale: float = 1.0) -> list[list[float]]:
    """Asymmetric error bar (mean − CI low, CI high − mean) for errorbar()."""
    m, lo, hi = r[f"{metric}_mean"], r[f"{metric}_ci_low"], r[f"{metric}_ci_high"]
    return [[scale * max(m - lo, 0.0)], [scale * max(hi - m, 0.0)]]


def accuracy_vs_ece(summary: pd.DataFrame) -> Figure | None:
    """Test accuracy against ECE, one panel per data set, bars = 95 % bootstrap CIs over seeds."""
    ok = _ok(summary)
    ok = ok[ok["ece_mean"].notna()] if "ece_mean" in ok else ok.iloc[0:0]  # task kinds without ECE
    if ok.empty:
        return None
    colours = method_colours(ok["method"])
    datasets = list(dict.fromkeys(ok["dataset"]))
    one = len(datasets) == 1
    fig, axes = _panels(len(datasets), width=7.0 if one else 5.0, height=5.0 if one else 4.0)
    acc, ece = column("accuracy"), column("ece")
    for ax, ds in zip(axes.flat, datasets):
        for _, r in ok[ok["dataset"] == ds].iterrows():
            x, y = ece.scale * r["ece_mean"], acc.scale * r["accuracy_mean"]
            ax.errorbar(x, y, xerr=_err(r, "ece", ece.scale), yerr=_err(r, "accuracy", acc.scale),
                        fmt="o", capsize=3, color=colours[r["method"]], label=label(r["method"]))
            ax.annotate(label(r["method"]), (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set(xlabel=f"{ece.heading} ({ece.sense} is better)", ylabel=f"test {acc.heading} ({acc.sense} is better)",
               title=label(ds))
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle("Accuracy against calibration (mean, 95 % bootstrap CI over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def accuracy_vs_throughput(summary: pd.DataFrame) -> Figure | None:
    """Test accuracy against training and inference samples/s (log scale), one row per data set."""
    ok = _ok(summary)
    cols = [c for c in ("train_samples_per_s", "infer_samples_per_s") if c in ok and ok[c].notna().any()]
    if ok.empty or not cols:
        return None
    colours = method_colours(ok["method"])
    datasets = list(dict.fromkeys(ok["dataset"]))
    fig, axes = plt.subplots(len(datasets), len(cols), figsize=(5.5 * len(cols), 4.0 * len(datasets)), squeeze=False)
    acc = column("accuracy")
    for i, ds in enumerate(datasets):
        for j, col in enumerate(cols):
            ax = axes[i][j]
            for _, r in ok[ok["dataset"] == ds].iterrows():
                if not (r[col] == r[col] and r[col] > 0):
                    continue
                y = acc.scale * r["accuracy_mean"]
                ax.errorbar(r[col], y, yerr=_err(r, "accuracy", acc.scale), fmt="o", capsize=3,
                            color=colours[r["method"]], label=label(r["method"]))
                ax.annotate(label(r["method"]), (r[col], y), fontsize=7, xytext=(4, 4), textcoords="offset points")
            ax.set_xscale("log")
            kind = "training" if col.startswith("train") else "inference"
            ax.set(xlabel=f"{column(col).heading} (log scale)", ylabel=f"test {acc.heading}", title=f"{label(ds)}: {kind}")
            ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle("Accuracy against throughput (mean over seeds; bars: 95 % bootstrap CI of accuracy)", fontsize=10)
    fig.tight_layout()
    return fig


def accuracy_vs_eps(summary: pd.DataFrame, dataset: str) -> Figure | None:
    """Accuracy under PGD (solid) and FGSM (dashed) against ε for every method of ``dataset`` with
    robust accuracy; ε 0 is the clean test accuracy, bars are 95 % bootstrap CIs over seeds."""
    ok = _ok(summary)
    ok = ok[ok["dataset"] == dataset] if not ok.empty else ok
    attacked = attacked_columns(c[:-len("_mean")] for c in ok.columns if c.endswith("_mean"))
    if ok.empty or not attacked:
        return None
    colours = method_colours(ok["method"])
    fig, ax = plt.subplots(figsize=(7.0, 5.0))
    acc = column("accuracy")
    for _, r in ok.iterrows():
        for prefix, style in ((ROBUST, "-"), (FGSM, "--")):
            cols = [c for c in attacked if parse_key(c)[0] == prefix and r[f"{c}_mean"] == r[f"{c}_mean"]]
            if not cols:
                continue
            eps = [0.0] + [parse_key(c)[1] for c in cols]
            keys = ["accuracy"] + cols
            y = [acc.scale * r[f"{k}_mean"] for k in keys]
            err = np.hstack([_err(r, k, acc.scale) for k in keys])
            ax.errorbar(eps, y, yerr=err, fmt="o" + style, capsize=3, color=colours[r["method"]],
                        label=f"{label(r['method'])} ({'PGD' if prefix == ROBUST else 'FGSM'})")
    ax.set(xlabel="ε (L∞, on the data's scale)", ylabel=f"test {acc.heading} under attack", title=label(dataset))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _trial_value(study: optuna.Study, t: optuna.trial.FrozenTrial) -> float:
    """What a trial is plotted by: its objective, or validation accuracy in a multi-objective study."""
    if len(study.directions) == 1:
        return float(t.value)
    from harness.records import val_accuracy

    v = val_accuracy(t)
    return float("nan") if v is None else float(v)


def optimisation_history(records: list[StudyRecord], dataset: str) -> Figure | None:
    """Objective per trial and best so far, one panel per tuned method of a data set (a row whose
    configuration was pinned has no trials and no panel)."""
    recs = [r for r in records if r.dataset == dataset and r.study.get_trials(deepcopy=False)]
    if not recs:
        return None
    fig, axes = _panels(len(recs), width=3.8, height=3.0, cols=4)
    for ax, rec in zip(axes.flat, recs):
        trials = rec.study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        ax.set_title(label(rec.method), fontsize=9)
        ax.set_xlabel("trial", fontsize=8)
        multi = len(rec.study.directions) > 1
        ax.set_ylabel("val accuracy" if multi else f"val {label(rec.objectives[0])}", fontsize=8)
        ax.tick_params(labelsize=7)
        if not done:
            ax.text(0.5, 0.5, "no completed trial", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            continue
        xs = np.array([t.number for t in done])
        ys = np.array([_trial_value(rec.study, t) for t in done])
        ax.scatter(xs, ys, s=12, color="tab:blue", label="completed")
        pruned = [t for t in trials if t.state == TrialState.PRUNED and t.last_step is not None]
        if pruned:
            ax.scatter([t.number for t in pruned], [t.intermediate_values[t.last_step] for t in pruned], s=10,
                       marker="x", color="0.6", label="pruned (last report)")
        maximise = multi or rec.study.direction == optuna.study.StudyDirection.MAXIMIZE
        worst = -np.inf if maximise else np.inf
        best = (np.fmax if maximise else np.fmin).accumulate(np.where(np.isnan(ys), worst, ys))
        last = max(t.number for t in trials)  # carry the best on past the last completed trial
        ax.step(np.append(xs, last), np.append(best, best[-1]), where="post", color="tab:red", label="best so far")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if rec.retrained is not None:
            chosen = [t for t in done if t.number == rec.retrained]
            if chosen:
                ax.scatter([rec.retrained], [_trial_value(rec.study, chosen[0])], s=80, marker="*", color="tab:orange",
                           zorder=3, label="re-trained")
        ax.grid(alpha=0.3)
    with_legend = [ax for ax in axes.flat if ax.get_legend_handles_labels()[0]]
    if with_legend:
        with_legend[0].legend(fontsize=6, loc="lower right")
    fig.suptitle(f"{label(dataset)}: optimisation history on the validation split", fontsize=10)
    fig.tight_layout()
    return fig


def param_importances(study: optuna.Study, seed: int = 0) -> dict[str, float]:
    """fANOVA importance of each tuned parameter (fixed seed); empty where it cannot be computed
    (fewer than 2 completed trials, or no parameter all completed trials share with spread)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2:
        return {}
    target = None if len(study.directions) == 1 else (lambda t: t.values[0])
    try:
        return dict(optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed), target=target))
    except (ValueError, RuntimeError, ZeroDivisionError):
        # Raised for a search space with no parameter shared by every completed trial, or with one
        # distinct value only; there is nothing to attribute the variance to.
        return {}


def importance_figure(importances: dict[str, dict[str, float]], dataset: str,
                      trials: dict[str, int] | None = None) -> Figure | None:
    """Horizontal bars of parameter importance, one panel per method with importances (titled with
    the number of completed trials they rest on, where given)."""
    items = [(m, imp) for m, imp in importances.items() if imp]
    if not items:
        return None
    most = max(len(i) for _, i in items)
    fig, axes = _panels(len(items), width=3.8, height=1.5 + 0.3 * most, cols=4)
    for ax, (method, imp) in zip(axes.flat, items):
        names = list(imp)[::-1]
        ax.barh(range(len(names)), [imp[n] for n in names], height=0.6, color="tab:green")
        ax.set_yticks(range(len(names)), [label(n) for n in names])
        ax.set_ylim(len(names) - most - 0.5, len(names) - 0.5)  # the most important at the top of every panel
        n = (trials or {}).get(method)
        ax.set_title(label(method) + (f" ({n} trials)" if n else ""), fontsize=9)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("importance (fANOVA)", fontsize=8)
    fig.suptitle(f"{label(dataset)}: hyperparameter importance (fANOVA, seed 0, completed trials)", fontsize=10)
    fig.tight_layout()
    return fig


def pareto_figure(rec: StudyRecord) -> Figure | None:
    """Every completed trial and the Pareto front, the first objective against each other one."""
    study = rec.study
    if len(study.directions) < 2:
        return None
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return None
    front = {t.number for t in study.best_trials}
    k = len(study.directions)
    fig, axes = plt.subplots(1, k - 1, figsize=(4.4 * (k - 1), 3.8), squeeze=False)
    arrows = ["↑" if d == optuna.study.StudyDirection.MAXIMIZE else "↓" for d in study.directions]
    for j, ax in enumerate(axes[0], start=1):
        for on_front, colour, size, name in ((False, "0.7", 14, "trials"), (True, "tab:red", 28, "Pareto front")):
            pts = sorted((t.values[0], t.values[j]) for t in done if (t.number in front) == on_front)
            if pts:
                ax.scatter(*zip(*pts), s=size, c=colour, label=name, zorder=2 + on_front)
                if on_front:
                    ax.plot(*zip(*pts), color="tab:red", linewidth=0.8, alpha=0.6)
        chosen = [t for t in done if t.number == rec.retrained]
        if chosen:
            ax.scatter([chosen[0].values[0]], [chosen[0].values[j]], s=140, marker="*", c="tab:blue",
                       label="re-trained", zorder=5)
        ax.set_xlabel(f"val {label(rec.objectives[0])} {arrows[0]}")
        ax.set_ylabel(f"val {label(rec.objectives[j])} {arrows[j]}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{label(rec.dataset)} · {label(rec.method)}: Pareto front on validation", fontsize=10)
    fig.tight_layout()
    return fig


def cd_diagram(result: RankResult) -> Figure | None:
    """Critical-difference diagram: methods on an axis of average rank (1 = best, left), bars join
    methods the Nemenyi test cannot tell apart."""
    if result is None or result.critical_difference != result.critical_difference:
        return None
    names, ranks = list(result.average), list(result.average.values())
    k, cd = len(names), result.critical_difference
    half = math.ceil(k / 2)
    cliques = result.cliques()
    fig, ax = plt.subplots(figsize=(8.5, 1.4 + 0.3 * half + 0.1 * len(cliques)))
    pad = max(1.2, 0.35 * k)
    ax.set_xlim(1 - pad, k + pad)  # rank 1 (best) on the left
    top = 0.0
    ax.hlines(top, 1, k, color="black", linewidth=1)
    for x in range(1, k + 1):
        ax.vlines(x, top, top + 0.08, color="black", linewidth=1)
        ax.text(x, top + 0.12, str(x), ha="center", va="bottom", fontsize=8)
    # CD scale bar above the axis, starting at rank 1.
    ax.hlines(top + 0.45, 1, 1 + cd, color="black", linewidth=1.5)
    ax.vlines([1, 1 + cd], top + 0.4, top + 0.5, color="black", linewidth=1.5)
    ax.text(1 + cd / 2, top + 0.52, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8)
    step = 0.28
    first = 0.3 + 0.1 * len(cliques)
    for i, (name, r) in enumerate(zip(names, ranks)):
        left = i < half
        level = -(first + step * (i if left else k - 1 - i))
        x_end = 1 - 0.3 if left else k + 0.3
        ax.plot([r, r, x_end], [top, level, level], color="black", linewidth=0.8)
        ax.text(x_end - 0.05 if left else x_end + 0.05, level, f"{label(name)} ({r:.2f})",
                ha="right" if left else "left", va="center", fontsize=8)
    for j, group in enumerate(cliques):
        lo, hi = result.average[group[0]], result.average[group[-1]]
        ax.hlines(-0.15 - 0.1 * j, lo - 0.03, hi + 0.03, color="tab:red", linewidth=3)
    bottom = -(first + step * (half - 1)) - 0.15
    ax.set_ylim(bottom, top + 0.75)
    ax.axis("off")
    friedman = f"Friedman p = {result.friedman_p:.3g}" if result.friedman_p == result.friedman_p else ""
    ax.set_title(f"{result.metric}: average rank over {result.n_datasets} data sets "
                 f"(Nemenyi, α = 0.05; {friedman})", fontsize=9)
    fig.harness_tight = True  # method names reach past the axes
    return fig


__all__ = ["StudyRecord", "load_studies", "accuracy_vs_ece", "accuracy_vs_throughput", "optimisation_history",
           "param_importances", "importance_figure", "pareto_figure", "cd_diagram", "save_png", "method_colours"]
