"""The ``kb`` stage: assemble mocks and negatives into one HDF5 knowledge base with stratified folds.

Angora et al. (2023), Sect. 3.2: the KB holds twice as many mock GGSLs as non-lenses (``kb.mocks_per_negative``;
the larger class is subsampled, seeded), 128 x 128 pixel cutouts in F435W, F606W, F814W, and is split into a
validation part and a stratified k-fold cross-validation part (10 folds in the paper). Augmentation happens at
training time, not here.

Inputs: two cutout sets (``data/mocks``, ``data/negatives``; :mod:`lenssearch.simulate.store`: ``cutouts.h5`` +
``metadata.ecsv``) and, optionally, the fields (``data/fields``) whose ``field.json`` gives each cutout's cluster
redshift and expected background noise. Output ``data/kb/kb.h5`` (``docs/architecture.md``):

- ``cutouts`` float32 ``N x 128 x 128 x 3`` (e-/s), ``labels`` int8 (1 = mock lens), ``ids`` fixed-length bytes,
  ``fold`` int16 (``0..k-1``; ``-1`` = validation split);
- ``metadata``: a compound dataset, one row per cutout in the same order (strings as fixed-length UTF-8 bytes),
  read back as an astropy Table with :func:`read_kb_metadata`;
- attributes ``bands``, ``pixel_scale_arcsec``, ``zeropoints_ab`` (per band), ``n_folds``, ``seed``,
  ``validation_fraction``, ``mocks_per_negative``.

Determinism: every dataset is written with ``track_times=False`` and a fixed layout, the subsampling and the
folds come from ``base.seed``, so the same inputs and parameters give a byte-identical file. Memory: cutouts are
streamed from the inputs into the output dataset in blocks; at most one block is held.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lenssearch.errors import InputFileError, LensSearchError
from lenssearch.io import atomic_path, read_ecsv

#: Metadata columns every KB row has (NaN / empty where they do not apply).
REQUIRED_COLUMNS = (
    "id", "label", "field", "member_id", "theta_e_arcsec", "z_s", "source_mag_F435W", "source_mag_F606W",
    "source_mag_F814W", "source_re_arcsec", "sersic_n", "axis_ratio", "position_angle_deg", "magnification",
    "n_images", "lens_mag_F814W", "lens_color_F606W_F814W", "lensed_snr_F435W", "lensed_snr_F606W",
    "lensed_snr_F814W", "lensed_snr", "confuser",
)
STRING_COLUMNS = ("id", "field", "member_id", "confuser")
#: Cutouts copied per block while streaming.
BLOCK = 256
#: Stream offset of the kb stage in ``[base.seed, stream]``.
KB_STREAM = 4


# ------------------------------------------------------------------------------------------------ inputs
def _cutout_file(path: Path) -> tuple[Path, str]:
    for name, kind in (("cutouts.h5", "h5"), ("cutouts.npy", "npy")):
        if (path / name).exists():
            return path / name, kind
    raise InputFileError(f"{path}: no cutouts.h5 (or cutouts.npy) in this cutout set")


def read_cutout_metadata(path: str | Path):
    """Metadata table and cutout shape of a cutout set (the cutouts are not loaded)."""
    import h5py
    from astropy.table import Table

    path = Path(path)
    meta_path = path / "metadata.ecsv"
    if not meta_path.exists():
        raise InputFileError(f"{meta_path}: missing from the cutout set {path}")
    meta = read_ecsv(meta_path, "cutout-set metadata")  # strict: a truncated file is refused, named
    if "id" not in meta.colnames:
        raise InputFileError(f"{meta_path}: no 'id' column")
    file, kind = _cutout_file(path)
    ids = None
    if kind == "h5":
        try:
            with h5py.File(file, "r") as h5:
                if "cutouts" not in h5:
                    raise InputFileError(f"{file}: no dataset 'cutouts'")
                shape = tuple(h5["cutouts"].shape)
                attrs = {k: h5.attrs[k] for k in h5.attrs}
                ids = [v.decode() for v in h5["ids"][...]] if "ids" in h5 else None
        except OSError as exc:  # h5py: a truncated or corrupt file
            raise InputFileError(f"{file}: not a readable HDF5 cutout file ({exc}); is it truncated?") from None
        if ids is not None and ids != [str(v) for v in meta["id"]]:
            raise InputFileError(f"{path}: the ids of {file.name} and metadata.ecsv differ (rows out of order?)")
    else:
        shape = tuple(np.load(file, mmap_mode="r").shape)
        attrs = {}
    if shape[0] != len(meta):
        raise InputFileError(f"{path}: {shape[0]} cutouts but {len(meta)} metadata rows")
    return meta, shape, attrs


class _CutoutReader:
    """Blockwise reader of a cutout set's array (HDF5 dataset or memory-mapped .npy)."""

    def __init__(self, path: Path):
        self.file, self.kind = _cutout_file(path)
        self._h5 = None

    def __enter__(self):
        if self.kind == "h5":
            import h5py

            try:
                self._h5 = h5py.File(self.file, "r")
            except OSError as exc:  # a truncated or corrupt file
                raise InputFileError(f"{self.file}: not a readable HDF5 cutout file ({exc}); is it truncated?") from None
            self.data = self._h5["cutouts"]
        else:
            self.data = np.load(self.file, mmap_mode="r")
        return self

    def __exit__(self, *exc):
        if self._h5 is not None:
            self._h5.close()

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Rows ``indices`` (increasing) as float32."""
        if indices.size == 0:
            return np.zeros((0,) + tuple(self.data.shape[1:]), np.float32)
        return np.asarray(self.data[indices], dtype=np.float32)


def _field_info(fields_dir: Path | None) -> dict[str, dict]:
    if fields_dir is None:
        return {}
    from lenssearch.fields.layout import list_fields

    return {f.name: f.info for f in list_fields(fields_dir)}


# ------------------------------------------------------------------------------------------------ pieces
def balance_classes(n_mocks: int, n_negatives: int, mocks_per_negative: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices of the mocks and negatives kept so that ``n_mocks_kept / n_negatives_kept`` is the ratio.

    The larger class (relative to the ratio) is subsampled without replacement; the other is kept whole.
    """
    if n_mocks == 0 or n_negatives == 0:
        raise LensSearchError(f"kb: need mocks and negatives, got {n_mocks} mocks and {n_negatives} negatives")
    if not mocks_per_negative > 0:
        raise LensSearchError(f"kb.mocks_per_negative must be positive, got {mocks_per_negative}")
    keep_m, keep_n = n_mocks, n_negatives
    if n_mocks > mocks_per_negative * n_negatives:
        keep_m = int(round(mocks_per_negative * n_negatives))
    else:
        keep_n = int(round(n_mocks / mocks_per_negative))
    keep_m, keep_n = max(keep_m, 1), max(keep_n, 1)
    mocks = np.sort(rng.choice(n_mocks, size=keep_m, replace=False)) if keep_m < n_mocks else np.arange(n_mocks)
    negs = (np.sort(rng.choice(n_negatives, size=keep_n, replace=False)) if keep_n < n_negatives
            else np.arange(n_negatives))
    return mocks, negs


