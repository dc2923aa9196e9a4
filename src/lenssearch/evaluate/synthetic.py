"""Synthetic out-of-fold predictions and KB metadata in the exact layouts of the train and kb stages.

For tests and ``benchmarks/bench_evaluate.py``: the evaluation stages can be exercised without a trained
network. Lenses are harder to find when the source is faint and the Einstein radius small (as in Angora et al.
2023, Sect. 4.3), blue non-lenses are more often mistaken for lenses, and each network adds its own noise to a
shared latent score, so committees have something to gain.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from astropy.table import Table

from lenssearch.io import atomic_path

NETWORKS = ("vgg", "sc_vgg", "resnet", "f435w", "f606w", "f814w")


def synthetic_kb_metadata(rng: np.random.Generator, n: int, n_folds: int = 3, lens_fraction: float = 2 / 3) -> Table:
    """KB metadata rows (``id``, ``label``, ``fold``, lens and source properties) for ``n`` cutouts."""
    label = (rng.random(n) < lens_fraction).astype(np.int8)
    fold = np.empty(n, np.int16)
    for cls in (0, 1):  # stratified folds
        idx = rng.permutation(np.flatnonzero(label == cls))
        fold[idx] = np.arange(idx.size) % n_folds
    n_members = max(n // 3, 12)
    member = rng.integers(0, n_members, n)
    m_mag = rng.uniform(18.0, 23.5, n_members)
    m_col = 0.9 - 0.04 * (m_mag - 21.0) + rng.normal(0.0, 0.05, n_members)
    blue = rng.random(n_members) < 0.08
    m_col[blue] -= rng.uniform(0.6, 1.2, blue.sum())
    lens = label == 1
    nan = np.full(n, np.nan)
    theta = np.where(lens, rng.uniform(0.2, 3.5, n), nan)
    z_s = np.where(lens, rng.uniform(1.0, 6.0, n), nan)
    src_mag = np.where(lens, rng.uniform(23.5, 29.5, n), nan)
    src_re = np.where(lens, rng.lognormal(np.log(0.2), 0.4, n), nan)
    # matched-filter S/N of the lensed source (simulate.inject.lensed_snr): brighter sources, larger arcs
    snr = np.where(lens, 8.0 * 10.0 ** (-0.4 * (src_mag - 27.0)) * np.sqrt(np.nan_to_num(theta, nan=1.0)), nan)
    return Table(
        {
            "id": np.array([f"c{i:06d}" for i in range(n)]),
            "label": label,
            "fold": fold,
            "field": np.array(["SYN1"] * n),
            "member_id": member,
            "theta_e_arcsec": theta,
            "z_s": z_s,
            "source_mag_F435W": src_mag + 0.3,
            "source_mag_F606W": src_mag + 0.1,
            "source_mag_F814W": src_mag,
            "source_re_arcsec": src_re,
            "lensed_snr_F435W": 0.5 * snr,
            "lensed_snr_F606W": 0.8 * snr,
            "lensed_snr_F814W": snr,
            "lens_mag_F814W": m_mag[member],
            "lens_color_F606W_F814W": m_col[member],
            "blue_member": blue[member],
        }
    )


def synthetic_predictions(
    rng: np.random.Generator, meta: Table, networks=NETWORKS, noise: dict | None = None
) -> dict[str, Table]:
    """One ``predictions.ecsv``-like table per network for the cutouts of ``meta``."""
    noise = noise or {"vgg": 1.2, "sc_vgg": 1.0, "resnet": 1.1, "f435w": 1.4, "f606w": 1.5, "f814w": 1.45}
    lens = np.asarray(meta["label"]) == 1
    theta = np.nan_to_num(np.asarray(meta["theta_e_arcsec"]), nan=1.0)
    mag = np.nan_to_num(np.asarray(meta["source_mag_F814W"]), nan=26.0)
    blue = np.asarray(meta["blue_member"]) if "blue_member" in meta.colnames else np.zeros(len(meta), bool)
    shared = rng.normal(0.0, 1.0, len(meta))
    base = np.where(lens, 2.2 + 0.8 * (theta - 0.5) - 0.9 * np.clip(mag - 27.0, 0, None), -2.5 + 2.0 * blue)
    out = {}
    for net in networks:
        logit = base + 0.8 * shared + rng.normal(0.0, noise.get(net, 1.3), len(meta))
        p = 1.0 / (1.0 + np.exp(-logit))
        out[net] = Table(
            {
                "id": np.asarray(meta["id"]),
                "fold": np.asarray(meta["fold"], np.int16),
                "network": np.array([net] * len(meta)),
                "label": np.asarray(meta["label"], np.int8),
                "probability": p.astype(np.float32),
            }
        )
    return out


def write_synthetic(
    root: Path, rng: np.random.Generator, n: int = 900, networks=NETWORKS, n_folds: int = 3
) -> tuple[Path, Path]:
    """Write ``<root>/reports/<network>/predictions.ecsv`` and ``<root>/data/kb/kb.h5`` (no cutouts: the
    ``metadata``, ``labels``, ``fold`` and ``ids`` datasets of the kb stage's layout).

    Returns ``(predictions_dir, kb_path)``.
    """
    root = Path(root)
    meta = synthetic_kb_metadata(rng, n, n_folds)
    preds = synthetic_predictions(rng, meta, networks)
    reports = root / "reports"
    for net, table in preds.items():
        path = reports / net / "predictions.ecsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            table.write(tmp, format="ascii.ecsv")
    kb = root / "data" / "kb" / "kb.h5"
    kb.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(kb) as tmp, h5py.File(tmp, "w") as h5:
        # the kb stage's layout: a compound dataset, strings as fixed-length UTF-8 bytes, bools as int8
        cols = {}
        for name in meta.colnames:
            data = np.asarray(meta[name])
            cols[name] = (np.char.encode(data.astype(str), "utf-8") if data.dtype.kind in "US"
                          else data.astype(np.int8) if data.dtype.kind == "b" else data)
        rec = np.empty(len(meta), dtype=[(k, v.dtype) for k, v in cols.items()])
        for k, v in cols.items():
            rec[k] = v
        h5.create_dataset("metadata", data=rec)
        h5.create_dataset("labels", data=np.asarray(meta["label"], np.int8))
        h5.create_dataset("fold", data=np.asarray(meta["fold"], np.int16))
        h5.create_dataset("ids", data=rec["id"])
    return reports, kb
