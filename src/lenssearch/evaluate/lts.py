"""Robust straight-line fit with intrinsic scatter: least trimmed squares + sigma clipping (LTS_LINEFIT).

Angora et al. 2023 (Sect. 4.3) normalise the cluster members' colour by the red sequence,
``(F606W - F814W)_norm = (F606W - F814W)_obs - CM(F814W)``, with the colour-magnitude relation CM fitted by the
robust regression of Cappellari et al. 2013 (MNRAS 432, 1709, Sect. 3.2, the ``lts_linefit`` program), which
combines the least-trimmed-squares (LTS) technique of Rousseeuw & Van Driessen 2006 (FAST-LTS) with a fit of the
intrinsic scatter. This is an independent numpy implementation of that procedure:

1. **LTS.** The model is ``y = a + b (x - x0)``. For a trial line the residuals are normalised by the measurement
   errors, ``r_i = (y_i - a - b (x_i - x0)) / sqrt(sig_y_i^2 + b^2 sig_x_i^2)``. FAST-LTS looks for the
   ``h = frac * N`` points whose sum of squared residuals is smallest: many random 2-point starts, each improved
   by "concentration steps" (fit the ``h`` points with the smallest residuals, recompute, repeat: the sum never
   increases; Rousseeuw & Van Driessen 2006, Theorem 1), the best ten iterated to convergence.
2. **Scale.** The scatter of the ``h`` best points underestimates that of a Gaussian; it is corrected by the
   consistency factor of a normal distribution trimmed to the central fraction ``alpha = h / N``,
   ``sigma^2 = s_h^2 * alpha / (alpha - 2 q phi(q))`` with ``q = Phi^-1((1 + alpha) / 2)``. The intrinsic scatter
   ``eps`` is what must be added in quadrature to the errors for that scale.
3. **Clipping with intrinsic scatter.** Points with ``|y - a - b (x - x0)| > clip * sqrt(sig_y^2 + b^2 sig_x^2
   + eps^2)`` (``clip = 2.6``, 99 per cent of a Gaussian) are outliers; the line is refitted by weighted least
   squares to the others, with ``eps`` chosen so that ``chi^2 / (m - 2) = 1`` (Cappellari et al. 2013, eq. 6),
   until the set of outliers no longer changes. Here the target chi^2 per degree of freedom is that of a Gaussian
   clipped at ``clip`` sigma (0.95 for 2.6 sigma) rather than 1, which removes the small downward bias of ``eps``
   that clipping a Gaussian's tails would otherwise cause.

Without measurement errors (``sig_y = sig_x = 0``) the procedure is the classical LTS line fit, and ``eps`` is
the rms scatter of the inliers about the line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from lenssearch.errors import LensSearchError


@dataclass(frozen=True)
class LineFit:
    """Result of :func:`lts_linefit`: ``y = intercept + slope * (x - pivot)``."""

    intercept: float
    slope: float
    pivot: float
    intrinsic_scatter: float
    intercept_err: float
    slope_err: float
    inliers: np.ndarray  # bool mask, False for the clipped outliers
    rms: float  # rms of the inlier residuals

    def __call__(self, x) -> np.ndarray:
        """Evaluate the line at ``x``."""
        return self.intercept + self.slope * (np.asarray(x, dtype=float) - self.pivot)


def _wls(x, y, w):
    """Weighted least-squares line through the origin-shifted ``x``; returns (a, b, cov)."""
    sw = w.sum()
    sx, sy = (w * x).sum(), (w * y).sum()
    sxx, sxy = (w * x * x).sum(), (w * x * y).sum()
    det = sw * sxx - sx * sx
    if det <= 0 or not np.isfinite(det):
        return np.nan, np.nan, np.full((2, 2), np.nan)
    a = (sxx * sy - sx * sxy) / det
    b = (sw * sxy - sx * sy) / det
    cov = np.array([[sxx, -sx], [-sx, sw]]) / det
    return a, b, cov


def _fit_errors(x, y, sx2, sy2, eps, b0, n_iter=5):
    """WLS with weights 1 / (sig_y^2 + b^2 sig_x^2 + eps^2), iterating on the slope in the weights."""
    b = b0
    a = np.nan
    cov = np.full((2, 2), np.nan)
    for _ in range(n_iter):
        var = sy2 + b * b * sx2 + eps * eps
        a, b_new, cov = _wls(x, y, 1.0 / var)
        if not np.isfinite(b_new) or abs(b_new - b) < 1e-12 * (1 + abs(b)):
            b = b_new
            break
        b = b_new
    return a, b, cov


def _fit_with_scatter(x, y, sx2, sy2, b0, has_errors: bool, target: float = 1.0):
    """Fit a line and the intrinsic scatter so that chi^2 / (m - 2) = ``target`` (Cappellari et al. 2013, eq. 6).

    ``target`` < 1 is the expected chi^2 per degree of freedom of a Gaussian clipped at ``clip`` sigma.
    """
    m = x.size
    dof = max(m - 2, 1) * target
    if not has_errors:
        a, b, cov = _wls(x, y, np.ones_like(x))
        res = y - a - b * x
        eps = float(np.sqrt(np.sum(res**2) / dof))
        return a, b, eps, cov * eps**2

    def chi2_minus_dof(eps):
        a, b, _ = _fit_errors(x, y, sx2, sy2, eps, b0)
        res = y - a - b * x
        return np.sum(res**2 / (sy2 + b * b * sx2 + eps * eps)) - dof

    if chi2_minus_dof(0.0) <= 0:
        eps = 0.0
    else:
        hi = float(np.std(y)) + 1e-12
        while chi2_minus_dof(hi) > 0:
            hi *= 2
        eps = optimize.brentq(chi2_minus_dof, 0.0, hi, xtol=1e-10 * hi)
    a, b, cov = _fit_errors(x, y, sx2, sy2, eps, b0)
    return a, b, float(eps), cov


def _consistency_factor(alpha: float) -> float:
    """Variance of a standard normal over its central fraction ``alpha``, i.e. E[z^2 | |z| < q] * alpha / alpha."""
    if alpha >= 1:
        return 1.0
    q = stats.norm.ppf(0.5 * (1 + alpha))
    return (alpha - 2 * q * stats.norm.pdf(q)) / alpha


def _concentrate(x, y, sx2, sy2, subset, h, max_steps):
    """C-steps of FAST-LTS from ``subset``: refit the h points with smallest normalised residuals."""
    b = 0.0
    obj = np.inf
    for _ in range(max_steps):
        a, b, _ = _fit_errors(x[subset], y[subset], sx2[subset], sy2[subset], 0.0, b, n_iter=2)
        if not np.isfinite(a):
            return np.inf, subset
        r2 = (y - a - b * x) ** 2 / (sy2 + b * b * sx2)
        new = np.argpartition(r2, h - 1)[:h]
        new_obj = float(np.sum(r2[new]))
        if new_obj >= obj - 1e-12 * abs(obj):
            return min(obj, new_obj), np.sort(new)
        obj, subset = new_obj, new
    return obj, np.sort(subset)


def lts_linefit(
    x,
    y,
    sig_x=None,
    sig_y=None,
    *,
    rng: np.random.Generator,
    clip: float = 2.6,
    frac: float = 0.5,
    pivot: float | None = None,
    n_starts: int = 200,
    max_iter: int = 50,
) -> LineFit:
    """Robust line fit ``y = a + b (x - pivot)`` with intrinsic scatter and outlier clipping.

    Parameters
    ----------
    x, y
        The data (e.g. F814W magnitude and F606W - F814W colour of cluster members).
    sig_x, sig_y
        1-sigma measurement errors (scalars or arrays); ``None`` means 0 (the classical LTS fit).
    rng
        Random generator for the FAST-LTS starting subsets.
    clip
        Outliers are points beyond ``clip`` times the total (measured + intrinsic) scatter; 2.6 as in
        Cappellari et al. 2013.
    frac
        Fraction ``h / N`` of points of the LTS subset (0.5: maximal breakdown point).
    pivot
        ``x0`` of the line (default: the median of ``x``), which decorrelates intercept and slope.
    n_starts
        Number of random 2-point starts of FAST-LTS.
    max_iter
        Maximum number of clipping iterations.

    Raises
    ------
    LensSearchError
        Fewer than 3 finite points, or bad options.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = x.size
    sx = np.zeros(n) if sig_x is None else np.broadcast_to(np.asarray(sig_x, dtype=float), x.shape).copy()
    sy = np.zeros(n) if sig_y is None else np.broadcast_to(np.asarray(sig_y, dtype=float), x.shape).copy()
    if x.shape != y.shape or x.ndim != 1:
        raise LensSearchError(f"lts_linefit: x {x.shape} and y {y.shape} must be equal 1-D arrays")
    good = np.isfinite(x) & np.isfinite(y) & np.isfinite(sx) & np.isfinite(sy)
    if good.sum() < 3:
        raise LensSearchError(f"lts_linefit: need at least 3 finite points, got {int(good.sum())}")
    if not 0 < frac <= 1:
        raise LensSearchError(f"lts_linefit: frac must be in (0, 1], got {frac}")
    has_errors = bool(np.any(sx[good] > 0) or np.any(sy[good] > 0))
    x0 = float(np.median(x[good])) if pivot is None else float(pivot)
    xg, yg = x[good] - x0, y[good]
    # without errors every point gets unit weight: the classical (unweighted) LTS
    sx2 = sx[good] ** 2 if has_errors else np.zeros(xg.size)
    sy2 = sy[good] ** 2 if has_errors else np.ones(xg.size)
    if has_errors and np.any(sy2 + sx2 <= 0):
        sy2 = np.maximum(sy2, 1e-12 * np.max(sy2 + sx2))
    m = xg.size
    h = max(int(np.floor(frac * m)), 3)

    # 1. FAST-LTS: random 2-point starts, two C-steps each; the best ten iterated to convergence
    trials = []
    for _ in range(n_starts):
        pair = rng.choice(m, size=2, replace=False)
        if xg[pair[0]] == xg[pair[1]]:
            continue
        obj, subset = _concentrate(xg, yg, sx2, sy2, pair, h, max_steps=2)
        trials.append((obj, subset))
    if not trials:
        raise LensSearchError("lts_linefit: all x values are equal; a line cannot be fitted")
    trials.sort(key=lambda t: t[0])
    best_obj, best_subset = np.inf, trials[0][1]
    for obj, subset in trials[:10]:
        obj, subset = _concentrate(xg, yg, sx2, sy2, subset, h, max_steps=100)
        if obj < best_obj:
            best_obj, best_subset = obj, subset

    # 2. scale of the LTS subset, corrected for trimming, and the first outliers
    sub = best_subset
    a, b, eps, _ = _fit_with_scatter(xg[sub], yg[sub], sx2[sub], sy2[sub], 0.0, has_errors)
    res = yg - a - b * xg
    base = sy2 + b * b * sx2 if has_errors else np.zeros(m)
    var_h = np.mean(res[sub] ** 2 / (base[sub] + eps**2)) if has_errors else np.mean(res[sub] ** 2)
    scale2 = var_h / _consistency_factor(h / m)
    tot = (base + eps**2) * scale2 if has_errors else np.full(m, scale2)
    inl = res**2 <= clip**2 * tot

    # 3. iterate: fit line + intrinsic scatter on the inliers, clip at `clip` total sigma, until stable
    cov = np.full((2, 2), np.nan)
    clipped_var = _consistency_factor(float(stats.norm.cdf(clip) - stats.norm.cdf(-clip)))
    for _ in range(max_iter):
        a, b, eps, cov = _fit_with_scatter(xg[inl], yg[inl], sx2[inl], sy2[inl], b, has_errors, clipped_var)
        res = yg - a - b * xg
        tot = (sy2 + b * b * sx2 + eps**2) if has_errors else np.full(m, eps**2)
        new = res**2 <= clip**2 * tot
        if np.array_equal(new, inl):
            break
        inl = new
    inliers = np.zeros(n, dtype=bool)
    inliers[np.flatnonzero(good)[inl]] = True
    return LineFit(
        intercept=float(a),
        slope=float(b),
        pivot=x0,
        intrinsic_scatter=float(eps),
        intercept_err=float(np.sqrt(cov[0, 0])),
        slope_err=float(np.sqrt(cov[1, 1])),
        inliers=inliers,
        rms=float(np.sqrt(np.mean(res[inl] ** 2))),
    )