def assign_folds(labels: np.ndarray, n_folds: int, validation_fraction: float, seed: int) -> np.ndarray:
    """Stratified validation split (fold -1) and stratified k-fold indices 0..k-1 for the rest (scikit-learn)."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    labels = np.asarray(labels)
    n = labels.size
    if n_folds < 2:
        raise LensSearchError(f"kb.n_folds must be >= 2, got {n_folds}")
    if not 0 <= validation_fraction < 1:
        raise LensSearchError(f"kb.validation_fraction must be in [0, 1), got {validation_fraction}")
    fold = np.full(n, -1, dtype=np.int16)
    index = np.arange(n)
    if validation_fraction > 0:
        cv_index, _ = train_test_split(index, test_size=validation_fraction, stratify=labels, random_state=seed)
        cv_index = np.sort(cv_index)
    else:
        cv_index = index
    counts = np.bincount(labels[cv_index].astype(int), minlength=2)
    if counts.min() < n_folds:
        raise LensSearchError(
            f"kb: {counts.min()} examples of the rarer class cannot fill {n_folds} stratified folds"
        )
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(skf.split(cv_index, labels[cv_index])):
        fold[cv_index[test]] = k
    return fold


def _standardise(meta, label: int, fields: dict, bands):
    """Metadata rows of one class with the required columns (NaN where absent) and the field info added."""
    from astropy.table import Column, Table

    t = Table(meta, copy=True)
    t["label"] = np.full(len(t), label, dtype=np.int8)
    for col in REQUIRED_COLUMNS:
        if col not in t.colnames:
            if col in STRING_COLUMNS:
                t[col] = np.array([""] * len(t))
            else:
                t[col] = np.full(len(t), np.nan)
    for col in STRING_COLUMNS:
        t[col] = Column([str(v) for v in t[col]], name=col)
    if fields:
        missing = sorted({str(f) for f in t["field"]} - set(fields))
        if missing:
            raise InputFileError(f"kb: cutouts refer to field(s) {missing} that are not in the fields directory")
        if "z_lens" not in t.colnames:
            t["z_lens"] = [float(fields[str(f)]["z_lens"]) for f in t["field"]]
        for band in bands:
            t[f"noise_sigma_{band}"] = [float(fields[str(f)]["noise_sigma"][band]) for f in t["field"]]
    return t


def _to_records(table) -> np.ndarray:
    """A numpy structured array of the table (strings as fixed-length UTF-8 bytes, bools as int8)."""
    dtypes, arrays = [], []
    for name in table.colnames:
        col = table[name]
        data = np.asarray(col)
        if data.ndim != 1:
            continue
        if data.dtype.kind in "US" or data.dtype == object:
            enc = [str(v).encode() for v in data]
            width = max([len(v) for v in enc] + [1])
            arr = np.array(enc, dtype=f"S{width}")
        elif data.dtype.kind == "b":
            arr = data.astype(np.int8)
        elif data.dtype.kind in "iu":
            arr = data.astype(np.int64)
        else:
            arr = np.ma.filled(np.ma.asarray(data, dtype=float), np.nan).astype(np.float64)
        dtypes.append((name, arr.dtype))
        arrays.append(arr)
    rec = np.empty(len(table), dtype=dtypes)
    for (name, _), arr in zip(dtypes, arrays):
        rec[name] = arr
    return rec


def read_kb_metadata(path: str | Path):
    """The KB's metadata as an astropy Table (byte strings decoded)."""
    import h5py
    from astropy.table import Table

    with h5py.File(path, "r") as h5:
        if "metadata" not in h5:
            raise InputFileError(f"{path}: no 'metadata' dataset (not a lenssearch KB?)")
        rec = h5["metadata"][...]
    t = Table(rec)
    for name in t.colnames:
        if t[name].dtype.kind == "S":
            t[name] = np.char.decode(np.asarray(t[name]), "utf-8")
    return t


