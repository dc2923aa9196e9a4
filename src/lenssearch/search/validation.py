"""Per-cutout validation before scoring, with the knowledge base's great-expectations suite.

The KB's suite (:mod:`lenssearch.kb.validation`) checks, per cutout: the shape (128 x 128 x 3) and dtype, the
finite fraction (>= ``validate.min_finite_fraction``), per band the noise measured on the cutout's border (from
neighbouring-pixel differences) over the band's expected noise (``validate.noise_ratio_range``) and the
background level (lowest corner median, within ``validate.background_max_sigma`` expected sigmas of zero).

The search applies the same expectations in two ways:

- inline, over each batch (:func:`cutout_statistics`, :func:`failed_checks`), so that a cutout that fails is
  skipped before the model sees it, at a small fraction of the model's cost: a numba kernel
  (:func:`lenssearch.search._kernels.cutout_statistics`, one pass over the batch without the interpreter lock)
  computes the statistics of C-contiguous float32 batches of the expected shape, with the same values, bit for
  bit, as the numpy reference :func:`_cutout_statistics_numpy` (used for any other input);
- with great-expectations itself (:func:`run_expectations`: the KB's ``build_expectations`` and ``run_suite``)
  on the per-cutout statistics, accumulated in chunks of ``search.ge_chunk_rows`` rows (a few numbers per cutout,
  so memory stays bounded). Rows that the suite fails are reported as invalid and their scores withdrawn; the
  number of disagreements with the inline checks is reported (it is zero when both agree, as they should).

The statistics differ from the KB's in three respects: pixels that are exactly zero (no data, or off the image at
a field's edge) are left out, so that a cutout at an edge is judged on its data and caught by the ``edge``
cleaning rule of HOLISMOKES XVI instead; the border noise uses every fourth row of the top and bottom border
strips (:data:`ROW_STRIDE`); and medians are taken over an odd number of values (one partition, e.g. 143 of a
corner's 144 pixels; when some of a corner's pixels are left out, the true median of the others, if there are at
least :data:`BORDER_PIXELS`). Medians are the costly part of validation.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np

from lenssearch.search.inputs import MAD_TO_SIGMA

#: Width (pixels) of the border on which noise and background are measured (as the KB suite).
BORDER_PIXELS = 12

#: Inline check name -> the statistics column(s) it reads.
CHECKS = ("shape", "finite", "noise", "background")


@dataclasses.dataclass(frozen=True)
class ValidationContext:
    """What a cutout is checked against (thresholds are the ``validate`` section, as for the KB).

    Attributes
    ----------
    size, n_bands
        Expected cutout side (pixels) and number of bands.
    bands
        Band names (column names of the statistics).
    noise_sigma
        Expected per-pixel noise of each band (e-/s).
    min_finite_fraction, noise_ratio_range, background_max_sigma
        ``validate.min_finite_fraction``, ``validate.noise_ratio_range``, ``validate.background_max_sigma``.
    """

    size: int
    n_bands: int
    bands: tuple[str, ...]
    noise_sigma: np.ndarray
    min_finite_fraction: float
    noise_ratio_range: tuple[float, float]
    background_max_sigma: float

    @classmethod
    def from_config(cls, vcfg, size: int, bands: Sequence[str], noise_sigma) -> "ValidationContext":
        """From the ``validate`` section of the configuration."""
        return cls(size, len(bands), tuple(bands), np.asarray(noise_sigma, float), vcfg.min_finite_fraction,
                   tuple(vcfg.noise_ratio_range), vcfg.background_max_sigma)


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


def _band_statistics(cutouts: np.ndarray, b: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Background level (lowest data-corner median) and border noise of band ``b`` of n cutouts n x S x S x B.

    Noise: horizontal differences on every :data:`ROW_STRIDE`-th row of the top and bottom border strips;
    level: the lowest median of the four corners. Zero (no-data) and non-finite pixels are left out.
    """
    n, size, _, n_bands = cutouts.shape
    if n == 0:
        return np.zeros(0), np.zeros(0)
    flat = np.ascontiguousarray(cutouts).reshape(n, -1)
    rows = cutouts[..., b][:, _noise_rows(size, width, ROW_STRIDE), :]  # n x r x S (a gather of whole rows)
    diff = (rows[:, :, 1:] - rows[:, :, :-1]).reshape(n, -1)
    good = np.isfinite(diff) & (rows[:, :, 1:] != 0).reshape(n, -1) & (rows[:, :, :-1] != 0).reshape(n, -1)
    sigma = np.full(n, np.nan)
    clean = good.all(axis=1)
    if clean.any():
        sigma[clean] = _robust_sigma_rows(diff[clean] if not clean.all() else diff)
    for i in np.flatnonzero(~clean):
        d = diff[i][good[i]]
        if d.size >= MIN_NOISE_PAIRS:
            sigma[i] = _robust_sigma_rows(d[None])[0]
    corners = np.take(flat, _corner_pixels(size, width) * n_bands + b, axis=1)  # n x 4 x width^2
    usable = np.isfinite(corners) & (corners != 0)
    level = np.full(n, np.nan)
    clean = usable.all(axis=(1, 2))
    if clean.any():
        per_corner = corners[clean].reshape(-1, corners.shape[2])
        level[clean] = _median_rows(per_corner).reshape(-1, 4).min(axis=1)
    for i in np.flatnonzero(~clean):
        medians = [np.median(c[u]) for c, u in zip(corners[i], usable[i]) if u.sum() >= width]
        if medians:
            level[i] = min(medians)
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


