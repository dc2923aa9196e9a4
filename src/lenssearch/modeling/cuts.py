"""The rejection rule of HOLISMOKES XVI (Sect. 3.2): cuts on the modeling network's predicted uncertainties.

A cut per parameter is ``margin`` x the largest predicted sigma among held-out lenses (``margin >= 1``: none of
them is rejected); a cutout whose sigma exceeds the cut of any cut parameter is rejected as a likely non-lens.
"""

from __future__ import annotations

import numpy as np

from lenssearch.simulate.truth import PARAMETERS


def rejection_cuts(sigma: np.ndarray, parameters, margin: float) -> dict[str, float]:
    """``margin`` x the largest sigma of each cut parameter among ``sigma``'s rows (held-out lenses)."""
    return {p: float(margin * np.max(sigma[:, PARAMETERS.index(p)])) for p in parameters}


def reject(sigma: np.ndarray, cuts: dict[str, float]) -> tuple[np.ndarray, list[str]]:
    """Rows whose sigma exceeds a cut, and for each row the '+'-joined parameters that exceed theirs."""
    over = np.stack([sigma[:, PARAMETERS.index(p)] > c for p, c in cuts.items()], axis=1) if cuts else \
        np.zeros((len(sigma), 0), bool)
    names = list(cuts)
    return over.any(axis=1), ["+".join(n for n, o in zip(names, row) if o) for row in over]
