"""Reports of the ``kb`` stage: metrics, figures, and an MLflow run that records them.

Writes ``<reports>/metrics.json`` (counts per class, fold and field; the stage's DVC metrics),
``<reports>/gallery.png`` (Fig. 5-like) and ``<reports>/theta_e_vs_lens_mag.png`` (Fig. 4 right-like), then logs
the KB parameters, the counts and the figures to an MLflow run ``kb`` (experiment ``lenssearch-kb``) through
:mod:`lenssearch.tracking`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lenssearch.io import atomic_path

GALLERY = "gallery.png"
THETA_E_FIGURE = "theta_e_vs_lens_mag.png"
METRICS = "metrics.json"
EXPERIMENT = "lenssearch-kb"


def _flat_metrics(summary: dict) -> dict[str, float]:
    out = {k: float(v) for k, v in summary.items() if isinstance(v, (int, float))}
    for k, v in summary.get("folds", {}).items():
        out[f"fold_{k}_n"] = float(v["n"])
        out[f"fold_{k}_n_mocks"] = float(v["n_mocks"])
    return out


def write_kb_reports(kb_path: str | Path, reports_dir: str | Path, cfg, summary: dict,
                     fields_dir: str | Path | None = None, track: bool = True) -> list[Path]:
    """Write the metrics and figures of a KB; log them to MLflow when ``track``."""
    from lenssearch.config import as_dict, flatten
    from lenssearch.kb.build import read_kb
    from lenssearch.kb.figures import (
        gallery_negatives,
        scaling_relations_from_fields,
        select_gallery,
        stamp_gallery,
        theta_e_vs_lens_magnitude,
    )
    from lenssearch.lensing.cosmology import Cosmology

    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    kb = read_kb(kb_path, load_cutouts=False)
    meta = kb["metadata"]
    theta = np.asarray(meta["theta_e_arcsec"], dtype=float)[np.asarray(meta["label"]) == 1]
    summary = dict(summary)
    if theta.size and np.isfinite(theta).any():
        summary["theta_e_median_arcsec"] = float(np.nanmedian(theta))
        summary["fraction_theta_e_below_0p5"] = float(np.nanmean(theta < 0.5))
    mags = np.asarray(meta["source_mag_F814W"], dtype=float)[np.asarray(meta["label"]) == 1]
    if mags.size and np.isfinite(mags).any():
        summary["fraction_source_fainter_than_28"] = float(np.nanmean(mags > 28))

    import h5py

    with h5py.File(kb_path, "r") as h5:
        picks = {i for col in select_gallery(meta) for i in col}
        grid_idx = sorted(picks | set(gallery_negatives(meta["label"], 6).tolist()))
        cutouts = {i: h5["cutouts"][i] for i in grid_idx}

    class _Lazy:
        def __getitem__(self, i):
            return cutouts[int(i)]

    gallery = reports_dir / GALLERY
    with atomic_path(gallery) as tmp:
        stamp_gallery(_Lazy(), meta, tmp)
    relations = scaling_relations_from_fields(fields_dir, Cosmology.from_config(cfg.base.cosmology))
    figure = reports_dir / THETA_E_FIGURE
    with atomic_path(figure) as tmp:
        theta_e_vs_lens_magnitude(meta, tmp, relations)
    metrics = reports_dir / METRICS
    with atomic_path(metrics) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    written = [metrics, gallery, figure]
    if track:
        from lenssearch import tracking

        params = flatten({"base": as_dict(cfg.base), "kb": as_dict(cfg.kb)})
        with tracking.tracked_run("kb", experiment=EXPERIMENT, params=params, tags={"stage": "kb"}):
            tracking.log_metrics(_flat_metrics(summary))
            tracking.log_artifacts(written, artifact_path="kb")
    return written
