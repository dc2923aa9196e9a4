"""Probability bands of Angora et al. (2023), Table A.6: TP p >= 0.5, qTP 0.2 <= p < 0.5, FN p < 0.2."""

import numpy as np

from lenssearch.search.classes import class_totals, lens_class, truth_class


def test_band_edges():
    p = [0.0, 0.1999, 0.2, 0.4999, 0.5, 0.93, 1.0, np.nan]
    assert lens_class(p).tolist() == ["FN", "FN", "qTP", "qTP", "TP", "TP", "TP", ""]


def test_non_lenses_are_fp_or_tn():
    assert truth_class([0.7, 0.3, 0.7, 0.1], [False, False, True, True]).tolist() == ["FP", "TN", "TP", "FN"]


def test_totals_count_secure_systems_only():
    # Table A.6, VGG column restricted to a few rows: A1 TP secure, B1 TN no, D2 TP secure, E2 qTP secure,
    # E1 FN secure, G4 FN uncertain.
    classes = np.array(["TP", "TN", "TP", "qTP", "FN", "FN"])
    labels = ["secure", "no", "secure", "secure", "secure", "uncertain"]
    assert class_totals(classes, labels) == {"TP": 2, "qTP": 1, "FN": 1}
