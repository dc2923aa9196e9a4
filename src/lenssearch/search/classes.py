"""Probability bands of a network's score where the truth is known (Angora et al. 2023, Sect. 5 and Table A.6).

For a true lens, Angora et al. (2023) call the prediction a true positive (TP) when ``Pr > 0.5``, a quasi-true
positive (qTP) when ``0.2 <= Pr < 0.5`` and a false negative (FN) when ``Pr < 0.2`` (notes of Table A.6; the text
of Sect. 5 writes ``Pr <= 0.2`` for FN, which overlaps qTP at 0.2, so we follow the table). The table leaves
``Pr = 0.5`` unassigned; we count it as TP, consistent with the usual threshold ``Pr >= 0.5`` of the confusion
matrix (Sect. 4.1). For a known non-lens ('no' in Table A.6), a score ``>= 0.5`` is a false positive (FP) and any
lower score a true negative (TN).

Totals of TP, qTP and FN are computed over *secure* systems only, as at the bottom of Table A.6.
"""

from __future__ import annotations

import numpy as np

#: Labels of known systems (Table A.6, last column) and whether the system is counted as a lens.
KNOWN_LABELS = {"secure": True, "uncertain": True, "no": False}

#: Class names in the order of the table's totals.
LENS_CLASSES = ("TP", "qTP", "FN")


def lens_class(probability: np.ndarray, tp_min: float = 0.5, qtp_min: float = 0.2) -> np.ndarray:
    """Class of true lenses' scores: ``TP`` (p >= tp_min), ``qTP`` (qtp_min <= p < tp_min), ``FN`` (p < qtp_min).

    Non-finite scores (cutouts that were not scored) get ``""``.
    """
    p = np.asarray(probability, dtype=float)
    out = np.full(p.shape, "", dtype="<U3")
    finite = np.isfinite(p)
    out[finite & (p >= tp_min)] = "TP"
    out[finite & (p >= qtp_min) & (p < tp_min)] = "qTP"
    out[finite & (p < qtp_min)] = "FN"
    return out


def truth_class(probability: np.ndarray, is_lens: np.ndarray, tp_min: float = 0.5, qtp_min: float = 0.2) -> np.ndarray:
    """Class of scores of known lenses (TP / qTP / FN) and known non-lenses (FP / TN)."""
    p = np.asarray(probability, dtype=float)
    is_lens = np.asarray(is_lens, dtype=bool)
    out = lens_class(p, tp_min, qtp_min)
    finite = np.isfinite(p)
    out[~is_lens & finite & (p >= tp_min)] = "FP"
    out[~is_lens & finite & (p < tp_min)] = "TN"
    return out


def class_totals(classes: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    """Numbers of TP, qTP and FN over the ``secure`` systems (Table A.6, bottom rows)."""
    classes = np.asarray(classes)
    secure = np.asarray([str(label).strip().lower() == "secure" for label in labels], dtype=bool)
    return {name: int(np.sum(secure & (classes == name))) for name in LENS_CLASSES}
