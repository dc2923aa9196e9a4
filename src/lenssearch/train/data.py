"""The knowledge base in memory and the ``tf.data`` pipelines that feed the networks.

Reads ``data/kb/kb.h5`` (layout in docs/architecture.md, "Knowledge base") once into one float32 array, runs the
network's input preparation over it once (:func:`prepare_cutouts`: 2x2 binning and the robust normalisation, the
first layers of every network, see :func:`lenssearch.models.split_model`), hands the prepared cutouts to a
TensorFlow variable without a copy, and serves every fold from it by index: the pipelines are datasets of index
batches whose map gathers the cutouts, selects the network's bands and, for training, applies a random
flip/90-degree rotation (the eight symmetries of the square; Angora et al. 2020, 2023). The rotation is fused
into the gather (one pass over the batch's pixels instead of five), which keeps the pipeline's share of the two
CPU cores small. No fold copies the cutouts, so the paper-profile KB (~1.7 GB) costs its own size once in memory
(its preparation keeps the shape and is written in place).

Augmenting the prepared cutouts rather than preparing augmented ones: the 2x2 binning commutes exactly with the
eight symmetries; the normalisation's median and MAD are measured on a regular subgrid of pixels (see
:class:`lenssearch.models.RobustNormalization`) that a flip maps onto the neighbouring subgrid, so the two orders
differ by a change of the background estimate at the level of its own noise (~0.1 sigma of the sky noise); the
un-augmented cutouts, which every out-of-fold probability and every prediction of the saved network use, are
prepared exactly as the saved network prepares them.

Class balance follows the paper (Sect. 3.2): each training epoch draws ``examples_per_class`` cutouts of each
class (the majority count by default), so the minority class is oversampled; cutouts are drawn without
replacement within a class until all have been seen, then a new permutation starts. Every draw is seeded by
``(seed, epoch)`` and every augmentation by ``(seed, batch number)``, so an epoch's batches are the same
whether the training ran straight through or resumed from a checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from lenssearch.errors import InputFileError

REQUIRED_DATASETS = ("cutouts", "labels", "ids", "fold")


@dataclasses.dataclass
class KnowledgeBase:
    """The arrays of ``kb.h5`` needed for training (the metadata table stays on disk).

    Attributes
    ----------
    cutouts
        N x H x W x n_bands float32, electrons/s, band order ``bands``.
    labels
        N int8, 1 = galaxy-galaxy strong lens, 0 = non-lens.
    ids
        N unique cutout ids (str).
    fold
        N int16: 0..n_folds-1 for the cross-validation part, -1 for the validation split.
    """

    path: Path
    cutouts: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    fold: np.ndarray
    bands: tuple[str, ...]
    n_folds: int

    @property
    def validation_indices(self) -> np.ndarray:
        """Rows of the validation split (``fold == -1``), used for early stopping and the LR schedule."""
        return np.flatnonzero(self.fold == -1)

    @property
    def cv_indices(self) -> np.ndarray:
        """Rows of the cross-validation part (``fold >= 0``): each gets one out-of-fold probability."""
        return np.flatnonzero(self.fold >= 0)

    def fold_indices(self, fold: int) -> tuple[np.ndarray, np.ndarray]:
        """(training rows, test rows) of ``fold``: train on the other folds, test on this one."""
        return np.flatnonzero((self.fold >= 0) & (self.fold != fold)), np.flatnonzero(self.fold == fold)


def aligned_empty(shape: tuple[int, ...], alignment: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous float32 array whose data start on an ``alignment``-byte boundary."""
    nbytes = int(np.prod(shape)) * 4
    raw = np.empty(nbytes + alignment, dtype=np.uint8)
    offset = (-raw.ctypes.data) % alignment
    return raw[offset : offset + nbytes].view(np.float32).reshape(shape)


