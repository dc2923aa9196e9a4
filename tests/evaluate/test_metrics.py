"""Metrics and rates against scikit-learn and brute force."""

import numpy as np
import pytest
from sklearn import metrics as skm

from lenssearch.errors import LensSearchError
from lenssearch.evaluate import metrics as m


def sample(rng, n=400, ties=False):
    y = (rng.random(n) < 0.6).astype(int)
    s = 1 / (1 + np.exp(-(1.5 * (2 * y - 1) + rng.normal(0, 1.2, n))))
    if ties:
        s = np.round(s, 1)
    return y, s


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_classification_metrics_match_sklearn(threshold):
    y, s = sample(np.random.default_rng(1))
    pred = (s >= threshold).astype(int)
    got = m.classification_metrics(y, s, threshold)
    p, r, f, _ = skm.precision_recall_fscore_support(y, pred, labels=[1, 0], zero_division=np.nan)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["purity_lens"] == pytest.approx(p[0])
    assert got["completeness_lens"] == pytest.approx(r[0])
    assert got["f1_lens"] == pytest.approx(f[0])
    assert got["purity_nonlens"] == pytest.approx(p[1])
    assert got["completeness_nonlens"] == pytest.approx(r[1])
    assert got["f1_nonlens"] == pytest.approx(f[1])
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    c = m.confusion(y, s, threshold)
    assert (c.tp, c.fp, c.fn, c.tn) == (tp, fp, fn, tn)
    np.testing.assert_allclose(c.normalised(), skm.confusion_matrix(y, pred, normalize="true"))


def test_zero_denominator_is_nan_not_zero():
    got = m.classification_metrics([1, 1, 0], [0.1, 0.2, 0.3], 0.9)  # nothing selected
    assert np.isnan(got["purity_lens"]) and got["completeness_lens"] == 0.0


@pytest.mark.parametrize("ties", [False, True])
def test_roc_and_auc_match_sklearn(ties):
    y, s = sample(np.random.default_rng(2), ties=ties)
    fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
    curve = m.threshold_curve(y, s)
    np.testing.assert_allclose(curve.fpr, fpr)
    np.testing.assert_allclose(curve.tpr, tpr)
    np.testing.assert_allclose(curve.thresholds[1:], thr[1:])
    assert m.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), rel=1e-12)


def test_tpr_at_fpr_matches_sklearn_and_refuses_unmeasurable_rates():
    y, s = sample(np.random.default_rng(3), n=500)
    n_neg = int((y == 0).sum())
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    for target in (0.01, 0.05, 0.2):
        assert target >= 1 / n_neg
        assert m.tpr_at_fpr(y, s, target) == pytest.approx(tpr[fpr <= target].max())
    # 1e-3 < 1 / N_neg (~5e-3): a single false positive is already a larger rate
    assert m.tpr_at_fpr(y, s, 1e-3) is None
    assert m.tpr_at_fpr(y, s, 1e-4) is None
    assert m.min_measurable_fpr(n_neg) == pytest.approx(1 / n_neg)


def test_tpr_vs_candidates_counts_top_ranked_lenses():
    y, s = sample(np.random.default_rng(4), n=200)
    n_sel, tpr = m.tpr_vs_candidates(y, s)
    order = np.argsort(-s)
    for k in (1, 10, 50, 120, 200):
        i = np.searchsorted(n_sel, k)
        assert n_sel[i] == k  # no ties: every count is reached
        assert tpr[i] == pytest.approx(y[order[:k]].sum() / y.sum())


def test_crossing_completeness_at_purity_and_max_f1_by_brute_force():
    y, s = sample(np.random.default_rng(5), n=300)
    ts = np.unique(s)
    pur = np.array([y[s >= t].mean() for t in ts])
    com = np.array([y[s >= t].sum() / y.sum() for t in ts])
    cross_t, cross_v = m.purity_completeness_crossing(y, s)
    d = pur - com
    i = np.flatnonzero(np.sign(d[:-1]) != np.sign(d[1:]))[0]
    assert ts[i] <= cross_t <= ts[i + 1]
    assert min(pur[i], com[i], pur[i + 1], com[i + 1]) - 1e-9 <= cross_v <= max(pur[i], com[i], pur[i + 1], com[i + 1])
    value, t = m.completeness_at_purity(y, s, 0.9)
    ok = pur >= 0.9
    assert value == pytest.approx(com[ok].max())
    assert y[s >= t].mean() >= 0.9
    f1 = 2 * pur * com / (pur + com)
    best, t = m.max_f1(y, s)
    assert best == pytest.approx(f1.max())
    assert best == pytest.approx(skm.f1_score(y, (s >= t).astype(int)))
    assert m.completeness_at_purity(y, s, 1.01) is None


def test_mean_roc_band_and_box_statistics():
    rng = np.random.default_rng(6)
    y, s = sample(rng, n=600)
    folds = rng.integers(0, 3, y.size)
    roc = m.mean_roc(y, s, folds)
    aucs = [skm.roc_auc_score(y[folds == f], s[folds == f]) for f in range(3)]
    np.testing.assert_allclose(roc["auc"], aucs)
    assert np.all(np.diff(roc["tpr_mean"]) >= -1e-12) and roc["tpr_mean"][-1] == 1.0
    v = rng.normal(size=11)
    b = m.box_statistics(v)
    q1, q3 = np.percentile(v, [25, 75])
    assert b["median"] == pytest.approx(np.median(v))
    assert b["whisker_low"] == pytest.approx(q1 - 1.5 * (q3 - q1))
    assert b["whisker_high"] == pytest.approx(q3 + 1.5 * (q3 - q1))


def test_bad_inputs_name_the_row():
    with pytest.raises(LensSearchError, match="row 1"):
        m.classification_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(LensSearchError, match="row 0"):
        m.classification_metrics([0, 1], [np.nan, 0.2])
    with pytest.raises(LensSearchError, match="unknown gate metric"):
        m.gate_metric("nope", [0, 1], [0.1, 0.9])
    with pytest.raises(LensSearchError, match="not measurable"):
        m.gate_metric("tpr_at_fpr", [0, 1, 1], [0.1, 0.9, 0.8], fpr=0.1)
