"""Grade scales, the forwarding rule, A/B classes and Fleiss' kappa."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from lenssearch.errors import LensSearchError
from lenssearch.inspect import grading

# Fleiss (1971)'s worked example as tabulated on Wikipedia ("Fleiss' kappa", worked example): 10 subjects,
# 14 raters, 5 categories; P-bar = 0.378, P-bar_e = 0.213, kappa = 0.210.
FLEISS_EXAMPLE = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
])


def test_fleiss_kappa_worked_example():
    assert_allclose(grading.fleiss_kappa(FLEISS_EXAMPLE), 0.210, atol=5e-4)


def test_fleiss_kappa_limits_and_bad_tables():
    perfect = np.array([[4, 0, 0, 0], [0, 4, 0, 0], [0, 0, 0, 4]])
    assert grading.fleiss_kappa(perfect) == pytest.approx(1.0)
    # raters split evenly on every subject: agreement below chance
    assert grading.fleiss_kappa(np.array([[1, 1], [1, 1], [1, 1]])) < 0
    assert np.isnan(grading.fleiss_kappa(np.array([[2, 0], [2, 0]])))  # one category only: undefined
    with pytest.raises(LensSearchError, match="same number"):
        grading.fleiss_kappa(np.array([[2, 0], [1, 2]]))


def test_kappa_from_ratings_uses_the_complete_subjects():
    ratings = {1: [0, 0], 2: [1, 1], 3: [1, 0], 4: [1]}
    kappa, n = grading.kappa_from_ratings(ratings, [0, 1])
    assert n == 3
    assert kappa == pytest.approx(grading.fleiss_kappa(np.array([[2, 0], [0, 2], [1, 1]])))


@pytest.mark.parametrize("grades, forwarded", [
    ([2, 1, 1, 1], True),      # G = 1.25 > 1
    ([1, 1, 1, 1], False),     # G = 1 is not above 1, no spread
    ([0, 0, 0, 2], True),      # G = 0.5, std = 0.87 > 0.75
    ([0, 0, 1, 1], False),     # G = 0.5, std = 0.5
    ([0, 0, 0, 0], False),
])
def test_forwarding_rule(grades, forwarded):
    assert grading.forwarded(*grading.mean_and_std(grades)) is forwarded


@pytest.mark.parametrize("g, cls", [(3.0, "A"), (2.5, "A"), (2.49, "B"), (1.5, "B"), (1.49, ""), (float("nan"), "")])
def test_grade_classes(g, cls):
    assert grading.grade_class(g) == cls


def test_grades_are_validated_per_round_kind():
    assert grading.check_grade(3, "multiclass") == 3
    assert grading.check_grade("2", "second_team") == 2
    assert grading.check_grade(1, "binary") == 1
    with pytest.raises(LensSearchError, match="grade 7 is not allowed; a multiclass round takes 0 .no lens."):
        grading.check_grade(7, "multiclass")
    with pytest.raises(LensSearchError, match="grade 2 is not allowed; a binary round"):
        grading.check_grade(2, "binary")
    for bad in (2.5, "x", None, True):
        with pytest.raises(LensSearchError, match="not an integer"):
            grading.check_grade(bad, "multiclass")
    with pytest.raises(LensSearchError, match="round kind 'final'"):
        grading.scale_of("final")


def test_calibration_agreement_thresholds():
    assert grading.calibration_correct(2, "multiclass", True)
    assert not grading.calibration_correct(1, "multiclass", True)
    assert grading.calibration_correct(1, "multiclass", False)
    assert grading.calibration_correct(1, "binary", True)
    assert grading.binary_forwarded([0, 1]) and not grading.binary_forwarded([0, 0])