def _cutout_statistics_numpy(cutouts: np.ndarray, ctx: ValidationContext) -> dict[str, np.ndarray]:
    """The reference implementation of :func:`cutout_statistics`, vectorised with numpy (any input)."""
    n = len(cutouts)
    shape_ok = _shape_ok(cutouts, ctx)
    stats = _stats_head(cutouts, shape_ok)
    stats["finite_fraction"] = _finite_fraction(cutouts) if shape_ok else np.isfinite(cutouts).mean(
        axis=tuple(range(1, cutouts.ndim)))
    for b, band in enumerate(ctx.bands):
        if shape_ok and ctx.size > 2 * BORDER_PIXELS:
            level, sigma = _band_statistics(cutouts, b, BORDER_PIXELS)
        else:
            level, sigma = np.full(n, np.nan), np.full(n, np.nan)
        _add_band(stats, ctx, b, band, level, sigma)
    return stats


def _shape_ok(cutouts: np.ndarray, ctx: ValidationContext) -> bool:
    return cutouts.ndim == 4 and cutouts.shape[1:] == (ctx.size, ctx.size, ctx.n_bands)


def _stats_head(cutouts: np.ndarray, shape_ok: bool) -> dict[str, np.ndarray]:
    n = len(cutouts)
    return {"shape_ok": np.full(n, shape_ok), "dtype": np.full(n, str(cutouts.dtype))}


def _add_band(stats: dict, ctx: ValidationContext, b: int, band: str, level: np.ndarray, sigma: np.ndarray) -> None:
    stats[f"bg_level_{band}"] = level
    stats[f"bg_sigma_{band}"] = sigma
    stats[f"noise_ratio_{band}"] = sigma / ctx.noise_sigma[b]
    stats[f"bg_level_sigma_{band}"] = level / ctx.noise_sigma[b]


def kernel_usable(cutouts: np.ndarray, ctx: ValidationContext) -> bool:
    """Whether :func:`cutout_statistics` uses the numba kernel: a C-contiguous native float32 batch of the expected
    shape, with cutouts wider than two borders."""
    return (
        isinstance(cutouts, np.ndarray)
        and _shape_ok(cutouts, ctx)
        and cutouts.dtype == np.float32
        and cutouts.dtype.isnative
        and cutouts.flags.c_contiguous
        and ctx.size > 2 * BORDER_PIXELS
    )


def cutout_statistics(cutouts: np.ndarray, ctx: ValidationContext) -> dict[str, np.ndarray]:
    """The KB suite's per-cutout statistics of a batch n x S x S x B.

    Columns: ``shape_ok``, ``dtype``, ``finite_fraction`` and per band ``bg_level_<b>``, ``bg_sigma_<b>``,
    ``noise_ratio_<b>`` (= bg_sigma / expected) and ``bg_level_sigma_<b>`` (= bg_level / expected).
    Computed by the numba kernel where :func:`kernel_usable`, else by :func:`_cutout_statistics_numpy` (the same
    values).
    """
    if not kernel_usable(cutouts, ctx):
        return _cutout_statistics_numpy(cutouts, ctx)
    from lenssearch.search import _kernels

    ff, level, sigma = _kernels.cutout_statistics(
        cutouts, _noise_rows(ctx.size, BORDER_PIXELS, ROW_STRIDE), _corner_pixels(ctx.size, BORDER_PIXELS),
        BORDER_PIXELS, MIN_NOISE_PAIRS, MAD_TO_SIGMA)
    stats = _stats_head(cutouts, True)
    stats["finite_fraction"] = ff
    for b, band in enumerate(ctx.bands):
        _add_band(stats, ctx, b, band, level[b], sigma[b])
    return stats


