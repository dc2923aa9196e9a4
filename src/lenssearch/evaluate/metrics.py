"""Binary-classification metrics of Angora et al. 2023, Sect. 4.1, and the committee rates of HOLISMOKES XVI: the
one metrics module of lenssearch, used by train, evaluate, committee, tune and promote.

Strong lenses (GGSL, label 1) are the positive class. A cutout is classified as a lens when its probability is
``>= threshold`` (the convention of scikit-learn's ``roc_curve``). From the binary confusion matrix:

- average efficiency (accuracy) AE = (TP + TN) / N;
- lens purity TP / (TP + FP), lens completeness TP / (TP + FN), and their harmonic mean F1;
- non-lens purity TN / (TN + FN), non-lens completeness TN / (TN + FP), and their F1.

A ratio with a zero denominator is NaN (never silently 0). Rates that the number of negatives cannot support
(a false-positive rate below ``1 / N_neg``) are *not measurable* and returned as ``None``, never extrapolated.

Every function is plain numpy, vectorised over all thresholds at once (one sort), so the ~900 out-of-fold
predictions of the demo and the ~4400 of the paper take milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np

from lenssearch.errors import LensSearchError

METRIC_NAMES = (
    "accuracy",
    "purity_lens",
    "completeness_lens",
    "f1_lens",
    "purity_nonlens",
    "completeness_nonlens",
    "f1_nonlens",
)


#: The metrics of one split (a fold, the run model's validation split, the pooled out-of-fold predictions):
#: :data:`METRIC_NAMES` at the threshold and the threshold-free ROC AUC. Train's parent and child runs log these.
SPLIT_METRIC_NAMES = (*METRIC_NAMES, "auc")


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


def _f1(purity: float, completeness: float) -> float:
    if not np.isfinite(purity) or not np.isfinite(completeness) or purity + completeness == 0:
        return float("nan")
    return 2.0 * purity * completeness / (purity + completeness)


def check_inputs(labels, scores, what: str = "predictions") -> tuple[np.ndarray, np.ndarray]:
    """Validate labels (0/1) and scores (finite, in [0, 1]); return them as arrays.

    Raises
    ------
    LensSearchError
        Naming the first offending row.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=float)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise LensSearchError(f"{what}: labels {labels.shape} and scores {scores.shape} must be equal 1-D arrays")
    bad = ~np.isin(labels, (0, 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LensSearchError(f"{what}: row {row}: label {labels[row]} is not 0 or 1")
    bad = ~np.isfinite(scores) | (scores < 0) | (scores > 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LensSearchError(f"{what}: row {row}: probability {float(scores[row])} is not a finite number in [0, 1]")
    return labels.astype(np.int8), scores


@dataclass(frozen=True)
class Confusion:
    """The binary confusion matrix (lenses = positives)."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def metrics(self) -> dict[str, float]:
        """Accuracy, purity, completeness and F1 of both classes (Angora et al. 2023, Sect. 4.1)."""
        pur_l = _ratio(self.tp, self.tp + self.fp)
        com_l = _ratio(self.tp, self.tp + self.fn)
        pur_n = _ratio(self.tn, self.tn + self.fn)
        com_n = _ratio(self.tn, self.tn + self.fp)
        return {
            "accuracy": _ratio(self.tp + self.tn, self.n),
            "purity_lens": pur_l,
            "completeness_lens": com_l,
            "f1_lens": _f1(pur_l, com_l),
            "purity_nonlens": pur_n,
            "completeness_nonlens": com_n,
            "f1_nonlens": _f1(pur_n, com_n),
        }

    def normalised(self) -> np.ndarray:
        """Row-normalised 2x2 matrix [[TN, FP], [FN, TP]] / true-class totals (Fig. 6, middle panel)."""
        m = np.array([[self.tn, self.fp], [self.fn, self.tp]], dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return m / m.sum(axis=1, keepdims=True)


def confusion(labels, scores, threshold: float = 0.5) -> Confusion:
    """Confusion matrix at ``threshold`` (a cutout is a lens candidate when ``score >= threshold``)."""
    labels, scores = check_inputs(labels, scores)
    pred = scores >= threshold
    pos = labels == 1
    return Confusion(
        tp=int(np.sum(pred & pos)),
        fp=int(np.sum(pred & ~pos)),
        fn=int(np.sum(~pred & pos)),
        tn=int(np.sum(~pred & ~pos)),
    )


def classification_metrics(labels, scores, threshold: float = 0.5) -> dict[str, float]:
    """The seven metrics of Table A.1 at ``threshold``, as fractions."""
    return confusion(labels, scores, threshold).metrics()


def split_metrics(labels, scores, threshold: float = 0.5) -> dict[str, float]:
    """:data:`SPLIT_METRIC_NAMES`: the seven metrics at ``threshold`` and the ROC AUC (NaN with one class)."""
    return {**classification_metrics(labels, scores, threshold), "auc": roc_auc(labels, scores)}


def confusion_counts(labels, scores, threshold: float = 0.5) -> dict[str, int]:
    """True/false positives/negatives (lens = positive) at ``threshold``, as a dict."""
    c = confusion(labels, scores, threshold)
    return {"tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn}


def roc_curve_table(labels, scores):
    """The ROC curve as an astropy Table with columns ``fpr``, ``tpr``, ``threshold`` (scikit-learn's
    ``roc_curve``, collinear points dropped), for ``dvc plots`` and figures."""
    from astropy.table import Table
    from sklearn.metrics import roc_curve

    labels, scores = check_inputs(labels, scores)
    fpr, tpr, thresholds = roc_curve(labels.astype(int), scores)
    # sklearn starts the curve at an infinite threshold; 1 + max keeps the table finite for CSV and plots
    thresholds = np.where(np.isfinite(thresholds), thresholds, 1.0 + np.max(scores, initial=0.0))
    return Table({"fpr": fpr, "tpr": tpr, "threshold": thresholds})


def fold_summary(per_fold: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Median, Q1, Q3 and IQR of each metric over folds (Angora et al. 2023, Table A.2), NaN folds ignored.

    Returns keys ``<metric>_median``, ``<metric>_q1``, ``<metric>_q3``, ``<metric>_iqr``.
    """
    import warnings

    per_fold = list(per_fold)
    summary: dict[str, float] = {}
    for name in per_fold[0] if per_fold else ():
        values = np.array([fold[name] for fold in per_fold], dtype=float)
        with warnings.catch_warnings():  # all-NaN metric (e.g. a class never predicted): NaN, quietly
            warnings.simplefilter("ignore", RuntimeWarning)
            q1, median, q3 = np.nanpercentile(values, [25, 50, 75])
        summary.update(
            {f"{name}_median": float(median), f"{name}_q1": float(q1), f"{name}_q3": float(q3),
             f"{name}_iqr": float(q3 - q1)}
        )
    return summary


@dataclass(frozen=True)
class ThresholdCurve:
    """Cumulative counts at every distinct score, thresholds in decreasing order.

    At ``thresholds[i]``, the cutouts with ``score >= thresholds[i]`` are selected: ``tp[i]`` lenses and ``fp[i]``
    non-lenses. ``n_pos`` and ``n_neg`` are the class totals. The first point is an added threshold above every
    score (nothing selected), as in scikit-learn's ``roc_curve``.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_pos: int
    n_neg: int

    @property
    def tpr(self) -> np.ndarray:
        """True-positive rate = completeness."""
        return self.tp / self.n_pos if self.n_pos else np.full(self.tp.shape, np.nan)

    @property
    def fpr(self) -> np.ndarray:
        """False-positive rate = FP / (FP + TN)."""
        return self.fp / self.n_neg if self.n_neg else np.full(self.fp.shape, np.nan)

    @property
    def purity(self) -> np.ndarray:
        """Lens purity TP / (TP + FP); NaN where nothing is selected."""
        sel = self.tp + self.fp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(sel > 0, self.tp / np.maximum(sel, 1), np.nan)

    @property
    def n_selected(self) -> np.ndarray:
        """Number of candidates selected at each threshold."""
        return self.tp + self.fp

    @property
    def f1(self) -> np.ndarray:
        """Lens F1 at each threshold."""
        p, c = self.purity, self.tpr
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((p + c) > 0, 2 * p * c / (p + c), np.nan)


def threshold_curve(labels, scores) -> ThresholdCurve:
    """Counts of selected lenses and non-lenses at every distinct score (one sort, vectorised)."""
    labels, scores = check_inputs(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    y = labels[order]
    tp = np.cumsum(y == 1)
    fp = np.cumsum(y == 0)
    # keep the last index of each run of equal scores: ties are selected together
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1] if s.size else np.array([], dtype=int)
    thresholds = np.r_[np.inf, s[last]]
    return ThresholdCurve(
        thresholds=thresholds,
        tp=np.r_[0, tp[last]].astype(np.int64),
        fp=np.r_[0, fp[last]].astype(np.int64),
        n_pos=int(np.sum(labels == 1)),
        n_neg=int(np.sum(labels == 0)),
    )


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (trapezoidal over every distinct threshold; equals scikit-learn's)."""
    curve = threshold_curve(labels, scores)
    if curve.n_pos == 0 or curve.n_neg == 0:
        return float("nan")
    return float(np.trapezoid(curve.tpr, curve.fpr))


def min_measurable_fpr(n_neg: int) -> float:
    """The smallest non-zero false-positive rate that ``n_neg`` negatives can measure: one false positive."""
    return 1.0 / n_neg if n_neg > 0 else float("inf")


def tpr_at_fpr(labels, scores, fpr: float) -> float | None:
    """Largest true-positive rate among thresholds whose false-positive rate is ``<= fpr``.

    Returns ``None`` ("not measurable") when ``fpr < 1 / N_neg``: with ``N_neg`` negatives a single false
    positive already exceeds the rate, so any value would be an extrapolation (HOLISMOKES XVI, Sect. 2 quote
    FPRs of 0.01-0.03 per cent only because their test sets have millions of negatives).
    """
    curve = threshold_curve(labels, scores)
    if curve.n_pos == 0 or fpr < min_measurable_fpr(curve.n_neg):
        return None
    ok = curve.fpr <= fpr + 1e-12
    return float(np.max(curve.tpr[ok]))


def tpr_vs_candidates(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """True-positive rate against the number of candidates selected (HOLISMOKES XVI, Figs. 1-2).

    Returns ``(n_selected, tpr)`` at every distinct threshold, from the most to the least strict.
    """
    curve = threshold_curve(labels, scores)
    return curve.n_selected, curve.tpr


def purity_completeness_crossing(labels, scores) -> tuple[float, float] | None:
    """Threshold where lens purity equals lens completeness (Angora et al. 2023, Fig. 11), and their value.

    Purity minus completeness is followed from the loosest to the strictest threshold; the first sign change
    is interpolated linearly in the threshold. ``None`` when the curves never cross.
    """
    curve = threshold_curve(labels, scores)
    t = curve.thresholds[1:][::-1]  # increasing thresholds, every cutout-defined one
    p = curve.purity[1:][::-1]
    c = curve.tpr[1:][::-1]
    d = p - c
    good = np.isfinite(d)
    t, p, c, d = t[good], p[good], c[good], d[good]
    if d.size == 0:
        return None
    zero = np.flatnonzero(d == 0)
    change = np.flatnonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0)
    if zero.size and (not change.size or zero[0] <= change[0]):
        i = int(zero[0])
        return float(t[i]), float(p[i])
    if not change.size:
        return None
    i = int(change[0])
    w = d[i] / (d[i] - d[i + 1])
    return float(t[i] + w * (t[i + 1] - t[i])), float(p[i] + w * (p[i + 1] - p[i]))


def completeness_at_purity(labels, scores, purity_min: float) -> tuple[float, float] | None:
    """Largest lens completeness over thresholds whose lens purity is ``>= purity_min``, and that threshold.

    ``None`` when no threshold reaches the purity.
    """
    curve = threshold_curve(labels, scores)
    p = curve.purity[1:]
    ok = np.isfinite(p) & (p >= purity_min)
    if not ok.any() or curve.n_pos == 0:
        return None
    tpr = curve.tpr[1:]
    idx = np.flatnonzero(ok)
    best = idx[np.argmax(tpr[idx])]
    return float(tpr[best]), float(curve.thresholds[1:][best])


def max_f1(labels, scores) -> tuple[float, float] | None:
    """Largest lens F1 over all thresholds, and that threshold."""
    curve = threshold_curve(labels, scores)
    f1 = curve.f1[1:]
    if not np.isfinite(f1).any():
        return None
    i = int(np.nanargmax(f1))
    return float(f1[i]), float(curve.thresholds[1:][i])


def mean_roc(labels, scores, folds, fpr_grid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Mean ROC and its 1-sigma band over folds (Angora et al. 2023, Fig. 6, middle panel).

    Each fold's ROC (a step curve) is sampled on ``fpr_grid``; returns ``fpr``, ``tpr_mean``, ``tpr_std``
    and ``auc`` per fold.
    """
    labels, scores = check_inputs(labels, scores)
    folds = np.asarray(folds)
    grid = np.linspace(0.0, 1.0, 201) if fpr_grid is None else np.asarray(fpr_grid, dtype=float)
    tprs, aucs = [], []
    for f in np.unique(folds):
        sel = folds == f
        curve = threshold_curve(labels[sel], scores[sel])
        if curve.n_pos == 0 or curve.n_neg == 0:
            continue
        # the ROC is a step curve: at each grid FPR take the best TPR reachable without exceeding it
        idx = np.searchsorted(curve.fpr, grid, side="right") - 1
        tprs.append(curve.tpr[np.clip(idx, 0, None)])
        aucs.append(float(np.trapezoid(curve.tpr, curve.fpr)))
    tprs_arr = np.array(tprs) if tprs else np.full((1, grid.size), np.nan)
    return {
        "fpr": grid,
        "tpr_mean": tprs_arr.mean(axis=0),
        "tpr_std": tprs_arr.std(axis=0),
        "auc": np.array(aucs),
    }


def box_statistics(values) -> dict[str, float]:
    """Median, quartiles, IQR and the paper's whiskers Q1 - 1.5 IQR, Q3 + 1.5 IQR (Table A.2, Sect. 4.1).

    Quartiles are numpy's linear-interpolation percentiles (the default of ``numpy.percentile``).
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return dict.fromkeys(("median", "q1", "q3", "iqr", "whisker_low", "whisker_high"), float("nan"))
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    iqr = q3 - q1
    return {
        "median": float(med),
        "q1": float(q1),
        "q3": float(q3),
        "iqr": float(iqr),
        "whisker_low": float(q1 - 1.5 * iqr),
        "whisker_high": float(q3 + 1.5 * iqr),
    }


# ----------------------------------------------------------------------------------------- gate metrics
def _gate_completeness_at_purity(labels, scores, purity_min: float = 0.9, **_) -> float:
    res = completeness_at_purity(labels, scores, purity_min)
    return 0.0 if res is None else res[0]


def _gate_auc(labels, scores, **_) -> float:
    return roc_auc(labels, scores)


def _gate_max_f1(labels, scores, **_) -> float:
    res = max_f1(labels, scores)
    return 0.0 if res is None else res[0]


def _gate_tpr_at_fpr(labels, scores, fpr: float = 0.01, **_) -> float:
    res = tpr_at_fpr(labels, scores, fpr)
    if res is None:
        raise LensSearchError(
            f"gate metric tpr_at_fpr: FPR {fpr:g} is not measurable with these negatives; choose fpr >= 1/N_neg"
        )
    return res


#: Threshold-free scores used to rank models and to gate a promotion (larger is better).
GATE_METRICS: dict[str, Callable[..., float]] = {
    "completeness_at_purity": _gate_completeness_at_purity,
    "auc": _gate_auc,
    "max_f1": _gate_max_f1,
    "tpr_at_fpr": _gate_tpr_at_fpr,
}


def gate_metric(name: str, labels, scores, **options) -> float:
    """Evaluate the gate metric ``name`` from :data:`GATE_METRICS` (options: ``purity_min``, ``fpr``)."""
    try:
        fn = GATE_METRICS[name]
    except KeyError:
        raise LensSearchError(f"unknown gate metric '{name}'; expected one of {sorted(GATE_METRICS)}") from None
    return float(fn(labels, scores, **options))
