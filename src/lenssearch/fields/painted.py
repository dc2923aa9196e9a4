"""Synthetic HST/ACS light for a field whose mass comes from a real model (e.g. a LensTool ``best.par``).

A LensTool field (:func:`lenssearch.fields.lenstool.build_lenstool_field`) has a deflection map, critical lines
and member positions with one magnitude (``mag_lenstool``, the band of the model's scaling relation, F160W for
the CATS/Bergamini models) but no images. :func:`add_synthetic_light` paints the same light as the synthetic
fields at the members' positions (:mod:`lenssearch.fields.synthetic`): red-sequence colours from the CWW
elliptical template at the cluster redshift (converting ``mag_lenstool`` to F814W with the template's colour),
Sersic sizes from the size-luminosity relation, intracluster light around the brightest member, field galaxies,
stars, the band PSFs and the noise of a depth preset; it adds ``image_<BAND>.fits``, ``psf_<BAND>.fits``,
``stars.ecsv`` and the light columns of ``members.ecsv``, and completes ``field.json``. The directory is replaced
atomically.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np

from lenssearch.errors import InputFileError, LensSearchError
from lenssearch.fields import layout

#: galsim throughput files of the bands a LensTool magnitude may be given in.
BANDPASS_FILES = {"F435W": "ACS_wfc_F435W.dat", "F606W": "ACS_wfc_F606W.dat", "F814W": "ACS_wfc_F814W.dat",
                  "F105W": "WFC3_ir_F105W.dat", "F125W": "WFC3_ir_F125W.dat", "F160W": "WFC3_ir_F160W.dat"}


@functools.lru_cache(maxsize=32)
def elliptical_colour(band_a: str, band_b: str, z: float) -> float:
    """``m_a - m_b`` (AB) of the CWW elliptical template at redshift ``z``."""
    import galsim

    for b in (band_a, band_b):
        if b not in BANDPASS_FILES:
            raise LensSearchError(f"no throughput for band '{b}', expected one of {sorted(BANDPASS_FILES)}")
    sed = galsim.SED("CWW_E_ext.sed", wave_type="Ang", flux_type="flambda").atRedshift(float(z))
    mags = [sed.calculateMagnitude(galsim.Bandpass(BANDPASS_FILES[b], wave_type="nm").withZeropoint("AB"))
            for b in (band_a, band_b)]
    return float(mags[0] - mags[1])


def member_light(members, z_lens: float, mag_band: str, synth, bands, cosmology, rng):
    """Light columns for members with ``mag_lenstool``: band magnitudes, ``re_arcsec``, ``sersic_n``, ...

    The F814W magnitude is ``mag_lenstool + (m_F814W - m_band)`` of the elliptical template; the other bands and
    the sizes follow the synthetic members' recipe (:func:`lenssearch.fields.synthetic.draw_members`), with ``L*``
    at the brightest member's magnitude plus the configured BCG offset.
    """
    from lenssearch.fields.photometry import template_colours

    if "mag_lenstool" not in members.colnames:
        raise InputFileError("members.ecsv: no 'mag_lenstool' column to paint member light from")
    mc = synth.members
    m_lt = np.asarray(members["mag_lenstool"], dtype=float)
    if not np.all(np.isfinite(m_lt)):
        bad = int(np.flatnonzero(~np.isfinite(m_lt))[0])
        raise InputFileError(f"members.ecsv: row {bad + 1}: mag_lenstool is not a finite number")
    n = len(members)
    m814 = m_lt + elliptical_colour("F814W", mag_band, z_lens)
    m_star = float(np.min(m814)) + mc.bcg_offset_mag
    lum = 10.0 ** (-0.4 * (m814 - m_star))
    kpc = cosmology.kpc_per_arcsec(z_lens)
    re_kpc = mc.re_star_kpc * lum**mc.re_luminosity_slope * 10.0 ** rng.normal(0.0, mc.re_scatter_dex, n)
    n_lo, n_hi = mc.sersic_n_range
    frac = np.clip((m814.max() - m814) / max(m814.max() - m814.min(), 1e-6), 0.0, 1.0)
    base = template_colours("E", z_lens, tuple(bands))
    scatter = rng.normal(0.0, mc.red_sequence_scatter_mag, n)
    slope = mc.red_sequence_slope * (m814 - m_star)
    for j, band in enumerate(bands):
        weight = base[j] / base[0] if base[0] > 0 else 0.0
        members[f"mag_{band}"] = m814 + base[j] + weight * (slope + scatter)
    members["re_arcsec"] = np.clip(re_kpc / kpc, 0.04, None)
    members["sersic_n"] = np.clip(n_lo + (n_hi - n_lo) * frac + rng.normal(0.0, 0.3, n), 1.0, 6.0)
    members["axis_ratio"] = rng.uniform(*mc.axis_ratio_range, n)
    members["position_angle_deg"] = rng.uniform(0.0, 180.0, n)
    members["is_bcg"] = np.arange(n) == int(np.argmin(m814))
    return members, m_star


def add_synthetic_light(field_dir: str | Path, cfg, depth: str, image_size_arcsec: float,
                        mag_band: str = "F160W") -> Path:
    """Paint synthetic HST light on an existing (LensTool or other imageless) field directory; see the module."""
    from astropy.table import Table

    from lenssearch.fields.psf import band_psfs
    from lenssearch.fields.synthetic import (
        draw_field_galaxies,
        draw_stars,
        field_rng,
        noise_levels,
        observe,
        paint_field_galaxies,
        paint_icl,
        paint_members,
        paint_stars,
    )
    from lenssearch.fields.photometry import zeropoint
    from lenssearch.io import atomic_path
    from lenssearch.lensing.cosmology import Cosmology
    from lenssearch.lensing.deflection_maps import tan_wcs

    field_dir = Path(field_dir)
    info_path = field_dir / layout.FIELD_JSON
    if not info_path.exists():
        raise InputFileError(f"{field_dir}: not a field directory (no {layout.FIELD_JSON})")
    info = json.loads(info_path.read_text())
    synth = cfg.field.synthetic
    bands = tuple(cfg.base.bands)
    scale = cfg.base.pixel_scale_arcsec
    z_lens = float(info["z_lens"])
    reference = tuple(info["reference_radec"])
    cosmology = Cosmology.from_config(cfg.base.cosmology)
    rng = field_rng(cfg.base.seed, info["name"], stream=1)
    members = Table.read(field_dir / layout.MEMBERS, format="ascii.ecsv")
    members, m_star = member_light(members, z_lens, mag_band, synth, bands, cosmology, rng)
    n_pix = int(round(image_size_arcsec / scale))
    shape = (n_pix, n_pix)
    wcs = tan_wcs(reference, shape, scale)
    zps = {b: zeropoint(b) for b in bands}
    psfs = band_psfs(bands, scale, synth.psf_size_pixels, synth.psf_fwhm_arcsec)
    frames = {b: np.zeros(shape) for b in bands}
    bcg = members[int(np.argmax(members["is_bcg"]))]
    paint_icl(frames, bcg, synth.icl, z_lens, cosmology, wcs, scale, bands, zps)
    paint_members(frames, members, wcs, scale, bands, zps)
    galaxies = draw_field_galaxies(rng, image_size_arcsec, synth.field_galaxies, bands, reference)
    paint_field_galaxies(frames, galaxies, wcs, scale, bands, zps)
    stars = draw_stars(rng, image_size_arcsec, synth.stars, bands, reference)
    paint_stars(frames, stars, wcs, bands, zps, synth.stars.spike_mag_limit)
    depths, sigma = noise_levels(synth, depth, bands, psfs)
    images = observe(frames, psfs, sigma, rng, synth.exposure_time_s if synth.source_poisson else None)
    info.update({
        "bands": list(bands), "pixel_scale_arcsec": scale, "shape": list(shape), "zeropoints_ab": zps,
        "noise_sigma": sigma, "depth_5sigma_ab": depths, "depth_preset": depth, "m_star_F814W": m_star,
        "light": f"synthetic (lenssearch.fields.painted), member magnitudes from mag_lenstool in {mag_band}",
        "n_field_galaxies": len(galaxies), "n_stars": len(stars),
    })
    with atomic_path(field_dir, carry_over=True) as tmp:  # an update: every file of the field is copied over
        shutil.copytree(field_dir, tmp)
        for band in bands:
            layout.write_image(tmp / layout.image_name(band), images[band], wcs, band, zps[band],
                               {"NOISESIG": (sigma[band], "[e-/s] background sigma per pixel"),
                                "DEPTH5": (depths[band], "5-sigma point-source AB depth")})
            layout.write_psf(tmp / layout.psf_name(band), psfs[band], band, scale,
                             "empirical ACS/WFC F814W" if band == "F814W" else "Airy x Gaussian x pixel")
        (tmp / layout.MEMBERS).unlink()
        layout.write_table(tmp / layout.MEMBERS, members)
        layout.write_table(tmp / layout.STARS, stars)
        layout.write_table(tmp / "field_galaxies.ecsv", galaxies)
        (tmp / layout.FIELD_JSON).unlink()
        layout.write_json(tmp / layout.FIELD_JSON, info)
    return field_dir
