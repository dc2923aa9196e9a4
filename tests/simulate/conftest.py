"""A small field directory (the layout of docs/architecture.md) built in seconds for the simulate tests.

Two dPIE members in front of the outskirts of a cluster halo plus an external shear; images are Gaussian
noise plus the members' light; the critical-line catalogue lists both members.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

Z_LENS = 0.3
REFERENCE = (150.0, 2.0)
PIXEL = 0.03
NOISE = 0.003
MEMBERS = [  # id, x, y, sigma_kms, core, cut, mag_F814W
    ("TEST-M0000", 0.0, 0.0, 200.0, 0.03, 15.0, 19.5),
    ("TEST-M0001", 2.9, -2.4, 130.0, 0.02, 8.0, 21.5),
    ("TEST-M0002", -3.0, 2.6, 70.0, 0.02, 5.0, 22.5),   # no strong lens: a negative
    ("TEST-M0003", 5.7, 0.5, 60.0, 0.02, 5.0, 23.0),    # at the frame edge
]
STAR_XY = (3.5, -4.5)  # bright star near TEST-M0001


def lens_model():
    from lenssearch.lensing.cosmology import Cosmology
    from lenssearch.lensing.model import LensComponent, LensModel

    comps = [LensComponent("dpie", dict(sigma_kms=s, core_radius_arcsec=rc, cut_radius_arcsec=rt, emass=0.1,
                                        angle_deg=30.0, center_x=x, center_y=y), mid)
             for mid, x, y, s, rc, rt, _ in MEMBERS]
    comps.append(LensComponent("dpie", dict(sigma_kms=600.0, core_radius_arcsec=15.0, cut_radius_arcsec=500.0,
                                            emass=0.2, angle_deg=10.0, center_x=25.0, center_y=15.0), "halo"))
    comps.append(LensComponent("shear", dict(gamma=0.04, angle_deg=20.0), "shear"))
    return LensModel(comps, Z_LENS, Cosmology(70.0, 0.3))


def build_field(root: Path, name: str = "TEST", n_pix: int = 400, map_pixel: float = 0.1, map_size: float = 24.0,
                drop_member_radec: bool = False, seed: int = 3) -> Path:
    """Write ``root/name`` and return it."""
    from astropy.table import Table

    from lenssearch.fields import layout
    from lenssearch.fields.parfile import write_parfile
    from lenssearch.lensing.deflection_maps import compute_deflection_map, tan_wcs, write_deflection_fits
    from lenssearch.lensing.lenstool import xy_to_radec

    rng = np.random.default_rng(seed)
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    model = lens_model()
    wcs = tan_wcs(REFERENCE, (n_pix, n_pix), PIXEL)
    bands = ("F435W", "F606W", "F814W")
    zps = {"F435W": 25.66, "F606W": 26.49, "F814W": 25.94}
    yy, xx = np.mgrid[0:n_pix, 0:n_pix]
    xx = (xx - (n_pix - 1) / 2) * PIXEL
    yy = (yy - (n_pix - 1) / 2) * PIXEL
    psf_axis = np.arange(-7, 8)
    psf = np.exp(-0.5 * (psf_axis[:, None] ** 2 + psf_axis[None, :] ** 2) / 1.4**2)
    for k, band in enumerate(bands):
        img = rng.normal(0.0, NOISE, (n_pix, n_pix))
        for mid, x, y, *_rest, mag in MEMBERS:
            flux = 10 ** (-0.4 * (mag + (2 - k) * 0.8 - zps[band]))
            img += flux * np.exp(-np.hypot(xx - x, yy - y) / 0.15) / (2 * np.pi * (0.15 / PIXEL) ** 2)
        layout.write_image(path / layout.image_name(band), img, wcs, band, zps[band])
        layout.write_psf(path / layout.psf_name(band), psf, band, PIXEL, "gaussian test PSF")
    n_map = int(round(map_size / map_pixel))
    map_wcs = tan_wcs(REFERENCE, (n_map, n_map), map_pixel)
    dmap = compute_deflection_map(model, map_wcs, (n_map, n_map), REFERENCE, z_lens=Z_LENS,
                                  cosmology=model.cosmology, progress=False)
    write_deflection_fits(dmap, path / layout.DEFLECTION)
    write_parfile(path / layout.MODEL_PAR, model, REFERENCE)
    ids = [m[0] for m in MEMBERS]
    mx = np.array([m[1] for m in MEMBERS])
    my = np.array([m[2] for m in MEMBERS])
    ra, dec = xy_to_radec(mx, my, *REFERENCE)
    mag = np.array([m[6] for m in MEMBERS])
    members = Table({"member_id": ids, "ra": ra, "dec": dec, "x_arcsec": mx, "y_arcsec": my,
                     "z": np.full(len(ids), Z_LENS), "mag_F435W": mag + 1.6, "mag_F606W": mag + 0.8,
                     "mag_F814W": mag})
    if drop_member_radec:
        members.remove_columns(["ra", "dec"])
    layout.write_table(path / layout.MEMBERS, members)
    for z_s, thetas in ((1.5, (0.9, 0.35)), (3.0, (1.1, 0.45))):
        cat = Table({"line_id": [0, 1], "member_id": ids[:2], "x": mx[:2], "y": my[:2],
                     "theta_e_arcsec": list(thetas), "z_s": [z_s, z_s]})
        layout.write_table(path / layout.critical_lines_name(z_s), cat)
    sra, sdec = xy_to_radec(np.array([STAR_XY[0]]), np.array([STAR_XY[1]]), *REFERENCE)
    stars = Table({"star_id": ["S000"], "ra": sra, "dec": sdec, "mag": [18.0], "mag_F814W": [18.0]})
    layout.write_table(path / layout.STARS, stars)
    info = {"name": name, "kind": "synthetic", "z_lens": Z_LENS, "reference_radec": list(REFERENCE),
            "bands": list(bands), "pixel_scale_arcsec": PIXEL, "shape": [n_pix, n_pix], "zeropoints_ab": zps,
            "noise_sigma": {b: NOISE for b in bands}, "depth_5sigma_ab": {b: 28.0 for b in bands}}
    layout.write_json(path / layout.FIELD_JSON, info)
    return path


@pytest.fixture(scope="session")
def test_fields(tmp_path_factory) -> Path:
    """A fields root with one small field."""
    root = tmp_path_factory.mktemp("fields")
    build_field(root)
    return root


@pytest.fixture(scope="session")
def cfg():
    """The demo configuration with a small number of mocks and negatives."""
    import dataclasses

    from lenssearch.config import load_config

    root = Path(__file__).resolve().parents[2]
    c = load_config(root / "params.yaml")
    sim = dataclasses.replace(c.simulate, n_mocks=12)
    neg = dataclasses.replace(c.negatives, n_negatives=2, match_hosts=False)  # these tests have no mocks
    return dataclasses.replace(c, simulate=sim, negatives=neg)