def failed_checks(stats: dict[str, np.ndarray], ctx: ValidationContext) -> dict[str, np.ndarray]:
    """The suite's per-row expectations applied inline: check name -> True where the cutout fails.

    A check is only reported for cutouts that passed the earlier ones, so each failure names the first problem.
    """
    lo, hi = ctx.noise_ratio_range
    with np.errstate(invalid="ignore"):
        raw = {
            "shape": ~stats["shape_ok"] | (stats["dtype"] != "float32"),
            "finite": ~(stats["finite_fraction"] >= ctx.min_finite_fraction),
            "noise": ~np.all([(stats[f"noise_ratio_{b}"] >= lo) & (stats[f"noise_ratio_{b}"] <= hi)
                              for b in ctx.bands], axis=0),
            "background": ~np.all([np.abs(stats[f"bg_level_sigma_{b}"]) <= ctx.background_max_sigma
                                   for b in ctx.bands], axis=0),
        }
    failed, bad = {}, np.zeros(len(stats["shape_ok"]), dtype=bool)
    for name in CHECKS:
        failed[name] = raw[name] & ~bad
        bad |= raw[name]
    return failed


def validate_batch(cutouts: np.ndarray, ctx: ValidationContext) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Statistics and inline check failures of one batch (see :func:`failed_checks`)."""
    stats = cutout_statistics(cutouts, ctx)
    return stats, failed_checks(stats, ctx)


def failure_labels(failed: dict[str, np.ndarray]) -> list[str]:
    """One string per cutout: the names of the failed checks joined by ``+``, or ``""``."""
    names = list(failed)
    n = len(next(iter(failed.values()))) if failed else 0
    return ["+".join(name for name in names if failed[name][i]) for i in range(n)]


def import_great_expectations() -> None:
    """Import great-expectations and the KB suite (several seconds) ahead of their first use (analytics off, as
    the KB suite); the search runs this in its great-expectations worker as soon as it starts."""
    import os

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations  # noqa: F401
    import pandas  # noqa: F401

    import lenssearch.kb.validation  # noqa: F401


def run_expectations(stats: dict[str, np.ndarray], ctx: ValidationContext, vcfg) -> tuple[np.ndarray, list[dict]]:
    """Run the KB's great-expectations suite on per-cutout statistics.

    Parameters
    ----------
    stats
        Columns of :func:`cutout_statistics` for some rows (e.g. a chunk of a search).
    vcfg
        The ``validate`` section (thresholds of the suite).

    Returns
    -------
    passed, failures
        Per-row pass flags, and for each failing expectation its type, column and number of failing rows.
    """
    import pandas as pd

    from lenssearch.kb.validation import build_expectations, run_suite

    df = pd.DataFrame({k: np.asarray(v) for k, v in stats.items()})
    df["id"] = [f"row-{i}" for i in range(len(df))]
    expectations = build_expectations(df, vcfg, None, ctx.bands, (ctx.size, ctx.size, ctx.n_bands))
    result, _ = run_suite(df, expectations, "lenssearch_search")
    passed = np.ones(len(df), dtype=bool)
    failures = []
    for run in result.run_results.values():
        for r in run.results:
            if r.success:
                continue
            res = r.result or {}
            rows = [int(v) for v in (res.get("unexpected_index_list") or []) if isinstance(v, (int, np.integer))]
            passed[np.asarray(rows, dtype=int)] = False
            failures.append({"expectation": r.expectation_config.type,
                             "column": r.expectation_config.kwargs.get("column"), "rows": len(rows)})
    return passed, failures


@dataclasses.dataclass(frozen=True)
class SharedStats:
    """Where a chunk of per-cutout statistics lies in shared memory: the block's name, the record dtype of one row
    (one field per statistics column, plus the fields in ``extra`` that are not statistics) and the number of rows.
    Handed to the great-expectations worker instead of the statistics themselves (a few bytes to pickle)."""

    name: str
    dtype: np.dtype
    rows: int
    extra: tuple[str, ...] = ()

    def read(self) -> dict[str, np.ndarray]:
        """Copies of the statistics columns (the block is left as it is)."""
        from lenssearch.search.workers import read_shared_block

        return read_shared_block(self.name, (self.rows,), self.dtype, lambda table: {
            k: np.array(table[k]) for k in self.dtype.names if k not in self.extra})


def run_shared_expectations(where: SharedStats, ctx: ValidationContext, vcfg) -> tuple[np.ndarray, list[dict]]:
    """:func:`run_expectations` on statistics in shared memory (:class:`SharedStats`): the search's
    great-expectations worker runs this, so that the search neither concatenates nor pickles the ~3 MB of a chunk's
    statistics (transient blocks that glibc's allocator keeps, fragmented, in a long search)."""
    return run_expectations(where.read(), ctx, vcfg)
