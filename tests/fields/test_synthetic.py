"""Synthetic HST/ACS fields: layout, noise depth, PSFs, WCS, red sequence, BCG, mass model, critical lines."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lenssearch.fields import layout
from lenssearch.fields.photometry import mag_to_flux, template_colours
from lenssearch.fields.synthetic import draw_members, m_star_at, schechter_magnitudes


def test_layout_is_complete(field_dir, field, entry):
    names = {p.name for p in field_dir.iterdir()}
    for band in field.bands:
        assert layout.image_name(band) in names and layout.psf_name(band) in names
    for name in ("field.json", "model.par", "deflection.fits", "members.ecsv", "stars.ecsv",
                 "critical_lines_zs2.0.ecsv"):
        assert name in names, name
    assert not [n for n in names if n.endswith(".tmp")]
    assert field.kind == "synthetic" and field.name == entry.name
    assert field.shape == (800, 800)
    assert field.zeropoints_ab == {"F435W": 25.66, "F606W": 26.49, "F814W": 25.94}


def test_noise_matches_the_configured_depth(field, cfg):
    """The background sigma measured on source-free pixels equals the sigma of the configured 5-sigma depth."""
    from astropy.stats import sigma_clipped_stats

    from lenssearch.fields.photometry import pixel_sigma_from_depth

    depths = cfg.field.synthetic.depths[cfg.field.synthetic.fields[0].depth]
    for band in field.bands:
        img = np.asarray(field.image(band), dtype=float)
        expected = pixel_sigma_from_depth(depths[band], field.zeropoints_ab[band], field.psf(band))
        assert field.noise_sigma[band] == pytest.approx(expected, rel=1e-6)
        # source-free corners (3" boxes; the intracluster light is flat across them)
        corners = [img[:100, :100], img[:100, -100:], img[-100:, :100], img[-100:, -100:]]
        std = np.median([sigma_clipped_stats(c, sigma=2.5, stdfunc="mad_std", maxiters=10)[2] for c in corners])
        assert std == pytest.approx(expected, rel=0.10), band
        # the same from differences of neighbouring pixels over the whole image (smooth light cancels)
        diff = (img[:, 1:] - img[:, :-1]).ravel()
        _, _, dstd = sigma_clipped_stats(diff, sigma=2.5, stdfunc="mad_std", maxiters=10)
        assert dstd / np.sqrt(2) == pytest.approx(expected, rel=0.10), band


def test_depth_definition_is_psf_photometry_at_five_sigma(field):
    """A point source at the 5-sigma depth is measured with S/N 5 by optimal PSF-weighted photometry."""
    from lenssearch.fields.photometry import pixel_sigma_from_depth

    rng = np.random.default_rng(5)
    psf = field.psf("F814W")
    m5, zp = 28.7, 25.94
    sigma = pixel_sigma_from_depth(m5, zp, psf)
    flux = mag_to_flux(m5, zp)
    images = flux * psf + rng.normal(0.0, sigma, (4000,) + psf.shape)
    estimates = (images * psf).sum(axis=(1, 2)) / (psf**2).sum()
    assert estimates.mean() / estimates.std() == pytest.approx(5.0, rel=0.05)


def test_psfs_are_normalised_and_centred(field):
    from lenssearch.fields.psf import psf_fwhm_arcsec

    for band in field.bands:
        psf = field.psf(band)
        from astropy.io import fits

        raw = fits.getdata(field.path / layout.psf_name(band))
        assert raw.sum() == pytest.approx(1.0, abs=1e-5)
        assert psf.shape[0] % 2 == 1
        assert np.unravel_index(psf.argmax(), psf.shape) == (psf.shape[0] // 2, psf.shape[1] // 2)
        assert 0.08 < psf_fwhm_arcsec(psf, 0.03) < 0.12, band


def test_wcs_is_valid_and_shared(field, entry):
    from astropy.io import fits
    from astropy.wcs import WCS

    headers = [fits.getheader(field.path / layout.image_name(b)) for b in field.bands]
    wcs = [WCS(h) for h in headers]
    for w in wcs:
        assert w.has_celestial and w.wcs.ctype[0] == "RA---TAN"
        np.testing.assert_allclose(np.sqrt(np.abs(np.linalg.det(w.pixel_scale_matrix))) * 3600, 0.03)
        np.testing.assert_allclose(w.wcs.crval, entry.center_radec)
    for h in headers:
        assert h["BUNIT"] == "ELECTRONS/S" and "ZP_AB" in h and "PHOTZPT" in h
    members = field.members
    col, row = wcs[0].world_to_pixel_values(members["ra"], members["dec"])
    # the model frame (x West, y North, arcsec) and the image pixels agree
    np.testing.assert_allclose((col - 399.5) * 0.03, members["x_arcsec"], atol=2e-3)
    np.testing.assert_allclose((row - 399.5) * 0.03, members["y_arcsec"], atol=2e-3)


def test_members_on_the_red_sequence(field, cfg, entry):
    from lenssearch.lensing.cosmology import Cosmology

    mc = cfg.field.synthetic.members
    members = field.members
    m = np.asarray(members["mag_F814W"])
    m_star = m_star_at(entry.z_lens, mc, Cosmology(70, 0.3))
    base = template_colours("E", entry.z_lens, field.bands)
    colour = np.asarray(members["mag_F435W"] - members["mag_F814W"])
    residual = colour - base[0] - mc.red_sequence_slope * (m - m_star)
    assert abs(np.mean(residual)) < 0.05
    assert np.std(residual) == pytest.approx(mc.red_sequence_scatter_mag, rel=0.35)
    # on the image: aperture colours of the five brightest members follow the catalogue within 0.15 mag
    from astropy.wcs import WCS

    wcs = WCS(__import__("astropy.io.fits", fromlist=["x"]).getheader(field.path / "image_F814W.fits"))
    yy, xx = np.mgrid[:800, :800]
    imgs = {b: np.asarray(field.image(b), dtype=float) for b in ("F606W", "F814W")}
    for k in np.argsort(m)[:5]:
        c, r = wcs.world_to_pixel_values(members["ra"][k], members["dec"][k])
        ap = np.hypot(xx - c, yy - r) < 10
        measured = -2.5 * np.log10((imgs["F606W"][ap].sum() / mag_to_flux(0, 26.49))
                                   / (imgs["F814W"][ap].sum() / mag_to_flux(0, 25.94)))
        assert measured == pytest.approx(members["mag_F606W"][k] - members["mag_F814W"][k], abs=0.15)


def test_bcg_is_the_brightest_at_the_halo_centre(field, entry):
    members = field.members
    assert members["is_bcg"][0] and members["mag_F814W"].argmin() == 0
    assert (members["x_arcsec"][0], members["y_arcsec"][0]) == (entry.halos[0].x_arcsec, entry.halos[0].y_arcsec)
    assert members["sigma_kms"].argmax() == 0


def test_mass_follows_the_potfile_scaling(field, cfg):
    members = field.members
    mc = cfg.field.synthetic.members
    lum = 10 ** (-0.4 * (np.asarray(members["mag_F814W"]) - field.info["m_star_F814W"]))
    np.testing.assert_allclose(members["sigma_kms"], mc.sigma_star_kms * lum**0.25, rtol=1e-6)
    ratio = np.asarray(members["cut_radius_arcsec"]) / np.sqrt(lum)
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)


def test_model_par_reads_back_as_the_same_model(field, cfg, entry):
    from lenssearch.fields.synthetic import build_mass_model
    from lenssearch.lensing.cosmology import Cosmology
    from lenssearch.lensing.lenstool import read_parfile

    lt = read_parfile(field.model_path)
    np.testing.assert_allclose(lt.reference_radec, entry.center_radec)
    assert lt.z_lens == pytest.approx(entry.z_lens)
    model = build_mass_model(entry, field.members, Cosmology(70, 0.3))
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-12, 12, (2, 500))
    a1 = np.array(model.deflection(x, y))
    a2 = np.array(lt.model.deflection(x, y))
    np.testing.assert_allclose(a2, a1, atol=2e-5 * np.abs(a1).max())
    # the deflection map stored with the field is the same model, interpolated (smooth away from member cores)
    dmap = field.deflection()
    m = field.members
    far = np.min(np.hypot(x[:, None] - np.asarray(m["x_arcsec"]), y[:, None] - np.asarray(m["y_arcsec"])), axis=1) > 1
    np.testing.assert_allclose(np.array(dmap.deflection(x[far], y[far])), a1[:, far], atol=5e-3)


def test_critical_line_catalogues_are_written(field):
    from lenssearch.lensing.critical import read_secondary_catalogue

    paths = field.critical_line_paths
    assert list(paths) == [2.0]
    table = read_secondary_catalogue(paths[2.0])
    assert set(table["member_id"]) <= set(field.members["member_id"])
    assert np.all((table["theta_e_arcsec"] > 0.2) & (table["theta_e_arcsec"] < 3.5))


def test_members_know_their_own_critical_lines(cfg, entry):
    """In a field whose cluster halo is negligible, each bright member has its own line of the dPIE's size."""
    import dataclasses

    from scipy.optimize import brentq

    from lenssearch.config import HaloConfig
    from lenssearch.fields.synthetic import build_mass_model, critical_line_catalogues, field_rng
    from lenssearch.lensing.cosmology import Cosmology
    from lenssearch.lensing.profiles import DPIE

    cosmo = Cosmology(70, 0.3)
    weak = dataclasses.replace(entry, n_members=6, size_arcsec=40.0, shear_gamma=0.0, halos=(
        HaloConfig(sigma_kms=60.0, core_radius_kpc=100.0, cut_radius_kpc=1000.0, emass=0.0, angle_deg=0.0,
                   x_arcsec=0.0, y_arcsec=0.0),))
    members = draw_members(weak, cfg.field.synthetic, cfg.base.bands, cosmo, field_rng(5, "weak"))
    model = build_mass_model(weak, members, cosmo)
    lines = critical_line_catalogues(model, members, cfg, (150.0, 2.0), progress=False)[2.0]
    f = cosmo.dds_over_ds(weak.z_lens, 2.0)
    x, y = np.asarray(members["x_arcsec"]), np.asarray(members["y_arcsec"])
    checked = 0
    for k in range(1, len(members)):
        p = dict(sigma_kms=members["sigma_kms"][k], core_radius_arcsec=members["core_radius_arcsec"][k],
                 cut_radius_arcsec=members["cut_radius_arcsec"][k])
        # isolated circular dPIE: tangential critical radius where f alpha(theta) = theta
        theta_e = brentq(lambda t: f * DPIE.deflection(t, 0.0, **p)[0] - t, 1e-3, 5.0)
        nearest = np.min(np.hypot(x[k] - np.delete(x, k), y[k] - np.delete(y, k)))
        if theta_e < 0.3 or nearest < 4.0:
            continue
        own = lines[lines["member_id"] == members["member_id"][k]]
        assert len(own) == 1, members["member_id"][k]
        # the BCG and the other members add convergence and shear: the line is somewhat larger than isolated
        assert theta_e * 0.95 < own["theta_e_arcsec"][0] < theta_e * 1.35
        checked += 1
    assert checked >= 1


