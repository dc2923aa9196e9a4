"""A small knowledge base with a learnable signal, in the layout of ``data/kb/kb.h5``, for tests and benchmarks.

Not a simulation of lenses (that is :mod:`lenssearch.simulate`): every cutout holds a red elliptical blob (the
"lens galaxy", its brightness spread over two decades) on Gaussian noise, sometimes with a neighbour; label-1
cutouts add a blue ring or arc of radius 0.3-1.5" around it, at a signal-to-noise that goes from obvious to
barely visible. Training code can be exercised end to end without the simulation stages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lenssearch.io import atomic_path

BANDS = ("F435W", "F606W", "F814W")
PIXEL_SCALE_ARCSEC = 0.03
NOISE_E_PER_S = np.array([0.004, 0.003, 0.004])  # per-pixel background sigma, e-/s
GALAXY_COLOUR = np.array([0.15, 0.45, 1.0])  # red lens galaxy: relative flux per band
ARC_COLOUR = np.array([1.0, 0.8, 0.6])  # bluer lensed source


def _galaxy(x, y, rng, scale):
    q = rng.uniform(0.5, 1.0)
    angle = rng.uniform(0, np.pi)
    c, s = np.cos(angle), np.sin(angle)
    xr, yr = c * x + s * y, -s * x + c * y
    r = np.sqrt(q * xr**2 + yr**2 / q)
    return np.exp(-r / (scale * rng.uniform(4.0, 10.0)))


def toy_cutouts(
    labels: np.ndarray, rng: np.random.Generator, size: int = 128, arc_snr_range: tuple[float, float] = (1.0, 10.0)
) -> np.ndarray:
    """N x size x size x 3 float32 cutouts (e-/s) for the given labels (1 adds a ring or arc).

    Sizes other than 128 shrink the field (the galaxy scale and the ring radii scale with ``size / 128``);
    ``arc_snr_range`` bounds the arcs' peak surface brightness in noise sigmas (drawn log-uniformly).
    """
    scale = size / 128.0
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    out = np.empty((len(labels), size, size, len(BANDS)), dtype=np.float32)
    for i, label in enumerate(labels):
        peak = 10 ** rng.uniform(-0.5, 1.5)  # peak F814W of the galaxy, e-/s
        image = peak * _galaxy(x, y, rng, scale)[..., None] * GALAXY_COLOUR
        if rng.random() < 0.3:  # a neighbour
            dx, dy = rng.uniform(-50, 50, size=2) * scale
            image += 0.3 * peak * _galaxy(x - dx, y - dy, rng, scale)[..., None] * GALAXY_COLOUR
        if label:
            radius = rng.uniform(0.3, 1.5) / PIXEL_SCALE_ARCSEC * scale
            phi = np.arctan2(y, x)
            width = rng.uniform(1.0, 2.5)
            ring = np.exp(-0.5 * ((np.hypot(x, y) - radius) / width) ** 2)
            if rng.random() < 0.6:  # an arc rather than a full ring
                centre, extent = rng.uniform(-np.pi, np.pi), rng.uniform(0.4, 1.2)
                ring *= np.exp(-0.5 * (np.angle(np.exp(1j * (phi - centre))) / extent) ** 2)
            snr = 10 ** rng.uniform(*np.log10(arc_snr_range))  # peak surface brightness, noise sigmas
            image += snr * ring[..., None] * ARC_COLOUR * NOISE_E_PER_S
        out[i] = image + rng.normal(size=image.shape) * NOISE_E_PER_S
    return out


def stratified_folds(labels: np.ndarray, n_folds: int, validation_fraction: float, rng) -> np.ndarray:
    """Fold index per row: -1 for a stratified validation split, then 0..n_folds-1 stratified."""
    fold = np.empty(len(labels), dtype=np.int16)
    for c in (0, 1):
        rows = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(validation_fraction * len(rows)))
        fold[rows[:n_val]] = -1
        fold[rows[n_val:]] = np.arange(len(rows) - n_val) % n_folds
    return fold


def write_toy_kb(
    path: str | Path,
    n_lenses: int = 120,
    n_nonlenses: int = 60,
    n_folds: int = 3,
    validation_fraction: float = 0.15,
    seed: int = 0,
    size: int = 128,
    arc_snr_range: tuple[float, float] = (1.0, 10.0),
) -> Path:
    """Write a toy knowledge base (datasets ``cutouts``, ``labels``, ``ids``, ``fold``, ``metadata``; attributes
    ``bands``, ``pixel_scale_arcsec``, ``zeropoints_ab``, ``n_folds``, ``seed``) and return its path."""
    import h5py
    from astropy.table import Table

    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.r_[np.ones(n_lenses), np.zeros(n_nonlenses)]).astype(np.int8)
    cutouts = toy_cutouts(labels, rng, size, arc_snr_range)
    fold = stratified_folds(labels, n_folds, validation_fraction, rng)
    ids = np.array([f"toy-{i:05d}" for i in range(len(labels))], dtype="S16")
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("cutouts", data=cutouts, chunks=(1, size, size, len(BANDS)))
            handle.create_dataset("labels", data=labels)
            handle.create_dataset("ids", data=ids)
            handle.create_dataset("fold", data=fold)
            handle.attrs["bands"] = np.array(BANDS, dtype="S8")
            handle.attrs["pixel_scale_arcsec"] = PIXEL_SCALE_ARCSEC
            handle.attrs["zeropoints_ab"] = np.array([25.65, 26.49, 25.94])
            handle.attrs["n_folds"] = n_folds
            handle.attrs["seed"] = seed
        Table({"id": ids.astype(str), "label": labels}).write(
            tmp, format="hdf5", path="metadata", append=True, serialize_meta=True
        )
    return path
