"""Classification metrics of Angora et al. (2023, Sect. 4.1), computed with scikit-learn.

Lenses (label 1) are the positive class. At a probability threshold (0.5 unless told), for each class: purity
(precision), completeness (recall) and F1 (their harmonic mean); over both: the accuracy ("average efficiency");
threshold-free: the area under the ROC curve. Fold-to-fold fluctuations are summarised as in the paper's
Table A.2: median, first and third quartiles and the inter-quartile range.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

#: Metric names, in the order of the paper's tables.
METRIC_NAMES: tuple[str, ...] = (
    "accuracy",
    "purity_lens",
    "completeness_lens",
    "f1_lens",
    "purity_nonlens",
    "completeness_nonlens",
    "f1_nonlens",
    "auc",
)


def classification_metrics(labels, probabilities, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, purity, completeness and F1 of both classes, and the ROC AUC.

    Parameters
    ----------
    labels
        1 for a lens, 0 for a non-lens.
    probabilities
        The network's lens probability; a cutout is classified a lens when ``probability >= threshold``.
    threshold
        The probability threshold.

    Returns
    -------
    dict
        The :data:`METRIC_NAMES` as floats (AUC is NaN when only one class is present).
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=float)
    predicted = (probabilities >= threshold).astype(int)
    purity, completeness, f1, _ = precision_recall_fscore_support(
        labels, predicted, labels=[1, 0], zero_division=0.0
    )
    auc = roc_auc_score(labels, probabilities) if len(np.unique(labels)) == 2 else float("nan")
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "purity_lens": float(purity[0]),
        "completeness_lens": float(completeness[0]),
        "f1_lens": float(f1[0]),
        "purity_nonlens": float(purity[1]),
        "completeness_nonlens": float(completeness[1]),
        "f1_nonlens": float(f1[1]),
        "auc": float(auc),
    }


def confusion_counts(labels, probabilities, threshold: float = 0.5) -> dict[str, int]:
    """True/false positives/negatives (lens = positive) at ``threshold``."""
    from sklearn.metrics import confusion_matrix

    predicted = (np.asarray(probabilities) >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(np.asarray(labels).astype(int), predicted, labels=[0, 1]).ravel()
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)}


def roc_curve_table(labels, probabilities):
    """The ROC curve as an astropy Table with columns ``fpr``, ``tpr``, ``threshold`` (Hanley & McNeil 1982)."""
    from astropy.table import Table
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(np.asarray(labels).astype(int), np.asarray(probabilities, dtype=float))
    # sklearn starts the curve at an infinite threshold; 1 + max keeps the table finite for CSV and plots
    thresholds = np.where(np.isfinite(thresholds), thresholds, 1.0 + np.max(probabilities, initial=0.0))
    return Table({"fpr": fpr, "tpr": tpr, "threshold": thresholds})


def fold_summary(per_fold: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Median, Q1, Q3 and IQR of each metric over folds (Angora et al. 2023, Table A.2).

    Returns keys ``<metric>_median``, ``<metric>_q1``, ``<metric>_q3``, ``<metric>_iqr``.
    """
    per_fold = list(per_fold)
    summary: dict[str, float] = {}
    for name in per_fold[0] if per_fold else ():
        values = np.array([fold[name] for fold in per_fold], dtype=float)
        q1, median, q3 = np.nanpercentile(values, [25, 50, 75])
        summary.update(
            {f"{name}_median": float(median), f"{name}_q1": float(q1), f"{name}_q3": float(q3),
             f"{name}_iqr": float(q3 - q1)}
        )
    return summary