def prepare_cutouts(preparation, cutouts: np.ndarray, band_indices: tuple[int, ...], batch_size: int = 256,
                    progress: bool = False) -> np.ndarray:
    """Run a network's input preparation (binning, normalisation) once over the knowledge base.

    Parameters
    ----------
    preparation
        The ``preparation`` model of :func:`lenssearch.models.split_model` (no weights).
    cutouts
        N x H x W x n_bands raw cutouts; ``band_indices`` are the channels the network takes.

    Returns
    -------
    numpy.ndarray
        N x h x w x len(band_indices) float32, 64-byte aligned (the pipelines adopt it without a copy). When the
        preparation keeps the shape (no binning, all bands: the paper profile), it is written over ``cutouts``
        batch by batch and ``cutouts`` itself is returned, so the paper-size KB is held once.
    """
    from tqdm.auto import tqdm

    n = cutouts.shape[0]
    all_bands = tuple(band_indices) == tuple(range(cutouts.shape[-1]))
    out_shape = (n, *preparation.output_shape[1:3], len(band_indices))
    in_place = all_bands and out_shape == cutouts.shape and cutouts.dtype == np.float32
    out = cutouts if in_place else aligned_empty(out_shape)
    for start in tqdm(range(0, n, batch_size), desc="preparing cutouts", unit="batch", disable=not progress,
                      leave=False):
        stop = min(n, start + batch_size)
        block = cutouts[start:stop] if all_bands else cutouts[start:stop][..., list(band_indices)]
        out[start:stop] = np.asarray(preparation(block, training=False), dtype=np.float32)
    return out


