"""Per-cutout checks before scoring: a cutout that fails one is reported and skipped, never silently scored.

The checks mirror the knowledge base's great-expectations suite (``lenssearch.kb.validation``): shape, finite
pixels, band coverage and a noise level plausible for the band. They run vectorised over a batch of cutouts so
that validation costs a small fraction of a network's prediction (the search benchmark requires the whole search
to run at >= 0.8 of the bare model's throughput); WCS alignment across bands is checked once per field by
:class:`lenssearch.search.inputs.FieldImages`.

Each check is a function ``check(cutouts, context) -> failed`` (bool array of length n) in :data:`CHECKS`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from lenssearch.search.inputs import MAD_TO_SIGMA


@dataclasses.dataclass(frozen=True)
class ValidationContext:
    """What a cutout is checked against.

    Attributes
    ----------
    size
        Expected cutout side in pixels.
    n_bands
        Expected number of bands.
    noise_sigma
        Expected per-pixel noise of each band (e-/s), e.g. measured on the field's images.
    noise_ratio_min, noise_ratio_max
        Plausible range of (cutout noise) / (band noise).
    """

    size: int
    n_bands: int
    noise_sigma: np.ndarray
    noise_ratio_min: float
    noise_ratio_max: float


def _noise_one(pixels: np.ndarray) -> float:
    """Robust noise from horizontal differences of one band, ignoring pairs that touch zero (no-data) pixels."""
    diff = np.diff(pixels, axis=-1)
    good = (pixels[:, 1:] != 0) & (pixels[:, :-1] != 0) & np.isfinite(diff)
    if good.sum() < 50:
        return np.nan
    d = diff[good]
    return float(MAD_TO_SIGMA * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def cutout_noise(cutouts: np.ndarray) -> np.ndarray:
    """Per-cutout, per-band pixel noise (n x B) from neighbouring-pixel differences on every second row.

    Differences cancel smooth light (the lens galaxy, background gradients); zero (no-data) pixels are ignored.
    """
    sub = cutouts[:, ::2, :, :]
    n, _, _, n_bands = sub.shape
    out = np.empty((n, n_bands))
    has_zero = (sub == 0).any(axis=(1, 2))  # n x B
    for b in range(n_bands):
        band = sub[..., b]
        diff = np.diff(band, axis=-1).reshape(n, -1)
        med = np.median(diff, axis=1, keepdims=True)
        out[:, b] = MAD_TO_SIGMA * np.median(np.abs(diff - med), axis=1) / np.sqrt(2.0)
        for i in np.flatnonzero(has_zero[:, b]):
            out[i, b] = _noise_one(band[i])
    return out


def check_shape(cutouts: np.ndarray, ctx: ValidationContext) -> np.ndarray:
    """Fail every cutout of a batch whose shape is not n x size x size x n_bands."""
    ok = cutouts.ndim == 4 and cutouts.shape[1:] == (ctx.size, ctx.size, ctx.n_bands)
    return np.full(len(cutouts), not ok)


def check_finite(cutouts: np.ndarray, ctx: ValidationContext) -> np.ndarray:
    """Fail cutouts with any NaN or infinite pixel (masked regions, chip gaps written as NaN)."""
    return ~np.isfinite(cutouts).all(axis=(1, 2, 3))


def check_coverage(cutouts: np.ndarray, ctx: ValidationContext) -> np.ndarray:
    """Fail cutouts where a band carries no data (constant, e.g. all zero, or not finite anywhere)."""
    with np.errstate(invalid="ignore"):
        lo = np.nanmin(cutouts, axis=(1, 2)) if np.isnan(cutouts).any() else cutouts.min(axis=(1, 2))
        hi = np.nanmax(cutouts, axis=(1, 2)) if np.isnan(cutouts).any() else cutouts.max(axis=(1, 2))
    return ~(hi > lo).all(axis=1)


def check_noise(cutouts: np.ndarray, ctx: ValidationContext) -> np.ndarray:
    """Fail cutouts whose noise in some band is outside ``[ratio_min, ratio_max]`` times the band's noise."""
    with np.errstate(invalid="ignore"):
        ratio = cutout_noise(cutouts) / np.asarray(ctx.noise_sigma)[None, :]
        ok = (ratio >= ctx.noise_ratio_min) & (ratio <= ctx.noise_ratio_max)
    return ~ok.all(axis=1)


#: Check name -> function; a failed check is recorded in the catalogue's ``validation`` column.
CHECKS: dict[str, Callable[[np.ndarray, ValidationContext], np.ndarray]] = {
    "shape": check_shape,
    "finite": check_finite,
    "coverage": check_coverage,
    "noise": check_noise,
}


def validate_batch(cutouts: np.ndarray, ctx: ValidationContext) -> dict[str, np.ndarray]:
    """Run every check of :data:`CHECKS` on a batch.

    A check that depends on an earlier one (noise on a cutout with NaN pixels) is only reported for cutouts that
    passed the earlier checks, so each cutout's failure list names its first real problem.

    Returns
    -------
    dict
        Check name -> bool array, True where the cutout failed.
    """
    n = len(cutouts)
    failed: dict[str, np.ndarray] = {}
    bad = np.zeros(n, dtype=bool)
    for name, check in CHECKS.items():
        if name == "shape":
            failed[name] = check(cutouts, ctx)
            if failed[name].any():
                for other in CHECKS:
                    failed.setdefault(other, np.zeros(n, dtype=bool))
                return failed
            continue
        result = np.zeros(n, dtype=bool)
        todo = ~bad
        if todo.any():
            result[todo] = check(cutouts[todo] if not todo.all() else cutouts, ctx)
        failed[name] = result
        bad |= result
    return failed


def failure_labels(failed: dict[str, np.ndarray]) -> list[str]:
    """One string per cutout: the names of the failed checks joined by ``+``, or ``""``."""
    names = list(failed)
    n = len(next(iter(failed.values()))) if failed else 0
    return ["+".join(name for name in names if failed[name][i]) for i in range(n)]
