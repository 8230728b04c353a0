"""The accuracy matrices of continual streams (:mod:`harness.tasks.stream`) as heat-maps.

``R[i][j]``: accuracy on experience *j*'s test split after training on experience *i*, averaged
over seeds; one panel per method, one figure per data set (``accuracy_matrix_<data set>.png``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np

STREAM_CAPTION = ("R[i][j]: test accuracy on experience j (columns) after training on experience i (rows), "
                  "mean over seeds; below the diagonal is what was remembered, the last row gives the average "
                  "accuracy.")


def mean_matrices(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """Seed-averaged accuracy matrices by data set and method, from the stored per-seed rows."""
    found: dict[str, dict[str, list[np.ndarray]]] = {}
    for r in rows:
        matrix = r.get("accuracy_matrix")
        if r.get("status") == "ok" and matrix:
            found.setdefault(str(r["dataset"]), {}).setdefault(str(r["method"]), []).append(np.asarray(matrix, float))
    return {ds: {m: np.mean(ms, axis=0) for m, ms in by.items()} for ds, by in found.items()}


def write_stream_figures(out_dir: Path, rows: Iterable[dict[str, Any]]) -> dict[str, Path]:
    """One heat-map figure per data set with streams; their paths by ``accuracy_matrix_png:<data set>``."""
    matrices = mean_matrices(rows)
    if not matrices:
        return {}

    from harness.report.plots import plt  # matplotlib with the Agg backend, loaded only when drawing

    paths = {}
    for ds, by_method in matrices.items():
        n = len(by_method)
        cols = min(n, 3)
        rows_ = -(-n // cols)
        fig, axes = plt.subplots(rows_, cols, figsize=(3.6 * cols, 3.3 * rows_), squeeze=False)
        for ax in axes.flat[n:]:
            ax.axis("off")
        for ax, (method, m) in zip(axes.flat, by_method.items()):
            ax.imshow(m * 100, vmin=0, vmax=100, cmap="viridis")
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    ax.text(j, i, f"{100 * m[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] < 0.6 else "black")
            ax.set(title=method, xlabel="evaluated on experience", ylabel="after experience",
                   xticks=range(m.shape[1]), yticks=range(m.shape[0]))
        fig.suptitle(f"{ds}: accuracy matrix (%)", fontsize=10)
        fig.tight_layout()
        path = Path(out_dir) / f"accuracy_matrix_{re.sub(r'[^A-Za-z0-9_.-]+', '_', ds)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths[f"accuracy_matrix_png:{ds}"] = path
    return paths