def _decode(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def read_knowledge_base(path: str | Path) -> KnowledgeBase:
    """Read the cutouts, labels, ids and folds of a knowledge base, checking its layout.

    Raises
    ------
    InputFileError
        Missing file or dataset, wrong shapes or dtypes, labels other than 0/1, folds outside -1..n_folds-1,
        duplicate ids, no validation rows, or a fold without both classes; the message names the file and key.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: knowledge base not found (run the kb stage)")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    with handle:
        for key in REQUIRED_DATASETS:
            if key not in handle:
                raise InputFileError(f"{path}: dataset '{key}' missing (expected {', '.join(REQUIRED_DATASETS)})")
        source = handle["cutouts"]
        if source.ndim != 4:
            raise InputFileError(f"{path}: 'cutouts' must be N x H x W x bands, got shape {source.shape}")
        cutouts = aligned_empty(source.shape)  # aligned: the pipelines can adopt it without a copy
        source.read_direct(cutouts)
        labels = handle["labels"][()].astype(np.int8)
        ids = np.asarray(_decode(handle["ids"][()]))
        fold = handle["fold"][()].astype(np.int16)
        attrs = handle.attrs
        bands = tuple(_decode(attrs["bands"])) if "bands" in attrs else None
        n_folds = int(attrs["n_folds"]) if "n_folds" in attrs else int(fold.max()) + 1
    n = cutouts.shape[0]
    for key, values in (("labels", labels), ("ids", ids), ("fold", fold)):
        if values.shape != (n,):
            raise InputFileError(f"{path}: '{key}' has shape {values.shape}, expected ({n},) like 'cutouts'")
    if bands is None or len(bands) != cutouts.shape[-1]:
        raise InputFileError(f"{path}: attribute 'bands' {bands} does not match {cutouts.shape[-1]} cutout bands")
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if bad.size:
        raise InputFileError(f"{path}: 'labels' row {bad[0]} is {labels[bad[0]]}, expected 0 or 1")
    bad = np.flatnonzero((fold < -1) | (fold >= n_folds))
    if bad.size:
        raise InputFileError(f"{path}: 'fold' row {bad[0]} is {fold[bad[0]]}, expected -1..{n_folds - 1}")
    unique, counts = np.unique(ids, return_counts=True)
    if unique.size != n:
        raise InputFileError(f"{path}: 'ids' not unique ('{unique[counts > 1][0]}' repeats)")
    if not np.any(fold == -1):
        raise InputFileError(f"{path}: no validation rows (fold == -1); early stopping needs them")
    for k in range(n_folds):
        classes = set(labels[fold == k].tolist())
        if classes != {0, 1}:
            raise InputFileError(f"{path}: fold {k} holds classes {sorted(classes)}, expected both 0 and 1")
    if not np.all(np.isfinite(cutouts)):
        row = int(np.flatnonzero(~np.isfinite(cutouts).reshape(n, -1).all(axis=1))[0])
        raise InputFileError(f"{path}: 'cutouts' row {row} (id {ids[row]}) has non-finite pixels")
    return KnowledgeBase(path, cutouts, labels, ids, fold, bands, n_folds)


def balanced_epoch(
    labels: np.ndarray, rows: np.ndarray, examples_per_class: int, seed: int, epoch: int
) -> np.ndarray:
    """Rows for one training epoch: ``examples_per_class`` of each class, shuffled.

    Within a class the rows are drawn as successive random permutations (each row once before any repeats), so
    the minority class is oversampled evenly. ``examples_per_class == 0`` means the majority class's count.
    The draw depends only on ``(seed, epoch)``.
    """
    rng = np.random.default_rng([seed, epoch])
    per_class = [rows[labels[rows] == c] for c in (0, 1)]
    if any(len(r) == 0 for r in per_class):
        raise ValueError("balanced_epoch: the training rows must hold both classes")
    n = examples_per_class or max(len(r) for r in per_class)
    drawn = []
    for class_rows in per_class:
        repeats = -(-n // len(class_rows))
        drawn.append(np.concatenate([rng.permutation(class_rows) for _ in range(repeats)])[:n])
    return rng.permutation(np.concatenate(drawn))


def dihedral_permutations(side: int) -> np.ndarray:
    """8 x side^2 pixel indices: row ``k`` re-indexes a flattened square image into its ``k``-th symmetry.

    Bit 0 of ``k`` transposes, bit 1 flips vertically, bit 2 flips horizontally; together they give the four
    90-degree rotations and the four flips, each once.
    """
    base = np.arange(side * side).reshape(side, side)
    out = []
    for k in range(8):
        grid = base.T if k & 1 else base
        grid = grid[::-1] if k & 2 else grid
        grid = grid[:, ::-1] if k & 4 else grid
        out.append(grid.ravel())
    return np.stack(out)


def dihedral_augment(images, seed):
    """Apply one of the eight symmetries of the square, drawn uniformly, to each image of a batch (stateless,
    seeded). The pipelines fuse this re-indexing with the gather from the KB (:class:`CutoutPipelines`)."""
    import tensorflow as tf

    shape = tf.shape(images)
    side = images.shape[1]
    choice = tf.random.stateless_uniform([shape[0]], seed=seed, minval=0, maxval=8, dtype=tf.int32)
    pixels = tf.gather(tf.constant(dihedral_permutations(side), tf.int32), choice)
    flat = tf.reshape(images, [shape[0], side * side, -1])
    return tf.reshape(tf.gather(flat, pixels, axis=1, batch_dims=1), shape)


class CutoutPipelines:
    """``tf.data`` pipelines over one in-memory copy of the knowledge base.

    Parameters
    ----------
    cutouts, labels
        The KB's arrays; ``cutouts`` is copied once into a non-trainable TensorFlow variable (the caller may
        drop its own reference afterwards).
    band_indices
        The bands (channels) the network takes.
    """

    def __init__(self, cutouts: np.ndarray, labels: np.ndarray, band_indices: tuple[int, ...]):
        import tensorflow as tf

        n, height, width, n_bands = cutouts.shape
        if height != width:
            raise ValueError(f"cutouts must be square, got {height}x{width}")
        if n * height * width >= 2**31:
            raise ValueError(f"{n} cutouts of {height}x{width} pixels exceed the pipelines' int32 pixel index")
        self.side = height
        self.labels_np = np.asarray(labels)
        pixels = cutouts.reshape(n * height * width, n_bands)  # a view: one row per pixel
        if pixels.dtype == np.float32 and pixels.flags.c_contiguous and pixels.ctypes.data % 64 == 0:
            # zero-copy hand-over (DLPack): the variable adopts the array's memory instead of a second copy
            pixels = tf.experimental.dlpack.from_dlpack(pixels.__dlpack__())
        with tf.device("/CPU:0"):
            # a batch (with its flips/rotations) is then a single gather of pixel rows
            self.pixels = tf.Variable(pixels, trainable=False, name="kb_pixels")
            self.labels = tf.constant(self.labels_np.astype(np.float32))
            self.permutations = tf.constant(dihedral_permutations(height), tf.int32)
        self.band_indices = tf.constant(band_indices, dtype=tf.int32)
        self.all_bands = tuple(band_indices) == tuple(range(n_bands))

    def _gather(self, rows, permutation=None):
        """Cutouts ``rows`` (re-indexed by ``permutation``, B x side^2, if given) and their labels."""
        import tensorflow as tf

        area = self.side * self.side
        if permutation is None:
            permutation = tf.range(area, dtype=tf.int32)[None, :]
        # int32 pixel indices (cheaper to build and gather with): 2^31 pixels is ~43000 cutouts of 128x128
        index = tf.reshape(tf.cast(rows, tf.int32)[:, None] * area + permutation, [-1])
        images = tf.reshape(tf.gather(self.pixels, index), [-1, self.side, self.side, self.pixels.shape[-1]])
        if not self.all_bands:
            images = tf.gather(images, self.band_indices, axis=-1)
        return images, tf.gather(self.labels, rows)

    def training(
        self,
        rows: np.ndarray,
        batch_size: int,
        examples_per_class: int,
        seed: int,
        start_epoch: int,
        epochs: int,
    ):
        """Balanced, augmented batches for epochs ``start_epoch .. epochs-1``, and the steps per epoch.

        Returns
        -------
        dataset, steps_per_epoch
            ``dataset`` yields ``(images, labels)`` batches, exactly ``steps_per_epoch`` per epoch.
        """
        import tensorflow as tf

        per_epoch = []
        for epoch in range(start_epoch, epochs):
            order = balanced_epoch(self.labels_np, rows, examples_per_class, seed, epoch)
            steps = len(order) // batch_size
            if steps == 0:
                raise ValueError(f"batch size {batch_size} is larger than an epoch ({len(order)} examples)")
            per_epoch.append(order[: steps * batch_size].reshape(steps, batch_size))
        steps_per_epoch = per_epoch[0].shape[0] if per_epoch else 0
        batches = np.concatenate(per_epoch) if per_epoch else np.zeros((0, batch_size), dtype=np.int64)
        first_batch = start_epoch * steps_per_epoch
        numbers = np.arange(first_batch, first_batch + len(batches), dtype=np.int64)

        def load(batch_rows, number):
            seed_pair = tf.stack([tf.constant(seed, tf.int64), number])
            choice = tf.random.stateless_uniform([batch_size], seed=seed_pair, minval=0, maxval=8, dtype=tf.int32)
            return self._gather(batch_rows, tf.gather(self.permutations, choice))

        dataset = tf.data.Dataset.from_tensor_slices((batches.astype(np.int64), numbers))
        dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset.prefetch(tf.data.AUTOTUNE), steps_per_epoch

    def evaluation(self, rows: np.ndarray, batch_size: int, with_labels: bool = True):
        """Un-augmented batches of ``rows`` in order (validation and out-of-fold prediction)."""
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices(np.asarray(rows, dtype=np.int64)).batch(batch_size)
        if with_labels:
            dataset = dataset.map(self._gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        else:
            dataset = dataset.map(
                lambda r: self._gather(r)[0], num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
        return dataset.prefetch(tf.data.AUTOTUNE)
