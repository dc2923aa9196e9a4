"""The rejection rule of HOLISMOKES XVI (Sect. 3.2, Fig. 4): cuts on the modeling network's predicted uncertainties.

HOLISMOKES XVI allows, for each parameter, the range of predicted sigmas spanned by a sample of lenses ("defined by
the highest and/or lowest uncertainty of the lens sample"), so that none of them is rejected; a network trained on
lenses only is forced to answer on a non-lens, and its uncertainty there is unusually large or, where it falls back
on the lens galaxy's light alone, unusually small.

A lens's sigma grows with its size (a 2" ring has a larger absolute theta_E uncertainty than a 0.5" one; its arcs
reach the cutout's edge), so a flat range is set by the largest lenses and passes every non-lens of ordinary size.
The range is therefore taken **at the predicted Einstein radius**: for each cut parameter ``p``

    r_p = log sigma_p - T_p(log pred theta_E),

where ``T_p`` is a polynomial of degree ``trend_degree`` fitted (least squares) to the held-out lenses (constant
beyond the range of their predicted theta_E: no extrapolation), and the
allowed range of ``r_p`` is ``[lowest - log margin, highest + log margin]`` over the same lenses (``margin >= 1``:
none of them is rejected). Degree 0 is the paper's flat range of sigma exactly. A cutout whose ``r_p`` leaves its
range for any cut parameter is rejected; ``modeling_rejected_by`` names the parameters.

The cuts are set on the lenses they are then checked on, so "none rejected" holds by construction.
:func:`cross_checked_loss` measures what matters for lenses not seen: the cuts are set on k-1 folds of the
held-out lenses and applied to the last, in turn.
"""

from __future__ import annotations

import numpy as np

from lenssearch.simulate.truth import PARAMETERS

#: The parameter whose prediction the sigma ranges are conditioned on.
CONDITIONED_ON = "theta_e_arcsec"


def _x(pred_theta_e, theta_range) -> np.ndarray:
    return np.log(np.clip(np.asarray(pred_theta_e, float), *theta_range))


def _residual(mean, sigma, cut: dict, p: str, theta_range) -> np.ndarray:
    trend = np.polynomial.polynomial.polyval(_x(np.asarray(mean, float)[:, PARAMETERS.index(CONDITIONED_ON)],
                                                theta_range), cut["trend"])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.asarray(sigma, float)[:, PARAMETERS.index(p)]) - trend


def rejection_cuts(mean: np.ndarray, sigma: np.ndarray, parameters, margin: float, degree: int) -> dict:
    """The cuts set on the held-out lenses ``mean``, ``sigma`` (rows, columns in ``PARAMETERS`` order):
    ``{"conditioned_on", "theta_e_range_arcsec", "degree", "margin", "parameters": {p: {"trend": [c0, c1, ...],
    "log_range": [low, high]}}}`` (the module docstring)."""
    pred = np.asarray(mean, float)[:, PARAMETERS.index(CONDITIONED_ON)]
    theta_range = [float(max(np.min(pred), 1e-3)), float(max(np.max(pred), 1e-3))]
    x = _x(pred, theta_range)
    out = {"conditioned_on": CONDITIONED_ON, "theta_e_range_arcsec": theta_range, "degree": int(degree),
           "margin": float(margin), "parameters": {}}
    for p in parameters:
        y = np.log(np.asarray(sigma, float)[:, PARAMETERS.index(p)])
        trend = np.polynomial.polynomial.polyfit(x, y, int(degree))
        r = y - np.polynomial.polynomial.polyval(x, trend)
        out["parameters"][p] = {"trend": [float(c) for c in trend],
                                "log_range": [float(r.min() - np.log(margin)), float(r.max() + np.log(margin))]}
    return out


def reject(mean: np.ndarray, sigma: np.ndarray, cuts: dict) -> tuple[np.ndarray, list[str]]:
    """Rows whose sigma leaves a cut's range at their predicted theta_E, and for each row the '+'-joined
    parameters that leave theirs."""
    names = list(cuts.get("parameters", {}))
    if not names or not len(sigma):
        return np.zeros(len(sigma), bool), [""] * len(sigma)
    over = []
    for p in names:
        lo, hi = cuts["parameters"][p]["log_range"]
        r = _residual(mean, sigma, cuts["parameters"][p], p, cuts["theta_e_range_arcsec"])
        over.append(~((r >= lo) & (r <= hi)))  # NaN (no prediction) counts as out of range
    over = np.stack(over, axis=1)
    return over.any(axis=1), ["+".join(n for n, o in zip(names, row) if o) for row in over]


def sigma_range(cuts: dict, p: str, pred_theta_e) -> tuple[np.ndarray, np.ndarray]:
    """The allowed (low, high) sigma of parameter ``p`` at predicted Einstein radii ``pred_theta_e``."""
    cut = cuts["parameters"][p]
    t = np.polynomial.polynomial.polyval(_x(pred_theta_e, cuts["theta_e_range_arcsec"]), cut["trend"])
    return np.exp(t + cut["log_range"][0]), np.exp(t + cut["log_range"][1])


def cross_checked_loss(mean: np.ndarray, sigma: np.ndarray, parameters, margin: float, degree: int,
                       folds: int, seed: int) -> float:
    """Fraction of held-out lenses rejected by cuts set on the other ``folds - 1`` folds of them: the expected
    loss of lenses that the cuts have not seen (with ``(folds - 1) / folds`` of the lenses behind each cut)."""
    n = len(sigma)
    order = np.random.default_rng(seed).permutation(n)
    lost = 0
    for k in range(folds):
        test = np.zeros(n, bool)
        test[order[k::folds]] = True
        cuts = rejection_cuts(mean[~test], sigma[~test], parameters, margin, degree)
        lost += int(reject(mean[test], sigma[test], cuts)[0].sum())
    return lost / n if n else float("nan")


def parse_cuts(raw: dict, source: str) -> dict:
    """Cuts read from a ``model.json`` (the structure of :func:`rejection_cuts`), checked."""
    from lenssearch.errors import InputFileError

    try:
        lo_te, hi_te = (float(v) for v in raw["theta_e_range_arcsec"])
        params = dict(raw["parameters"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(f"{source}: the cuts need 'theta_e_range_arcsec' [low, high] and 'parameters' "
                             f"({exc})") from None
    if raw.get("conditioned_on", CONDITIONED_ON) != CONDITIONED_ON or not 0 < lo_te <= hi_te:
        raise InputFileError(f"{source}: the cuts must be conditioned on {CONDITIONED_ON} over a positive "
                             f"theta_e_range_arcsec, got [{lo_te}, {hi_te}]")
    cuts = {**raw, "theta_e_range_arcsec": [lo_te, hi_te], "parameters": {}}
    for name, value in params.items():
        if name not in PARAMETERS:
            raise InputFileError(f"{source}: cut on unknown parameter '{name}' (known: {list(PARAMETERS)})")
        try:
            trend = [float(c) for c in value["trend"]]
            lo, hi = (float(v) for v in value["log_range"])
        except (TypeError, ValueError, KeyError):
            raise InputFileError(f"{source}: the cut of '{name}' must be {{'trend': [c0, ...], "
                                 f"'log_range': [low, high]}}, got {value!r}") from None
        if not trend or not all(np.isfinite(trend)) or not lo <= hi:
            raise InputFileError(f"{source}: the cut of '{name}' has no trend or low {lo} > high {hi}")
        cuts["parameters"][name] = {"trend": trend, "log_range": [lo, hi]}
    return cuts
