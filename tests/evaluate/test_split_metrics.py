"""The split metrics that train logs (Angora et al. 2023, Sect. 4.1), from the one metrics module, against
scikit-learn and numpy."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn import metrics as skm

from lenssearch.evaluate.metrics import (
    SPLIT_METRIC_NAMES as METRIC_NAMES,
    confusion_counts,
    fold_summary,
    roc_curve_table,
)
from lenssearch.evaluate.metrics import split_metrics as classification_metrics


@pytest.fixture
def scores():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 300)
    probabilities = np.clip(0.35 * labels + rng.uniform(0, 0.65, 300), 0, 1)
    return labels, probabilities


def test_metrics_agree_with_scikit_learn(scores):
    labels, probabilities = scores
    m = classification_metrics(labels, probabilities, threshold=0.5)
    predicted = (probabilities >= 0.5).astype(int)
    assert list(m) == list(METRIC_NAMES)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert m["purity_lens"] == pytest.approx(skm.precision_score(labels, predicted, pos_label=1))
    assert m["completeness_lens"] == pytest.approx(skm.recall_score(labels, predicted, pos_label=1))
    assert m["f1_lens"] == pytest.approx(skm.f1_score(labels, predicted, pos_label=1))
    assert m["purity_nonlens"] == pytest.approx(skm.precision_score(labels, predicted, pos_label=0))
    assert m["completeness_nonlens"] == pytest.approx(skm.recall_score(labels, predicted, pos_label=0))
    assert m["f1_nonlens"] == pytest.approx(skm.f1_score(labels, predicted, pos_label=0))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(labels, probabilities))


def test_metrics_from_the_confusion_counts(scores):
    labels, probabilities = scores
    c = confusion_counts(labels, probabilities, threshold=0.6)
    m = classification_metrics(labels, probabilities, threshold=0.6)
    assert c["tp"] + c["fp"] + c["fn"] + c["tn"] == len(labels)
    assert c["tp"] == np.sum((labels == 1) & (probabilities >= 0.6))
    purity = c["tp"] / (c["tp"] + c["fp"])
    completeness = c["tp"] / (c["tp"] + c["fn"])
    assert m["purity_lens"] == pytest.approx(purity)
    assert m["completeness_lens"] == pytest.approx(completeness)
    assert m["f1_lens"] == pytest.approx(2 * purity * completeness / (purity + completeness))
    assert m["accuracy"] == pytest.approx((c["tp"] + c["tn"]) / len(labels))


def test_perfect_and_single_class_cases():
    m = classification_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert all(m[k] == 1.0 for k in METRIC_NAMES)
    single = classification_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert np.isnan(single["auc"])
    assert single["purity_nonlens"] == 0.0  # no non-lens predicted correctly; no division error


def test_zero_over_zero_is_nan_as_in_scikit_learn():
    """A ratio with nothing in its denominator is NaN (never 0), as scikit-learn's zero_division=np.nan."""
    labels = np.array([1, 1, 1, 0])
    probabilities = np.array([0.9, 0.8, 0.7, 0.6])  # every cutout a lens at 0.5: no non-lens predicted
    m = classification_metrics(labels, probabilities)
    predicted = (probabilities >= 0.5).astype(int)
    expected = skm.precision_score(labels, predicted, pos_label=0, zero_division=np.nan)
    assert np.isnan(expected) and np.isnan(m["purity_nonlens"])
    assert m["completeness_nonlens"] == skm.recall_score(labels, predicted, pos_label=0, zero_division=np.nan) == 0
    assert np.isnan(m["f1_nonlens"])
    s = fold_summary([m, m])
    assert np.isnan(s["purity_nonlens_median"]) and s["purity_lens_median"] == pytest.approx(0.75)


def test_roc_table_matches_scikit_learn(scores):
    labels, probabilities = scores
    table = roc_curve_table(labels, probabilities)
    fpr, tpr, _ = skm.roc_curve(labels, probabilities)
    assert_allclose(table["fpr"], fpr)
    assert_allclose(table["tpr"], tpr)
    assert np.all(np.isfinite(table["threshold"]))
    assert np.trapezoid(table["tpr"], table["fpr"]) == pytest.approx(skm.roc_auc_score(labels, probabilities))


def test_fold_summary_quartiles():
    folds = [{"auc": v, "accuracy": 1 - v} for v in (0.80, 0.90, 0.85, 0.95, 0.70)]
    s = fold_summary(folds)
    assert s["auc_median"] == pytest.approx(0.85)
    assert s["auc_q1"] == pytest.approx(np.percentile([0.8, 0.9, 0.85, 0.95, 0.7], 25))
    assert s["auc_q3"] == pytest.approx(0.90)
    assert s["auc_iqr"] == pytest.approx(s["auc_q3"] - s["auc_q1"])
    assert s["accuracy_median"] == pytest.approx(0.15)
