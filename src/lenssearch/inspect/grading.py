"""Grades, aggregates and agreement statistics of a visual inspection (HOLISMOKES XVI, Schuldt et al. 2025, Sect. 4).

Pure functions on numbers; the database (:mod:`~lenssearch.inspect.store`) and the web app call them.

- Multi-class grades: 0 no lens, 1 possible, 2 probable, 3 definite lens; binary grades: 0 no, 1 yes.
- The mean grade ``G`` of a candidate and the standard deviation of its grades (population, ``ddof=0``: the
  spread of the grades given, not an estimate of a wider population of graders).
- Forwarding from the first multi-class round to the second team: ``G > 1``, or ``G <= 1`` with a standard
  deviation above 0.75 (Sect. 4.1).
- Final classes: A for ``G >= 2.5``, B for ``1.5 <= G < 2.5`` (Sect. 4.2).
- Fleiss' kappa (Fleiss 1971) for the agreement of several graders on the same candidates.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from lenssearch.errors import LensSearchError

#: Round kinds, in the order of HOLISMOKES XVI, Sect. 4; each with its grade scale.
ROUND_KINDS = ("calibration", "binary", "multiclass", "second_team")
#: Allowed grades per scale, and their names.
SCALES = {"binary": {0: "no", 1: "yes"}, "multiclass": {0: "no lens", 1: "possible", 2: "probable", 3: "definite"}}

FORWARD_MIN_G = 1.0  # forward when G > 1 ...
FORWARD_MIN_STD = 0.75  # ... or when G <= 1 but the grades' standard deviation is above 0.75
GRADE_A_MIN = 2.5
GRADE_B_MIN = 1.5
#: A calibration grade counts as "lens" from this grade on (probable or definite; HOLISMOKES' A/B cut at 1.5).
CALIBRATION_LENS_MIN = 2


def scale_of(kind: str) -> str:
    """The grade scale of a round kind: ``binary`` for the binary round, ``multiclass`` for all others."""
    if kind not in ROUND_KINDS:
        raise LensSearchError(f"round kind '{kind}' is not one of {', '.join(ROUND_KINDS)}")
    return "binary" if kind == "binary" else "multiclass"


def check_grade(grade, kind: str) -> int:
    """The grade as an int if it is allowed in a round of ``kind``; else :class:`LensSearchError` saying why."""
    scale = scale_of(kind)
    allowed = SCALES[scale]
    try:
        value = int(grade)
        if isinstance(grade, bool) or float(grade) != value:
            raise ValueError
    except (TypeError, ValueError):
        raise LensSearchError(f"grade '{grade}' is not an integer; a {kind} round takes {_allowed(allowed)}") from None
    if value not in allowed:
        raise LensSearchError(f"grade {value} is not allowed; a {kind} round takes {_allowed(allowed)}")
    return value


def _allowed(allowed: dict) -> str:
    return ", ".join(f"{k} ({v})" for k, v in allowed.items())


def mean_and_std(grades: Sequence[float]) -> tuple[float, float]:
    """Mean grade G and the population standard deviation of the grades (NaN, NaN without grades)."""
    g = np.asarray(list(grades), dtype=float)
    if g.size == 0:
        return float("nan"), float("nan")
    return float(g.mean()), float(g.std(ddof=0))


def forwarded(mean_grade: float, std: float) -> bool:
    """HOLISMOKES XVI's forwarding rule: ``G > 1``, or ``G <= 1`` with a standard deviation above 0.75."""
    if not np.isfinite(mean_grade):
        return False
    return bool(mean_grade > FORWARD_MIN_G or std > FORWARD_MIN_STD)


def grade_class(mean_grade: float) -> str:
    """``A`` (G >= 2.5), ``B`` (1.5 <= G < 2.5) or ``""``."""
    if not np.isfinite(mean_grade):
        return ""
    if mean_grade >= GRADE_A_MIN:
        return "A"
    if mean_grade >= GRADE_B_MIN:
        return "B"
    return ""


def binary_forwarded(votes: Iterable[int]) -> bool:
    """The binary round is conservative (Sect. 4.1): one 'yes' of the two graders forwards a candidate."""
    return any(int(v) == 1 for v in votes)


def calibration_correct(grade: int, kind_scale: str, is_lens: bool) -> bool:
    """Whether a grade of a calibration system agrees with its truth (a lens: grade >= 2 on the 0-3 scale)."""
    says_lens = grade >= (1 if kind_scale == "binary" else CALIBRATION_LENS_MIN)
    return bool(says_lens == bool(is_lens))


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of an N x k table: ``counts[i, j]`` graders put subject i in category j (Fleiss 1971).

    Every subject must have the same number n >= 2 of ratings. Returns NaN when the expected agreement is 1
    (every rating in one category), where kappa is undefined.

    Raises
    ------
    LensSearchError
        Fewer than one subject, negative counts, or subjects with different numbers of ratings.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] < 1:
        raise LensSearchError(f"Fleiss' kappa needs an N x k table of counts, got shape {counts.shape}")
    if np.any(counts < 0):
        raise LensSearchError("Fleiss' kappa: negative counts")
    per_subject = counts.sum(axis=1)
    n = per_subject[0]
    if n < 2 or np.any(per_subject != n):
        raise LensSearchError(
            f"Fleiss' kappa needs the same number (>= 2) of ratings per subject, got {sorted(set(per_subject))}"
        )
    n_subjects = counts.shape[0]
    p_j = counts.sum(axis=0) / (n_subjects * n)
    p_i = (np.sum(counts**2, axis=1) - n) / (n * (n - 1))
    p_bar = p_i.mean()
    p_e = float(np.sum(p_j**2))
    if p_e >= 1.0:
        return float("nan")
    return float((p_bar - p_e) / (1.0 - p_e))


def kappa_from_ratings(ratings: dict[int, list[int]], categories: Sequence[int]) -> tuple[float, int]:
    """Fleiss' kappa over the subjects that have the most common number of ratings (>= 2).

    ``ratings`` maps a subject to its grades. Returns (kappa, number of subjects used); (NaN, 0) if none.
    """
    sizes = [len(v) for v in ratings.values() if len(v) >= 2]
    if not sizes:
        return float("nan"), 0
    n = max(set(sizes), key=sizes.count)
    index = {c: j for j, c in enumerate(categories)}
    rows = [np.bincount([index[g] for g in v], minlength=len(categories)) for v in ratings.values() if len(v) == n]
    return fleiss_kappa(np.asarray(rows)), len(rows)