def test_schechter_sampler_matches_the_analytic_distribution():
    rng = np.random.default_rng(11)
    m_star, alpha, lo, hi = 19.6, -1.1, 18.6, 24.5
    draws = schechter_magnitudes(rng, 5000, m_star, alpha, lo, hi)
    grid = np.linspace(lo, hi, 20001)
    x = 10 ** (0.4 * (m_star - grid))
    pdf = x ** (alpha + 1) * np.exp(-x)
    cdf = np.cumsum(pdf)
    cdf /= cdf[-1]
    assert stats.kstest(draws, lambda v: np.interp(v, grid, cdf)).pvalue > 0.01


def test_spiral_interlopers_are_bluer_than_members(field):
    from astropy.table import Table

    gal = Table.read(field.path / "field_galaxies.ecsv")
    spirals = gal[gal["kind"] == "spiral"]
    assert len(spirals) > 0
    member_colour = np.median(field.members["mag_F435W"] - field.members["mag_F814W"])
    assert np.median(spirals["disc_colour_F435W"]) < member_colour - 1.0


def test_same_seed_same_members(cfg, entry):
    from lenssearch.fields.synthetic import field_rng
    from lenssearch.lensing.cosmology import Cosmology

    a = draw_members(entry, cfg.field.synthetic, cfg.base.bands, Cosmology(70, 0.3), field_rng(1, "X"))
    b = draw_members(entry, cfg.field.synthetic, cfg.base.bands, Cosmology(70, 0.3), field_rng(1, "X"))
    c = draw_members(entry, cfg.field.synthetic, cfg.base.bands, Cosmology(70, 0.3), field_rng(2, "X"))
    assert np.array_equal(a["x_arcsec"], b["x_arcsec"]) and not np.array_equal(a["x_arcsec"], c["x_arcsec"])
    half = entry.size_arcsec / 2 - cfg.field.synthetic.members.edge_margin_arcsec
    assert np.all(np.abs(a["x_arcsec"]) <= half) and np.all(np.abs(a["y_arcsec"]) <= half)


def test_rebuild_is_byte_identical(cfg, entry, tmp_path):
    import dataclasses
    import hashlib

    from lenssearch.fields.synthetic import build_synthetic_field

    tiny = dataclasses.replace(entry, name="TINY", size_arcsec=10.0, n_members=8)
    digests = []
    for run in ("a", "b"):
        path = build_synthetic_field(tiny, cfg, tmp_path / run)
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())})
    assert digests[0] == digests[1]
    assert "image_F814W.fits" in digests[0] and "critical_lines_zs2.0.ecsv" in digests[0]
