"""Figures of one network's cross-validation (Angora et al. 2023, Fig. 6): ROC curve, normalised confusion
matrix, and box plots of the per-fold metrics (box Q1-Q3, median line, whiskers Q1 - 1.5 IQR .. Q3 + 1.5 IQR)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lenssearch.io import atomic_path

#: Metrics drawn in the box plot, with the paper's labels (Fig. 6, bottom panel).
BOX_METRICS = {
    "accuracy": "AE",
    "purity_lens": "pur",
    "completeness_lens": "compl",
    "f1_lens": "F1",
    "auc": "AUC",
}


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_roc(roc, auc: float, title: str, path: str | Path) -> Path:
    """The ROC curve (TPR vs FPR) of a table with ``fpr`` and ``tpr`` columns."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot(roc["fpr"], roc["tpr"], lw=1.8, label=f"AUC = {auc:.3f}")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate (completeness)", title=title,
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    _save(fig, Path(path))
    plt.close(fig)
    return Path(path)


def plot_confusion(counts: Mapping[str, int], title: str, path: str | Path) -> Path:
    """The confusion matrix normalised by true class (rows: true non-lens, lens; columns: predicted)."""
    plt = _figure()
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]], dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            colour = "white" if normalised[i, j] > 0.5 else "black"
            ax.text(j, i, f"{normalised[i, j]:.2f}\n({int(matrix[i, j])})", ha="center", va="center", color=colour)
    names = ["non-lens", "lens"]
    ax.set_xticks([0, 1], names)
    ax.set_yticks([0, 1], names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    _save(fig, Path(path))
    plt.close(fig)
    return Path(path)


def plot_fold_boxes(per_fold: Sequence[Mapping[str, float]], title: str, path: str | Path) -> Path:
    """Box plots of the metrics over folds, in percent, whiskers at 1.5 IQR (Angora et al. 2023, Fig. 6)."""
    plt = _figure()
    names = [name for name in BOX_METRICS if all(name in fold for fold in per_fold)]
    data = [100 * np.array([fold[name] for fold in per_fold], dtype=float) for name in names]
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    ax.boxplot(data, whis=1.5, showfliers=True)
    ax.set_xticks(range(1, len(names) + 1), [BOX_METRICS[n] for n in names])
    ax.set(ylabel="[%]", title=title)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, Path(path))
    plt.close(fig)
    return Path(path)