def read_kb(path: str | Path, *, load_cutouts: bool = True) -> dict:
    """Read a KB: dict with ``cutouts`` (or None), ``labels``, ``ids``, ``fold``, ``metadata``, ``attrs``."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such knowledge base")
    try:
        with h5py.File(path, "r") as h5:
            for key in ("cutouts", "labels", "ids", "fold", "metadata"):
                if key not in h5:
                    raise InputFileError(f"{path}: missing dataset '{key}'")
            out = {
                "cutouts": h5["cutouts"][...] if load_cutouts else None,
                "shape": tuple(h5["cutouts"].shape),
                "dtype": str(h5["cutouts"].dtype),
                "labels": h5["labels"][...],
                "ids": np.char.decode(h5["ids"][...], "utf-8"),
                "fold": h5["fold"][...],
                "attrs": {k: _attr(h5.attrs[k]) for k in h5.attrs},
            }
    except OSError as exc:
        raise InputFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    out["metadata"] = read_kb_metadata(path)
    return out


def _attr(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return [v.decode() for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# ------------------------------------------------------------------------------------------------ the stage
def build_kb(mocks_dir: str | Path, negatives_dir: str | Path, out_path: str | Path, cfg,
             fields_dir: str | Path | None = None, progress: bool = True, variant: str = "") -> dict:
    """Build the knowledge base file; returns a summary (counts per class, fold and field).

    Parameters
    ----------
    mocks_dir, negatives_dir
        Cutout sets written by the ``simulate`` and ``negatives`` stages.
    out_path
        The HDF5 file to write (atomically).
    cfg
        The configuration (``base``, ``kb``).
    fields_dir
        Optional fields root: adds ``z_lens`` and the expected ``noise_sigma_<band>`` of each cutout's field.
    progress
        tqdm progress bar over blocks.
    variant
        The KB variant's name (``variants``), recorded in the file's attribute ``variant``.
    """
    import h5py
    from astropy.table import vstack
    from tqdm.auto import tqdm

    kb_cfg = cfg.kb
    bands = tuple(cfg.base.bands)
    n_pix = kb_cfg.cutout_pixels
    seed = int(cfg.base.seed)
    mocks_dir, negatives_dir = Path(mocks_dir), Path(negatives_dir)
    meta_m, shape_m, attrs_m = read_cutout_metadata(mocks_dir)
    meta_n, shape_n, attrs_n = read_cutout_metadata(negatives_dir)
    expected = (n_pix, n_pix, len(bands))
    for path, shape in ((mocks_dir, shape_m), (negatives_dir, shape_n)):
        if tuple(shape[1:]) != expected:
            raise InputFileError(f"{path}: cutouts of shape {tuple(shape[1:])}, expected {expected}")
    for path, attrs, kind in ((mocks_dir, attrs_m, "mock"), (negatives_dir, attrs_n, "negative")):
        got_kind = attrs.get("kind")
        got_kind = got_kind.decode() if isinstance(got_kind, bytes) else got_kind
        if got_kind is not None and got_kind != kind:
            raise InputFileError(f"{path}: a cutout set of kind '{got_kind}', expected '{kind}' (--mocks and "
                                 "--negatives swapped?)")
        if "bands" in attrs:
            got = [b.decode() if isinstance(b, bytes) else str(b) for b in attrs["bands"]]
            if tuple(got) != bands:
                raise InputFileError(f"{path}: band order {got}, expected {list(bands)}")

    rng = np.random.default_rng([seed, KB_STREAM])
    keep_m, keep_n = balance_classes(len(meta_m), len(meta_n), kb_cfg.mocks_per_negative, rng)
    fields = _field_info(Path(fields_dir) if fields_dir is not None else None)
    if fields_dir is not None and not fields:
        raise InputFileError(f"{fields_dir}: no field directories (field.json) to take z_lens and noise from")
    table = vstack([_standardise(meta_m[keep_m], 1, fields, bands), _standardise(meta_n[keep_n], 0, fields, bands)],
                   join_type="outer", metadata_conflicts="silent")
    ids = [str(v) for v in table["id"]]
    if len(set(ids)) != len(ids):
        dup = sorted({v for v in ids if ids.count(v) > 1})[:5]
        raise InputFileError(f"kb: duplicate cutout ids across mocks and negatives, e.g. {dup}")
    labels = np.asarray(table["label"], dtype=np.int8)
    fold = assign_folds(labels, kb_cfg.n_folds, kb_cfg.validation_fraction, seed)
    table["fold"] = fold
    table.meta.clear()
    n = len(table)

    zps = {}
    for attrs in (attrs_m, attrs_n):
        raw = attrs.get("zeropoints_ab")
        if raw is not None:
            by_field = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
            for f, zp in by_field.items():
                zps[f] = {b: float(zp[b]) for b in bands}
    zp_band = [float(np.median([zps[f][b] for f in zps])) if zps else np.nan for b in bands]

    out_path = Path(out_path)
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w", track_order=False) as h5:
        dset = h5.create_dataset("cutouts", shape=(n,) + expected, dtype=np.float32,
                                 chunks=(1,) + expected, track_times=False)
        row = 0
        for src, keep in ((mocks_dir, keep_m), (negatives_dir, keep_n)):
            with _CutoutReader(src) as reader:
                blocks = range(0, keep.size, BLOCK)
                for start in tqdm(blocks, desc=f"kb {src.name}", unit="block", disable=not progress, leave=False):
                    block = reader.take(keep[start:start + BLOCK])
                    dset[row:row + len(block)] = block
                    row += len(block)
        h5.create_dataset("labels", data=labels, track_times=False)
        width = max(len(v.encode()) for v in ids)
        h5.create_dataset("ids", data=np.array([v.encode() for v in ids], dtype=f"S{width}"), track_times=False)
        h5.create_dataset("fold", data=fold.astype(np.int16), track_times=False)
        h5.create_dataset("metadata", data=_to_records(table), track_times=False)
        h5.attrs["bands"] = np.array([b.encode() for b in bands])
        h5.attrs["pixel_scale_arcsec"] = float(cfg.base.pixel_scale_arcsec)
        h5.attrs["zeropoints_ab"] = np.array(zp_band, dtype=np.float64)
        h5.attrs["zeropoints_ab_by_field"] = json.dumps(zps, sort_keys=True)
        h5.attrs["n_folds"] = int(kb_cfg.n_folds)
        h5.attrs["seed"] = seed
        h5.attrs["validation_fraction"] = float(kb_cfg.validation_fraction)
        h5.attrs["mocks_per_negative"] = float(kb_cfg.mocks_per_negative)
        h5.attrs["variant"] = str(variant)
    return summarise(table)


def summarise(table) -> dict:
    """Counts of the KB by class, fold and field (the stage's metrics)."""
    labels = np.asarray(table["label"])
    fold = np.asarray(table["fold"])
    out = {
        "n_cutouts": int(labels.size),
        "n_mocks": int((labels == 1).sum()),
        "n_negatives": int((labels == 0).sum()),
        "n_validation": int((fold == -1).sum()),
        "folds": {},
        "fields": {},
    }
    for k in sorted(set(fold.tolist())):
        sel = fold == k
        out["folds"][str(k)] = {"n": int(sel.sum()), "n_mocks": int((labels[sel] == 1).sum())}
    for f in sorted({str(v) for v in table["field"]}):
        sel = np.array([str(v) == f for v in table["field"]])
        out["fields"][f] = {"n_mocks": int((labels[sel] == 1).sum()), "n_negatives": int((labels[sel] == 0).sum())}
    return out
