"""The per-cutout statistics that the cutout checks judge: one implementation for the KB's great-expectations suite
(:mod:`lenssearch.kb.validation`) and the search's inline checks (:mod:`lenssearch.search.checks`).

For each cutout: shape and dtype, the fraction of finite pixels, and per band

- the border noise: 1.4826 MAD / sqrt(2) of the differences of horizontally adjacent pixels on every
  :data:`ROW_STRIDE`-th row of the top and bottom ``BORDER_PIXELS``-pixel border strips (smooth light, galaxy
  wings or intracluster light, cancels in the differences);
- the background level: the lowest of the medians of the four ``BORDER_PIXELS``-square corners (the corners are
  farthest from the centred galaxy; the lowest is the least contaminated by neighbours);

and their ratios to the band's expected noise. Pixels that are exactly zero (no data: off the image at a field's
edge) and non-finite pixels are left out, so that a cutout at an edge is judged on its data (and caught by the
``edge`` cleaning rule of HOLISMOKES XVI in a search). Everything is computed for a batch at once with numpy;
medians are taken over an odd number of values (one partition), the costly part of the checks.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

#: 1 / Phi^-1(3/4): a Gaussian's sigma from its median absolute deviation.
MAD_TO_SIGMA = 1.482602218505602

#: Width (pixels) of the border on which noise and background are measured.
BORDER_PIXELS = 12



@dataclasses.dataclass(frozen=True)
class ValidationContext:
    """What a cutout is checked against.

    Attributes
    ----------
    size, bands
        Expected cutout side (pixels) and band names (in the order of the cutouts' last axis).
    noise_sigma
        Expected per-pixel noise of each band (e-/s).
    vcfg
        The ``validate`` section (thresholds, as for the KB); None for statistics only.
    """

    size: int
    bands: tuple[str, ...]
    noise_sigma: np.ndarray
    vcfg: object = None

    @property
    def n_bands(self) -> int:
        return len(self.bands)


#: Border rows whose horizontal pixel pairs enter the noise estimate: every fourth row of the top and bottom
#: ``BORDER_PIXELS`` rows (6 rows, 762 pairs of a 128-pixel cutout; the KB suite uses all 5336 border pairs,
#: including the left and right strips). Contiguous rows are cheap to gather; the estimate is good to ~6%, ample
#: for the plausibility range ``validate.noise_ratio_range``.
ROW_STRIDE = 4

#: Fewest good pixel pairs (of the noise rows) for a noise estimate when some pairs are not usable.
MIN_NOISE_PAIRS = 50


@functools.lru_cache(maxsize=8)
def _noise_rows(size: int, width: int, stride: int) -> np.ndarray:
    return np.concatenate([np.arange(0, width, stride), np.arange(size - width, size, stride)])


@functools.lru_cache(maxsize=8)
def _corner_pixels(size: int, width: int) -> np.ndarray:
    """Flat pixel indices of the four ``width x width`` corners, shape 4 x width^2."""
    r, c = np.mgrid[:width, :width]
    starts = [(0, 0), (0, size - width), (size - width, 0), (size - width, size - width)]
    return np.stack([((r + r0) * size + (c + c0)).ravel() for r0, c0 in starts])


def _median_rows(d: np.ndarray) -> np.ndarray:
    """Median of each row, with one partition (an odd number of values: the last is dropped if needed)."""
    m = d.shape[1] - (1 - d.shape[1] % 2)
    k = m // 2
    return np.partition(d[:, :m], k, axis=1)[:, k]


def _robust_sigma_rows(d: np.ndarray) -> np.ndarray:
    """Gaussian sigma of pixels whose pairwise differences are the rows of ``d``: 1.4826 MAD / sqrt(2)."""
    med = _median_rows(d)[:, None]
    return MAD_TO_SIGMA * _median_rows(np.abs(d - med)).astype(np.float64) / np.sqrt(2.0)


def _last_kept(keep: np.ndarray) -> np.ndarray:
    """``keep`` without the last kept value of each row that keeps an even number of them (as :func:`_median_rows`
    drops the last of an even number of values)."""
    count = keep.sum(axis=1)
    even = np.flatnonzero((count % 2 == 0) & (count > 0))
    keep = keep.copy()
    keep[even, keep.shape[1] - 1 - np.argmax(keep[even, ::-1], axis=1)] = False
    return keep


def _kth_kept(d: np.ndarray, keep: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The ``k``-th smallest of the kept (finite) values of each row: one sort, the others sorted last."""
    ranked = np.sort(np.where(keep, d, np.inf), axis=1)
    return ranked[np.arange(len(d)), np.maximum(k, 0)]


def _robust_sigma_kept(d: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """:func:`_robust_sigma_rows` of the kept values of each row (in their order), every row at once."""
    keep = _last_kept(keep)
    k = keep.sum(axis=1) // 2
    med = _kth_kept(d, keep, k)[:, None]
    return MAD_TO_SIGMA * _kth_kept(np.abs(d - med), keep, k).astype(np.float64) / np.sqrt(2.0)


def _median_kept(d: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``np.median`` of the kept (finite) values of each row (the mean of the middle two of an even number, in the
    values' precision), every row at once; NaN where none is kept."""
    count = keep.sum(axis=1)
    ranked = np.sort(np.where(keep, d, np.inf), axis=1)
    rows = np.arange(len(d))
    low, high = ranked[rows, np.maximum((count - 1) // 2, 0)], ranked[rows, count // 2 - (count == 0)]
    out = np.where(count % 2 == 1, low, (low + high) / d.dtype.type(2))
    return np.where(count > 0, out, np.nan)


def band_statistics(cutouts: np.ndarray, b: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Background level (lowest data-corner median) and border noise of band ``b`` of n cutouts n x S x S x B.

    Noise: horizontal differences on every :data:`ROW_STRIDE`-th row of the top and bottom border strips;
    level: the lowest median of the four corners. Zero (no-data) and non-finite pixels are left out.
    """
    n, size, _, n_bands = cutouts.shape
    if n == 0:
        return np.zeros(0), np.zeros(0)
    flat = np.ascontiguousarray(cutouts).reshape(n, -1)
    rows = cutouts[..., b][:, _noise_rows(size, width, ROW_STRIDE), :]  # n x r x S (a gather of whole rows)
    data = rows != 0
    diff = rows[:, :, 1:] - rows[:, :, :-1]
    good = np.isfinite(diff)
    good &= data[:, :, 1:]
    good &= data[:, :, :-1]
    diff, good = diff.reshape(n, -1), good.reshape(n, -1)
    sigma = np.full(n, np.nan)
    clean = good.all(axis=1)
    if clean.any():
        sigma[clean] = _robust_sigma_rows(diff[clean] if not clean.all() else diff)
    some = np.flatnonzero(~clean & (good.sum(axis=1) >= MIN_NOISE_PAIRS))  # at an edge: the good pairs
    if len(some):
        sigma[some] = _robust_sigma_kept(diff[some], good[some])
    corners = np.take(flat, _corner_pixels(size, width) * n_bands + b, axis=1)  # n x 4 x width^2
    usable = np.isfinite(corners) & (corners != 0)
    level = np.full(n, np.nan)
    clean = usable.all(axis=(1, 2))
    if clean.any():
        per_corner = corners[clean].reshape(-1, corners.shape[2])
        level[clean] = _median_rows(per_corner).reshape(-1, 4).min(axis=1)
    some = np.flatnonzero(~clean)  # at an edge: the lowest median of the corners with >= width usable pixels
    if len(some):
        c, u = corners[some].reshape(-1, corners.shape[2]), usable[some].reshape(-1, corners.shape[2])
        medians = np.where(u.sum(axis=1) >= width, _median_kept(c, u), np.inf).reshape(-1, 4).min(axis=1)
        level[some] = np.where(np.isfinite(medians), medians, np.nan)
    return level, sigma


def _finite_fraction(cutouts: np.ndarray) -> np.ndarray:
    """Fraction of finite pixels per cutout (a sum is finite iff every term is: a cheap first pass)."""
    n = len(cutouts)
    if n == 0:
        return np.zeros(0)
    out = np.ones(n)
    with np.errstate(invalid="ignore", over="ignore"):
        suspect = ~np.isfinite(cutouts.reshape(n, -1).sum(axis=1))
    for i in np.flatnonzero(suspect):
        out[i] = float(np.isfinite(cutouts[i]).mean())
    return out


def batch_statistics(cutouts: np.ndarray, ctx: ValidationContext) -> dict[str, np.ndarray]:
    """The per-cutout statistics of a batch n x S x S x B (the module docstring), without the ratios:
    ``shape_ok``, ``dtype``, ``finite_fraction`` and per band ``bg_level_<b>`` and ``bg_sigma_<b>``."""
    n = len(cutouts)
    shape_ok = _shape_ok(cutouts, ctx)
    stats = _stats_head(cutouts, shape_ok)
    stats["finite_fraction"] = _finite_fraction(cutouts) if shape_ok else np.isfinite(cutouts).mean(
        axis=tuple(range(1, cutouts.ndim)))
    for b, band in enumerate(ctx.bands):
        if shape_ok and ctx.size > 2 * BORDER_PIXELS:
            level, sigma = band_statistics(cutouts, b, BORDER_PIXELS)
        else:
            level, sigma = np.full(n, np.nan), np.full(n, np.nan)
        stats[f"bg_level_{band}"] = level
        stats[f"bg_sigma_{band}"] = sigma
    return stats


def cutout_statistics(cutouts: np.ndarray, ctx: ValidationContext) -> dict[str, np.ndarray]:
    """:func:`batch_statistics` and per band ``noise_ratio_<b>`` (= bg_sigma / expected) and
    ``bg_level_sigma_<b>`` (= bg_level / expected), with the expected noise ``ctx.noise_sigma``."""
    stats = batch_statistics(cutouts, ctx)
    for b, band in enumerate(ctx.bands):
        stats[f"noise_ratio_{band}"] = stats[f"bg_sigma_{band}"] / ctx.noise_sigma[b]
        stats[f"bg_level_sigma_{band}"] = stats[f"bg_level_{band}"] / ctx.noise_sigma[b]
    return stats


def _shape_ok(cutouts: np.ndarray, ctx: ValidationContext) -> bool:
    return cutouts.ndim == 4 and cutouts.shape[1:] == (ctx.size, ctx.size, ctx.n_bands)


def _stats_head(cutouts: np.ndarray, shape_ok: bool) -> dict[str, np.ndarray]:
    n = len(cutouts)
    return {"shape_ok": np.full(n, shape_ok), "dtype": np.full(n, str(cutouts.dtype))}
