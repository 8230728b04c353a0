"""Pareto fronts of multi-objective studies: a CSV, a Markdown table and a scatter plot per study."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from harness import records
from harness.multiobjective import known_objectives
from harness.report.tables import to_markdown


def pareto_frame(study: optuna.Study, objectives: tuple[str, ...], retrained: int | None = None) -> pd.DataFrame:
    """One row per Pareto-optimal trial: its objective values on val and its configuration."""
    rows = []
    for t in sorted(study.best_trials, key=lambda t: t.number):
        row = {"trial": t.number, **dict(zip(objectives, t.values))}
        row["retrained"] = t.number == retrained
        row["config"] = json.dumps(t.user_attrs.get(records.CONFIG, t.params), sort_keys=True)
        rows.append(row)
    return pd.DataFrame(rows, columns=["trial", *objectives, "retrained", "config"])


def write_pareto(study: optuna.Study, objectives: tuple[str, ...], out_dir: Path, stem: str,
                 retrained: int | None = None) -> dict[str, Path]:
    """``<stem>.csv``, ``<stem>.md`` (the front) and ``<stem>.png`` (every trial, front marked)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    front = pareto_frame(study, objectives, retrained)
    paths = {"csv": out_dir / f"{stem}.csv", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    front.to_csv(paths["csv"], index=False)
    known = known_objectives()
    arrows = ", ".join(f"{o} {'↑' if known[o].higher_is_better else '↓'}" for o in objectives if o in known)
    paths["md"].write_text(
        f"# Pareto front: {study.study_name}\n\nValidation objectives ({arrows}); `retrained` marks the trial "
        "re-trained over seeds (the Pareto trial with the best validation accuracy).\n\n"
        + to_markdown(front.round(5))
    )
    _plot(study, objectives, front, paths["png"])
    return paths


def _plot(study: optuna.Study, objectives: tuple[str, ...], front: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    pairs = [(objectives[0], o) for o in objectives[1:]]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.6), squeeze=False)
    for ax, (x, y) in zip(axes[0], pairs):
        ix, iy = objectives.index(x), objectives.index(y)
        ax.scatter([t.values[ix] for t in done], [t.values[iy] for t in done], s=14, c="0.7", label="trials")
        ax.scatter(front[x], front[y], s=26, c="tab:red", label="Pareto front")
        chosen = front[front["retrained"]]
        if not chosen.empty:
            ax.scatter(chosen[x], chosen[y], s=120, marker="*", c="tab:blue", label="re-trained")
        ax.set_xlabel(f"val {x}")
        ax.set_ylabel(f"val {y}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(study.study_name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
