"""A set of cutouts on disk: the output of the ``simulate`` and ``negatives`` stages (input of ``kb``).

A cutout set is a directory with

- ``cutouts.h5``: dataset ``cutouts`` (float32, N x n x n x n_bands, band order of ``base.bands``, e-/s) and
  ``ids`` (fixed-length bytes), file attributes ``bands``, ``pixel_scale_arcsec``, ``kind`` (``mock`` |
  ``negative``), ``seed``, ``n`` and ``zeropoints_ab`` (JSON: ``{field: {band: zp}}``);
- ``metadata.ecsv``: one row per cutout, in the same order (``id`` first).

Writing is deterministic (no time stamps: ``track_times=False``; the same arrays give the same bytes) and atomic
(the whole directory is assembled under a temporary name and renamed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lenssearch.errors import InputFileError
from lenssearch.io import atomic_path, describe_columns, read_ecsv

CUTOUTS = "cutouts.h5"
METADATA = "metadata.ecsv"


def write_cutout_set(out_dir: str | Path, cutouts: np.ndarray, metadata, *, bands, pixel_scale_arcsec: float,
                     kind: str, seed: int, zeropoints_ab: dict, extra_files: dict | None = None) -> Path:
    """Write a cutout set directory atomically (see the module docstring).

    ``extra_files`` maps a file name to a callable ``write(path)`` that writes it inside the directory.
    """
    import h5py

    out_dir = Path(out_dir)
    cutouts = np.ascontiguousarray(cutouts, dtype=np.float32)
    ids = np.array([str(v).encode() for v in metadata["id"]])
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        with h5py.File(tmp / CUTOUTS, "w", track_order=False) as h5:
            h5.create_dataset("cutouts", data=cutouts, track_times=False)
            h5.create_dataset("ids", data=ids if len(ids) else np.zeros(0, dtype="S1"), track_times=False)
            h5.attrs["bands"] = np.array([b.encode() for b in bands])
            h5.attrs["pixel_scale_arcsec"] = float(pixel_scale_arcsec)
            h5.attrs["kind"] = kind
            h5.attrs["seed"] = int(seed)
            h5.attrs["n"] = int(cutouts.shape[0])
            h5.attrs["zeropoints_ab"] = json.dumps(zeropoints_ab, sort_keys=True)
        describe_columns(metadata).write(tmp / METADATA, format="ascii.ecsv")
        for name, writer in (extra_files or {}).items():
            writer(tmp / name)
    return out_dir


def read_cutout_set(path: str | Path, *, load_cutouts: bool = True):
    """Read a cutout set: ``(cutouts or None, metadata Table, attributes dict)``.

    Raises
    ------
    InputFileError
        Missing files, or metadata whose rows do not match the cutouts.
    """
    import h5py
    from astropy.table import Table

    path = Path(path)
    for name in (CUTOUTS, METADATA):
        if not (path / name).exists():
            raise InputFileError(f"{path / name}: missing from the cutout set {path}")
    meta = read_ecsv(path / METADATA, "cutout-set metadata")  # strict: a truncated file is refused, named
    try:
        with h5py.File(path / CUTOUTS, "r") as h5:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
            attrs["bands"] = [b.decode() if isinstance(b, bytes) else str(b) for b in h5.attrs["bands"]]
            attrs["zeropoints_ab"] = json.loads(attrs["zeropoints_ab"])
            n = h5["cutouts"].shape[0]
            ids = [v.decode() for v in h5["ids"][...]]
            cutouts = h5["cutouts"][...] if load_cutouts else None
    except OSError as exc:  # h5py: a truncated or corrupt file
        raise InputFileError(f"{path / CUTOUTS}: not a readable HDF5 cutout file ({exc}); is it truncated?") from None
    if n != len(meta) or ids != [str(v) for v in meta["id"]]:
        raise InputFileError(f"{path}: {CUTOUTS} ({n} cutouts) and {METADATA} ({len(meta)} rows) do not match")
    return cutouts, meta, attrs
