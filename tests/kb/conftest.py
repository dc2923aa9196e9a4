"""Small synthetic cutout sets in the simulate/negatives layout, so the KB tests do not need the pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lenssearch.config import load_config

BANDS = ("F435W", "F606W", "F814W")
NOISE = {"F435W": 0.002, "F606W": 0.004, "F814W": 0.0022}
Z_LENS = {"FA": 0.35, "FB": 0.44}


def make_cutouts(rng, n, size=128):
    """Gaussian background at the expected noise plus a central elliptical galaxy."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    galaxy = np.exp(-np.hypot(xx, yy) / 4.0)
    out = np.empty((n, size, size, 3), np.float32)
    for j, band in enumerate(BANDS):
        out[..., j] = rng.normal(0.0, NOISE[band], (n, size, size)) + 0.5 * (j + 1) * galaxy
    return out


def metadata(rng, n, kind):
    from astropy.table import Table

    field = np.where(np.arange(n) % 2 == 0, "FA", "FB")
    z_l = np.array([Z_LENS[f] for f in field])
    t = Table()
    t["id"] = [f"{kind}-{i:05d}" for i in range(n)]
    t["field"] = field
    t["member_id"] = [f"{f}-M{i % 40:04d}" for i, f in enumerate(field)]
    t["lens_mag_F814W"] = rng.uniform(18, 24, n)
    t["lens_color_F606W_F814W"] = rng.normal(1.0, 0.05, n)
    if kind == "mock":
        t["theta_e_arcsec"] = rng.uniform(0.25, 3.0, n)
        t["z_s"] = z_l + 0.5 + rng.uniform(0, 4, n)
        for b in BANDS:
            t[f"source_mag_{b}"] = rng.uniform(22, 28.9, n)
        t["source_re_arcsec"] = rng.uniform(0.05, 0.5, n)
        t["sersic_n"] = rng.uniform(1, 2, n)
        t["axis_ratio"] = rng.uniform(0.2, 1, n)
        t["position_angle_deg"] = rng.uniform(0, 180, n)
        t["magnification"] = rng.uniform(2, 20, n)
        t["n_images"] = rng.integers(1, 5, n)
    return t


def write_set(path, cutouts, meta, kind):
    from lenssearch.simulate.store import write_cutout_set

    zps = {f: {"F435W": 25.66, "F606W": 26.49, "F814W": 25.94} for f in Z_LENS}
    return write_cutout_set(path, cutouts, meta, bands=BANDS, pixel_scale_arcsec=0.03, kind=kind, seed=1,
                            zeropoints_ab=zps)


def write_fields(root):
    """Minimal field directories (field.json only is read by the kb stage)."""
    import json

    for name, z in Z_LENS.items():
        d = root / name
        d.mkdir(parents=True)
        info = {"name": name, "kind": "synthetic", "z_lens": z, "bands": list(BANDS), "shape": [100, 100],
                "zeropoints_ab": {"F435W": 25.66, "F606W": 26.49, "F814W": 25.94}, "noise_sigma": NOISE,
                "pixel_scale_arcsec": 0.03, "reference_radec": [0.0, 0.0]}
        (d / "field.json").write_text(json.dumps(info))
        for b in BANDS:  # read_field checks that the images and PSFs exist
            (d / f"image_{b}.fits").write_bytes(b"")
            (d / f"psf_{b}.fits").write_bytes(b"")
    return root


@pytest.fixture(scope="session")
def cfg():
    base = load_config("params.yaml")
    return dataclasses.replace(base, kb=dataclasses.replace(base.kb, n_folds=3, validation_fraction=0.1))


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    """90 mocks and 40 negatives (the KB keeps 80 mocks to reach 2:1), two fields."""
    root = tmp_path_factory.mktemp("kbinputs")
    rng = np.random.default_rng(7)
    n_m, n_n = 90, 40
    write_set(root / "mocks", make_cutouts(rng, n_m), metadata(rng, n_m, "mock"), "mock")
    write_set(root / "negatives", make_cutouts(rng, n_n), metadata(rng, n_n, "neg"), "negative")
    write_fields(root / "fields")
    return root


@pytest.fixture(scope="session")
def kb_path(inputs, cfg, tmp_path_factory):
    from lenssearch.kb.build import build_kb

    out = tmp_path_factory.mktemp("kb") / "kb.h5"
    build_kb(inputs / "mocks", inputs / "negatives", out, cfg, fields_dir=inputs / "fields", progress=False)
    return out
