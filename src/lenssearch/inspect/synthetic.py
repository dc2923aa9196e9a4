"""A small synthetic search field and candidate catalogue for trying the inspection app without the pipeline.

:func:`build_synthetic_inspection_inputs` writes, in ``out_dir``:

- ``field/image_<BAND>.fits`` (three bands, TAN WCS, Gaussian noise, elliptical galaxies, blue arcs around the
  lenses), ``field/members.ecsv`` (``member_id``, ``ra``, ``dec``, ``z``, ``mag_<BAND>``), ``field/planted.ecsv``;
- ``candidates.ecsv`` in the columns of the search (``id``, ``ra``, ``dec``, ``score``, ``score_<member>``,
  ``kept``, ``is_lens``) plus the modeling network's ``model_ra``, ``model_dec``, ``model_theta_e_arcsec``,
  ``model_theta_e_sigma_arcsec`` for half of them;
- ``calibration.ecsv``: systems of known class (``ra``, ``dec``, ``is_lens``, ``origin``).

Used by the tests and by ``lenssearch inspect demo --synthetic``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BANDS = ("F435W", "F606W", "F814W")


def build_synthetic_inspection_inputs(out_dir: str | Path, n_candidates: int = 12, seed: int = 7,
                                      size_pix: int = 1000, pixel_arcsec: float = 0.1) -> dict[str, Path]:
    """Write the synthetic field, candidates and calibration systems; returns their paths."""
    import astropy.units as u
    from astropy.io import fits
    from astropy.table import Table
    from astropy.wcs import WCS

    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    field = out_dir / "field"
    field.mkdir(parents=True, exist_ok=True)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [size_pix / 2 + 0.5, size_pix / 2 + 0.5]
    wcs.wcs.cd = np.array([[-pixel_arcsec / 3600.0, 0.0], [0.0, pixel_arcsec / 3600.0]])
    yy, xx = np.mgrid[0:size_pix, 0:size_pix].astype(np.float32)
    noise = np.array([0.004, 0.003, 0.004], dtype=np.float32)
    images = [rng.normal(0.0, noise[b], (size_pix, size_pix)).astype(np.float32) for b in range(3)]
    n_members = 60
    margin = 60
    mx = rng.uniform(margin, size_pix - margin, n_members)
    my = rng.uniform(margin, size_pix - margin, n_members)
    mag = rng.uniform(19.0, 23.0, n_members)
    z = np.where(rng.random(n_members) < 0.6, rng.normal(0.4, 0.01, n_members), rng.uniform(0.05, 3.5, n_members))
    colour = np.array([0.25, 0.6, 1.0], dtype=np.float32)  # red galaxies
    for i in range(n_members):
        r2 = ((xx - mx[i]) ** 2 + (yy - my[i]) ** 2) / (2 * 3.0**2)
        profile = np.exp(-r2) * 10 ** (-0.4 * (mag[i] - 21.0))
        for b in range(3):
            images[b] += colour[b] * profile
    lens_members = np.arange(0, n_members, 5)[: max(n_candidates // 2, 2)]
    arc = np.array([1.0, 0.7, 0.4], dtype=np.float32)  # blue arcs
    for i in lens_members:
        radius = rng.uniform(10, 14)
        r = np.hypot(xx - mx[i], yy - my[i])
        angle = np.arctan2(yy - my[i], xx - mx[i])
        ring = np.exp(-((r - radius) ** 2) / (2 * 1.2**2)) * (0.5 + 0.5 * np.cos(angle - rng.uniform(0, 2 * np.pi)))
        for b in range(3):
            images[b] += 0.05 * arc[b] * ring
    header = wcs.to_header()
    for b, band in enumerate(BANDS):
        fits.PrimaryHDU(images[b], header=header).writeto(field / f"image_{band}.fits", overwrite=True)
    ra, dec = wcs.all_pix2world(mx, my, 0)
    members = Table()
    members["member_id"] = [f"m{i:03d}" for i in range(n_members)]
    members["ra"] = ra * u.deg
    members["dec"] = dec * u.deg
    members["z"] = z
    for b, band in enumerate(BANDS):
        members[f"mag_{band}"] = (mag - 2.5 * np.log10(colour[b])) * u.mag
    members.write(field / "members.ecsv", format="ascii.ecsv", overwrite=True)
    planted = Table({"id": [f"planted-{k:03d}" for k in range(len(lens_members))], "ra": ra[lens_members] * u.deg,
                     "dec": dec[lens_members] * u.deg, "label": np.ones(len(lens_members), dtype=int)})
    planted.write(field / "planted.ecsv", format="ascii.ecsv", overwrite=True)

    others = np.setdiff1d(np.arange(n_members), lens_members)
    picked = np.concatenate([lens_members, rng.choice(others, n_candidates - len(lens_members), replace=False)])
    cand = Table()
    cand["id"] = [f"{k:06d}" for k in picked]
    cand["ra"] = ra[picked] * u.deg
    cand["dec"] = dec[picked] * u.deg
    cand["score"] = rng.uniform(0.5, 1.0, len(picked))
    cand["score_vgg"] = rng.uniform(0.5, 1.0, len(picked))
    cand["kept"] = np.ones(len(picked), dtype=bool)
    cand["is_lens"] = np.isin(picked, lens_members).astype(int)
    has_model = np.arange(len(picked)) % 2 == 0
    cand["model_ra"] = np.where(has_model, ra[picked] + 0.2 / 3600, np.nan) * u.deg
    cand["model_dec"] = np.where(has_model, dec[picked], np.nan) * u.deg
    cand["model_theta_e_arcsec"] = np.where(has_model, 1.2, np.nan) * u.arcsec
    cand["model_theta_e_sigma_arcsec"] = np.where(has_model, 0.15, np.nan) * u.arcsec
    cand.sort("score", reverse=True)
    cand.meta["bands"] = list(BANDS)
    cand.write(out_dir / "candidates.ecsv", format="ascii.ecsv", overwrite=True)

    calib = Table()
    non = rng.choice(np.setdiff1d(others, picked), 3, replace=False)
    rows = np.concatenate([lens_members[:3], non])
    calib["id"] = [f"c{k:03d}" for k in rows]
    calib["ra"] = ra[rows] * u.deg
    calib["dec"] = dec[rows] * u.deg
    calib["is_lens"] = np.isin(rows, lens_members).astype(int)
    calib["origin"] = ["planted" if v else "non-lens" for v in calib["is_lens"]]
    calib.write(out_dir / "calibration.ecsv", format="ascii.ecsv", overwrite=True)
    return {"field": field, "candidates": out_dir / "candidates.ecsv", "calibration": out_dir / "calibration.ecsv"}
