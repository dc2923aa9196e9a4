"""The rejection rule of HOLISMOKES XVI (Sect. 3.2, Fig. 4): cuts on the modeling network's predicted uncertainties.

For each cut parameter the allowed range of its predicted sigma is ``[lowest / margin, highest x margin]`` over
held-out lenses ("defined by the highest and/or lowest uncertainty of the lens sample"; ``margin >= 1``: none of
them is rejected). A cutout whose sigma leaves the range of any cut parameter is rejected as a likely non-lens: a
network trained on lenses only is forced to answer on a non-lens, and its uncertainty there is unusually large
or, where it falls back on the lens galaxy's light alone, unusually small.
"""

from __future__ import annotations

import numpy as np

from lenssearch.simulate.truth import PARAMETERS


def rejection_cuts(sigma: np.ndarray, parameters, margin: float) -> dict[str, list[float]]:
    """``{parameter: [lowest / margin, highest x margin]}`` of the sigmas in ``sigma``'s rows (held-out lenses)."""
    return {p: [float(np.min(sigma[:, PARAMETERS.index(p)]) / margin),
                float(margin * np.max(sigma[:, PARAMETERS.index(p)]))] for p in parameters}


def reject(sigma: np.ndarray, cuts: dict) -> tuple[np.ndarray, list[str]]:
    """Rows whose sigma leaves a cut's range, and for each row the '+'-joined parameters that leave theirs."""
    names = list(cuts)
    if not names:
        return np.zeros(len(sigma), bool), [""] * len(sigma)
    over = np.stack([(sigma[:, PARAMETERS.index(p)] < cuts[p][0]) | (sigma[:, PARAMETERS.index(p)] > cuts[p][1])
                     for p in names], axis=1)
    return over.any(axis=1), ["+".join(n for n, o in zip(names, row) if o) for row in over]


def parse_cuts(raw: dict, source: str) -> dict[str, list[float]]:
    """Cuts read from a ``model.json``: ``{parameter: [low, high]}`` with known parameters and low <= high."""
    from lenssearch.errors import InputFileError

    cuts = {}
    for name, value in raw.items():
        if name not in PARAMETERS:
            raise InputFileError(f"{source}: cut on unknown parameter '{name}' (known: {list(PARAMETERS)})")
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise InputFileError(f"{source}: the cut of '{name}' must be [low, high], got {value!r}") from None
        if not lo <= hi:
            raise InputFileError(f"{source}: the cut of '{name}' has low {lo} > high {hi}")
        cuts[name] = [lo, hi]
    return cuts
