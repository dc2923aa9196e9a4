"""The modeling network's data: the KB's lenses with their truth, the splits, and the augmentation.

The lenses of one KB variant (``modeling.kb_variant``: ``data/kb/<variant>.h5``) are joined by id to the truth the
simulation recorded for them (``data/mocks/<variant>/truth.ecsv``, :mod:`lenssearch.simulate.truth`). The KB's
folds give the splits, so no lens is in two of them and they match the classifiers' folds:

- ``test``: fold ``modeling.test_fold``, held out: the validation report and the rejection cuts;
- ``validation``: the KB's validation split (fold -1): early stopping, the learning-rate schedule and the
  calibration of the sigmas;
- ``train``: the other folds.

Augmentation: each training epoch applies one of the eight symmetries of the square to every cutout (the
classifiers' :func:`lenssearch.train.data.dihedral_permutations`, drawn from ``(seed, epoch)``) and transforms the
truth with it: a position ``(x, y)`` maps by the 2 x 2 matrix ``M`` of the symmetry and a spin-2 quantity
(ellipticity, shear) as the tensor ``[[e1, e2], [e2, -e1]] -> M T M^T``; ``theta_E`` is invariant. The cutout
centre, pixel ``(n - 1) / 2``, is the centre of the symmetries, so the lens centre's offset transforms exactly.
Predictions average the eight views of a cutout (:func:`predict_symmetrised`).

The lens is also moved off the cutout's centre (:func:`shift_images`): every training cutout, each epoch, by a
random whole number of network pixels in ``[-modeling.shift_arcsec, +shift_arcsec]`` on each axis, and the
held-out lenses and non-lenses once, by seeded draws of the same law (:func:`held_out_shifts`), with ``lens_x``
and ``lens_y`` moved alike. The KB's lenses sit within half a pixel of the centre; a search cuts its candidates at
detected light, which can be off the lens's mass centre, and a network that never saw an offset answers "the
centre" whatever the image (HOLISMOKES XVI re-centred its candidates: its modeling network failed on lenses that
were not well centred).
The shift rolls the pixels round (the strip that leaves one side enters at the other: border noise at these
offsets). Training shifts (and turns) the prepared cutouts, the held-out sets their raw cutouts by ``binning x k``
pixels: the light lands on the same network pixels, and the input normalisation's median and MAD, taken on a
subgrid of the pixels, differ by their sampling noise only (as under the symmetries).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from lenssearch.errors import InputFileError, LensSearchError
from lenssearch.simulate.truth import PARAMETERS

#: Parameters that transform as positions, and as spin-2 pairs, under the symmetries.
POSITION = ("lens_x_arcsec", "lens_y_arcsec")
SPIN2 = (("lens_e1", "lens_e2"), ("shear_gamma1", "shear_gamma2"))


@dataclasses.dataclass
class LensSet:
    """The KB's lenses with truth: cutouts (raw), parameters (``N x P``, order :data:`PARAMETERS`), ids, folds and
    the KB metadata rows (arc S/N, ``theta_E``, environment)."""

    cutouts: np.ndarray
    truth: np.ndarray
    ids: np.ndarray
    fold: np.ndarray
    metadata: object  # astropy Table, same rows
    bands: tuple[str, ...]

    def split(self, test_fold: int) -> dict[str, np.ndarray]:
        """Row indices of ``train``, ``validation`` and ``test`` (see the module docstring)."""
        rows = {"train": np.flatnonzero((self.fold >= 0) & (self.fold != test_fold)),
                "validation": np.flatnonzero(self.fold == -1),
                "test": np.flatnonzero(self.fold == test_fold)}
        for name, idx in rows.items():
            if idx.size == 0:
                raise LensSearchError(f"modeling: the {name} split has no lens (modeling.test_fold = {test_fold}, "
                                      f"KB folds {sorted(set(self.fold.tolist()))})")
        return rows


def read_lens_set(kb_path: str | Path, truth_path: str | Path) -> LensSet:
    """The lenses of the KB ``kb_path`` with their truth from ``truth_path``.

    Raises
    ------
    InputFileError
        A KB lens without a truth row, or a truth value that is not finite (a map-only field), named with its id.
    """
    from lenssearch.kb.build import read_kb_metadata
    from lenssearch.simulate.truth import read_truth
    from lenssearch.train.data import read_knowledge_base

    kb = read_knowledge_base(kb_path)
    meta = read_kb_metadata(kb_path)
    truth = read_truth(truth_path)
    lens = np.flatnonzero(kb.labels == 1)
    if lens.size == 0:
        raise InputFileError(f"{kb_path}: no lens (label 1) to train a modeling network on")
    index = {str(i): k for k, i in enumerate(truth["id"])}
    missing = [str(kb.ids[r]) for r in lens if str(kb.ids[r]) not in index]
    if missing:
        raise InputFileError(f"{truth_path}: no truth for {len(missing)} lens(es) of {kb_path}, e.g. '{missing[0]}' "
                             "(the KB and the mocks come from different simulate runs?)")
    rows = np.array([index[str(kb.ids[r])] for r in lens])
    values = np.stack([np.asarray(truth[p], dtype=np.float64)[rows] for p in PARAMETERS], axis=1)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        raise InputFileError(f"{truth_path}: lens '{kb.ids[lens[bad[0]]]}' has no finite truth for "
                             f"{[p for p, v in zip(PARAMETERS, values[bad[0]]) if not np.isfinite(v)]} (a field "
                             "without a parametric lens model cannot train the modeling network)")
    cutouts = kb.cutouts[lens]
    return LensSet(cutouts, values.astype(np.float32), kb.ids[lens], kb.fold[lens], meta[lens], kb.bands)


def symmetry_matrices() -> np.ndarray:
    """8 x 2 x 2: the matrix acting on ``(x, y)`` (x along columns, y along rows) of each symmetry ``k`` of
    :func:`lenssearch.train.data.dihedral_permutations` (bit 0 transposes, then bit 1 flips the rows, then bit 2
    flips the columns)."""
    out = []
    for k in range(8):
        m = np.eye(2)
        if k & 1:
            m = np.array([[0.0, 1.0], [1.0, 0.0]]) @ m
        if k & 2:
            m = np.diag([1.0, -1.0]) @ m
        if k & 4:
            m = np.diag([-1.0, 1.0]) @ m
        out.append(m)
    return np.stack(out)


def transform_truth(truth: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """The truth of cutouts transformed by symmetries ``choice`` (one per row, 0..7)."""
    return transform_parameters(truth, symmetry_matrices()[np.asarray(choice)])


def transform_parameters(values: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Parameters (rows, :data:`PARAMETERS` order) under the 2 x 2 ``matrices`` (one per row, or one for all)."""
    out = np.array(values, dtype=np.float64, copy=True)
    m = np.broadcast_to(np.asarray(matrices, dtype=np.float64), (len(out), 2, 2))
    ix, iy = (PARAMETERS.index(p) for p in POSITION)
    xy = np.stack([out[:, ix], out[:, iy]], axis=1)
    xy = np.einsum("nij,nj->ni", m, xy)
    out[:, ix], out[:, iy] = xy[:, 0], xy[:, 1]
    for a, b in SPIN2:
        ia, ib = PARAMETERS.index(a), PARAMETERS.index(b)
        t = np.zeros((len(out), 2, 2))
        t[:, 0, 0], t[:, 0, 1], t[:, 1, 0], t[:, 1, 1] = out[:, ia], out[:, ib], out[:, ib], -out[:, ia]
        t = m @ t @ np.transpose(m, (0, 2, 1))
        out[:, ia], out[:, ib] = t[:, 0, 0], t[:, 0, 1]
    return out.astype(values.dtype)


