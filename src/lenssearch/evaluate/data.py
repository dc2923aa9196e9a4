"""Inputs of the evaluation stages: out-of-fold predictions, KB metadata, the paper's published tables.

- ``reports/<network>/predictions.ecsv`` (issue 4): columns ``id``, ``fold``, ``network``, ``label``,
  ``probability``, one out-of-fold probability per cross-validation cutout.
- ``data/kb/kb.h5`` (issue 3): the astropy table at HDF5 path ``metadata``, one row per cutout.
- ``angora2023_tables.yaml`` (this folder): Tables A.1-A.5 of Angora et al. 2023, transcribed with provenance.

:func:`join_predictions` makes the "wide" table used everywhere else: one row per cutout, ``id``, ``fold``,
``label``, one ``p_<network>`` column per network, and the KB metadata columns.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import yaml
from astropy.table import Table, join

from lenssearch.errors import InputFileError, LensSearchError

PREDICTION_COLUMNS = ("id", "fold", "network", "label", "probability")

#: KB metadata columns used by Tables A.1, A.4, A.5 and Figs. 8, 9, A.1 (NaN where they do not apply).
METADATA_COLUMNS = (
    "theta_e_arcsec",
    "z_s",
    "source_mag_F814W",
    "source_re_arcsec",
    "lens_mag_F814W",
    "lens_color_F606W_F814W",
)


def _as_str(col) -> np.ndarray:
    arr = np.asarray(col)
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "utf-8")
    return arr.astype(str)


def read_predictions(path: str | Path, network: str | None = None) -> Table:
    """Read one network's ``predictions.ecsv`` and check its contract.

    Raises
    ------
    InputFileError
        Missing file or column, a label not 0/1, a probability outside [0, 1], duplicate ids, or a ``network``
        column that disagrees with ``network``; the message names the file and the row.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such predictions file (written by the train stage)")
    try:
        table = Table.read(path, format="ascii.ecsv")
    except Exception as exc:  # astropy raises several types for malformed ECSV
        raise InputFileError(f"{path}: not a readable ECSV table ({exc})") from None
    missing = [c for c in PREDICTION_COLUMNS if c not in table.colnames]
    if missing:
        raise InputFileError(f"{path}: missing column(s) {missing}; expected {list(PREDICTION_COLUMNS)}")
    table["id"] = _as_str(table["id"])
    table["network"] = _as_str(table["network"])
    label = np.asarray(table["label"])
    prob = np.asarray(table["probability"], dtype=float)
    bad = np.flatnonzero(~np.isin(label, (0, 1)))
    if bad.size:
        raise InputFileError(f"{path}: row {bad[0] + 1}: label {label[bad[0]]} is not 0 or 1")
    bad = np.flatnonzero(~np.isfinite(prob) | (prob < 0) | (prob > 1))
    if bad.size:
        raise InputFileError(f"{path}: row {bad[0] + 1}: probability {float(prob[bad[0]])} is not in [0, 1]")
    ids, counts = np.unique(table["id"], return_counts=True)
    if np.any(counts > 1):
        raise InputFileError(f"{path}: id '{ids[counts > 1][0]}' appears {counts.max()} times; ids must be unique")
    if network is not None:
        other = np.flatnonzero(table["network"] != network)
        if other.size:
            raise InputFileError(
                f"{path}: row {other[0] + 1}: network '{table['network'][other[0]]}', expected '{network}'"
            )
    table["label"] = label.astype(np.int8)
    table["probability"] = prob
    table["fold"] = np.asarray(table["fold"], dtype=np.int16)
    return table


def read_kb_metadata(path: str | Path) -> Table:
    """Read the KB's metadata (the compound HDF5 dataset ``metadata``) as a Table with ids as str.

    Strings stored as fixed-length UTF-8 bytes are decoded; a table written by astropy at HDF5 path
    ``metadata`` reads the same way.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such knowledge base (written by the kb stage)")
    try:
        with h5py.File(path, "r") as h5:
            if "metadata" not in h5:
                raise InputFileError(f"{path}: no 'metadata' dataset (not a lenssearch KB?)")
            rec = h5["metadata"][...]
    except OSError as exc:
        raise InputFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    meta = Table(rec)
    for name in meta.colnames:
        if meta[name].dtype.kind == "S":
            meta[name] = np.char.decode(np.asarray(meta[name]), "utf-8")
    if "id" not in meta.colnames:
        raise InputFileError(f"{path}: metadata has no 'id' column")
    meta["id"] = _as_str(meta["id"])
    return meta


def join_predictions(predictions: dict[str, Table], metadata: Table | None = None) -> Table:
    """One row per cutout: ``id``, ``fold``, ``label``, ``p_<network>`` per network, metadata columns.

    Every network must score exactly the same cutouts with the same fold and label (the k-fold contract).
    Metadata columns missing from the KB are added as NaN so that tables can still be built.

    Raises
    ------
    LensSearchError
        Networks that disagree on ids, folds or labels, or ids absent from the metadata.
    """
    if not predictions:
        raise LensSearchError("no predictions to evaluate")
    names = list(predictions)
    first = predictions[names[0]]
    order = np.argsort(first["id"])
    wide = Table({"id": first["id"][order], "fold": first["fold"][order], "label": first["label"][order]})
    for name in names:
        tab = predictions[name]
        o = np.argsort(tab["id"])
        if len(tab) != len(wide) or not np.array_equal(tab["id"][o], wide["id"]):
            extra = sorted(set(tab["id"]) ^ set(wide["id"]))[:3]
            raise LensSearchError(
                f"predictions of '{name}' do not score the same cutouts as '{names[0]}' (e.g. ids {extra})"
            )
        for col in ("fold", "label"):
            diff = np.flatnonzero(np.asarray(tab[col][o]) != np.asarray(wide[col]))
            if diff.size:
                raise LensSearchError(
                    f"predictions of '{name}': id '{wide['id'][diff[0]]}' has {col} {tab[col][o][diff[0]]}, "
                    f"'{names[0]}' says {wide[col][diff[0]]}"
                )
        wide[f"p_{name}"] = np.asarray(tab["probability"][o], dtype=float)
    if metadata is not None:
        keep = ["id"] + [c for c in metadata.colnames if c not in ("label", "fold") and c != "id"]
        meta = metadata[keep]
        missing = sorted(set(wide["id"]) - set(meta["id"]))
        if missing:
            raise LensSearchError(f"{len(missing)} predicted ids are not in the KB metadata (e.g. '{missing[0]}')")
        wide = join(wide, meta, keys="id", join_type="left")
        wide.sort("id")
    for col in METADATA_COLUMNS:
        if col not in wide.colnames:
            wide[col] = np.full(len(wide), np.nan)
    return wide


def networks_of(wide: Table) -> list[str]:
    """Network names of a wide table, in column order."""
    return [c[2:] for c in wide.colnames if c.startswith("p_")]


def load_published() -> dict:
    """Angora et al. 2023, Tables A.1-A.5 as transcribed in ``angora2023_tables.yaml`` (with provenance)."""
    text = resources.files("lenssearch.evaluate").joinpath("angora2023_tables.yaml").read_text()
    return yaml.safe_load(text)