def predict_symmetrised(predict, cutouts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sigma of raw square cutouts over their eight symmetries (test-time augmentation).

    ``predict(x) -> (mean, sigma)`` of one view; each view's means are mapped back to the cutout's frame (the
    inverse of the symmetry, ``M^T``) and averaged, and the sigma combines the views' own sigmas and their scatter:
    ``sigma^2 = mean_k sigma_k^2 + var_k mean_k`` (the spread of the views is the network's own uncertainty on the
    image, largest where no arc anchors the answer).
    """
    from lenssearch.train.data import dihedral_permutations

    x = np.asarray(cutouts, dtype=np.float32)
    n, side = x.shape[0], x.shape[1]
    perms = dihedral_permutations(side)
    flat = x.reshape(n, side * side, -1)
    means, variances = [], []
    for k, matrix in enumerate(symmetry_matrices()):
        view = np.ascontiguousarray(flat[:, perms[k]].reshape(x.shape))
        mean, sigma = predict(view)
        means.append(transform_parameters(np.asarray(mean, np.float64), matrix.T))
        variances.append(np.asarray(sigma, np.float64) ** 2)
    means = np.stack(means)
    return means.mean(axis=0), np.sqrt(np.mean(variances, axis=0) + means.var(axis=0))


def augmented_epoch(images: np.ndarray, truth: np.ndarray, rows: np.ndarray, seed: int, epoch: int,
                    max_shift: int = 0, pixel_arcsec: float = 1.0):
    """One training epoch: ``rows`` in a seeded random order, each cutout under a random symmetry and then rolled by
    a random shift of up to ``max_shift`` pixels of ``pixel_arcsec`` per axis, with its truth transformed alike.
    ``images`` are prepared (square) cutouts; returns new arrays."""
    from lenssearch.train.data import dihedral_permutations

    rng = np.random.default_rng([seed, 15, epoch])
    order = rng.permutation(rows)
    choice = rng.integers(0, 8, order.size)
    n, side = images.shape[0], images.shape[1]
    perms = dihedral_permutations(side)
    flat = images.reshape(n, side * side, -1)
    out = np.empty((order.size, side * side, images.shape[-1]), dtype=images.dtype)
    for k in range(8):
        sel = np.flatnonzero(choice == k)
        if sel.size:
            out[sel] = flat[order[sel]][:, perms[k]]
    out, moved = out.reshape(order.size, side, side, -1), transform_truth(truth[order], choice)
    if max_shift > 0:
        shifts = rng.integers(-max_shift, max_shift + 1, (order.size, 2))
        out, moved = shift_images(out, shifts), shift_truth(moved, shifts, pixel_arcsec)
    return out, moved


def shift_images(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each image ``n x S x S x B`` rolled by its ``shifts`` row ``(rows, columns)`` (whole pixels); a new array."""
    shifts = np.asarray(shifts, dtype=int).reshape(len(images), 2)
    out = np.empty_like(images)
    pairs, inverse = np.unique(shifts, axis=0, return_inverse=True)
    for k, (dy, dx) in enumerate(pairs):
        sel = np.flatnonzero(inverse.ravel() == k)
        out[sel] = np.roll(images[sel], (int(dy), int(dx)), axis=(1, 2))
    return out


def shift_truth(truth: np.ndarray, shifts: np.ndarray, pixel_arcsec: float) -> np.ndarray:
    """The truth of cutouts rolled by ``shifts`` (rows, columns) of ``pixel_arcsec`` pixels: the lens centre moves
    by ``(columns, rows) x pixel_arcsec`` (x along columns, y along rows); nothing else changes."""
    out = np.array(truth, copy=True)
    shifts = np.asarray(shifts, dtype=np.float64).reshape(len(out), 2)
    out[:, PARAMETERS.index("lens_x_arcsec")] += shifts[:, 1] * pixel_arcsec
    out[:, PARAMETERS.index("lens_y_arcsec")] += shifts[:, 0] * pixel_arcsec
    return out


def held_out_shifts(n: int, seed: int, stream: int, max_shift: int) -> np.ndarray:
    """Seeded ``n x 2`` whole-pixel shifts (network pixels) in ``[-max_shift, max_shift]`` for a held-out set
    (``stream`` names it: 1 validation, 2 test lenses, 3 the non-lenses)."""
    return np.random.default_rng([seed, 16, stream]).integers(-max_shift, max_shift + 1, (n, 2))
