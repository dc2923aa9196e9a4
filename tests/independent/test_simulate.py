"""The independent test set: arc S/N, strong lensing, non-lenses, determinism (lenstronomy as the peer code)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from lenssearch.errors import LensSearchError
from lenssearch.independent import simulate as sim

from .conftest import N_LENSES, N_NONLENSES, with_independent


def _read(path):
    from lenssearch.simulate.store import read_cutout_set

    return read_cutout_set(path)


def test_set_layout(small_set, cfg):
    cutouts, meta, attrs = _read(small_set)
    assert cutouts.shape == (N_LENSES + N_NONLENSES, 128, 128, 3) and cutouts.dtype == np.float32
    assert attrs["kind"] == "independent" and attrs["bands"] == list(cfg.base.bands)
    assert np.all(np.isfinite(cutouts))
    assert list(meta["label"]).count(1) == N_LENSES
    assert set(meta["kind"][meta["label"] == 0]) == set(sim.NONLENS_KINDS)
    assert str(meta["theta_e_arcsec"].unit) == "arcsec" and meta["lensed_snr"].description
    assert len(set(meta["psf_index_F814W"])) > 1 and set(meta["psf_index_F435W"]) == {0}  # PSF across the detector


def test_arc_snr_equals_lenstronomy_image_model(small_set, cfg):
    """The stored arc S/N is recomputed from the stored truth with lenstronomy's ImageModel (a peer code path:
    its own grid, supersampling and convolution), against the stored noise sigma. The frame is rendered
    ``pad_pixels`` wider and cropped, as the simulation does, so that light from just outside the cutout enters
    through the PSF wings."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    from lenssearch.fields.photometry import ZEROPOINTS_AB

    _, meta, _ = _read(small_set)
    pad, s = cfg.independent.pad_pixels, cfg.base.pixel_scale_arcsec
    n = cfg.independent.cutout_pixels + 2 * pad
    corner = -(n - 1) / 2.0 * s
    data = ImageData(image_data=np.zeros((n, n)), ra_at_xy_0=corner, dec_at_xy_0=corner,
                     transform_pix2angle=np.eye(2) * s)
    light = LightModel(["SERSIC_ELLIPSE"])
    lenses = meta[meta["label"] == 1]
    assert len(lenses) == N_LENSES
    for row in lenses:
        kw_lens = [dict(theta_E=row["theta_e_arcsec"], e1=row["lens_e1"], e2=row["lens_e2"],
                        center_x=row["lens_x_arcsec"], center_y=row["lens_y_arcsec"]),
                   dict(gamma1=row["shear_gamma1"], gamma2=row["shear_gamma2"], ra_0=row["lens_x_arcsec"],
                        dec_0=row["lens_y_arcsec"])]
        kw_src = dict(R_sersic=row["source_re_arcsec"], n_sersic=row["source_sersic_n"], e1=row["source_e1"],
                      e2=row["source_e2"], center_x=row["source_x_arcsec"], center_y=row["source_y_arcsec"])
        unit = light.total_flux([{**kw_src, "amp": 1.0}])[0]
        snr = []
        psfs = sim.band_psfs(cfg, f814w_index=row["psf_index_F814W"])
        for band in cfg.base.bands:
            flux = 10 ** (-0.4 * (row[f"source_mag_{band}"] - ZEROPOINTS_AB[band]))
            model = ImageModel(data, PSF(psf_type="PIXEL", kernel_point_source=psfs[band]), LensModel(["SIE", "SHEAR"]),
                               source_model_class=light,
                               kwargs_numerics={"supersampling_factor": cfg.independent.supersampling})
            arc = model.image(kw_lens, [{**kw_src, "amp": flux / unit}], unconvolved=False)[pad:-pad, pad:-pad]
            value = np.sqrt(np.sum((arc / row[f"noise_sigma_{band}"]) ** 2))
            assert_allclose(row[f"lensed_snr_{band}"], value, rtol=1e-3)
            snr.append(value)
        assert_allclose(row["lensed_snr"], np.sqrt(np.sum(np.square(snr))), rtol=1e-3)
        assert row["lensed_snr"] > 0


def test_lenses_are_strong(small_set, cfg):
    """Every lens's source centre has >= min_images images (LensEquationSolver, finer settings than the
    simulation's), and a source at the caustic centre is multiply imaged."""
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver

    lens_model = LensModel(["SIE", "SHEAR"])
    solver = LensEquationSolver(lens_model)
    _, meta, _ = _read(small_set)
    for row in meta[meta["label"] == 1]:
        te = row["theta_e_arcsec"]
        kw = [dict(theta_E=te, e1=row["lens_e1"], e2=row["lens_e2"], center_x=row["lens_x_arcsec"],
                   center_y=row["lens_y_arcsec"]),
              dict(gamma1=row["shear_gamma1"], gamma2=row["shear_gamma2"], ra_0=row["lens_x_arcsec"],
                   dec_0=row["lens_y_arcsec"])]
        xs, ys = solver.image_position_from_source(row["source_x_arcsec"], row["source_y_arcsec"], kw,
                                                   min_distance=0.01 * te, search_window=6 * te)
        assert len(xs) >= cfg.independent.source.min_images
        assert row["n_images"] == len(xs)
        # the images a cutout classifier sees: inside the cutout, not the infinitely demagnified centre
        half = 0.5 * cfg.independent.cutout_pixels * cfg.base.pixel_scale_arcsec
        mu = np.abs(lens_model.magnification(xs, ys, kw))
        inside = int(np.sum((np.abs(xs) <= half) & (np.abs(ys) <= half) & (mu >= 0.1)))
        assert inside >= cfg.independent.source.min_images_in_cutout >= 2
        assert row["n_images_in_cutout"] == inside
        assert row["magnification"] > 1.0  # a strongly lensed source is magnified overall
        # at the centre of the caustics (the lens centre for SIE + shear) the source is imaged four times
        xc, _ = solver.image_position_from_source(row["lens_x_arcsec"], row["lens_y_arcsec"], kw,
                                                  min_distance=0.01 * te, search_window=6 * te)
        assert len(xc) >= 2
    grid = sim.Grid(128, 8, 2, 0.03)
    renderer = sim.Renderer(grid)
    kw = [dict(theta_E=1.0, e1=0.1, e2=-0.05, center_x=0.0, center_y=0.0), dict(gamma1=0.03, gamma2=0.02)]
    assert renderer.count_images(kw, 0.0, 0.0, 1.0) == (4, 4)
    assert renderer.count_images(kw, 0.0, 0.0, 1.0, half_size=0.5) == (4, 0)  # all four outside a 1" cutout
    assert renderer.count_images(kw, 1.3, 0.0, 1.0)[0] == 1  # outside the caustics: one image


def test_nonlenses_carry_no_lensed_flux(cfg):
    grid = sim.Grid(cfg.independent.cutout_pixels, cfg.independent.pad_pixels, 2, cfg.base.pixel_scale_arcsec)
    renderer, observer = sim.Renderer(grid), sim.Observer(cfg, grid)
    for i, kind in enumerate(sim.KINDS):
        rng = np.random.default_rng([7, i])
        scene = sim.DRAWERS[kind](rng, renderer, cfg.independent)
        obs = observer.observe(scene, rng)
        assert obs.noiseless.sum() > 0
        if kind == sim.LENS_KIND:
            assert scene.lensed is not None and obs.lensed.sum() > 0
            assert_allclose(scene.lensed.image.sum(), scene.truth["magnification"])
        else:
            assert scene.lensed is None and not np.any(obs.lensed)
            assert np.all(sim.arc_snr(obs.lensed, obs.noise_sigma) == 0)


def test_nonlens_metadata(small_set):
    _, meta, _ = _read(small_set)
    neg = meta[meta["label"] == 0]
    assert np.all(neg["lensed_snr"] == 0) and np.all(neg["n_images"] == 0)
    assert np.all(np.isnan(neg["theta_e_arcsec"])) and np.all(np.isnan(neg["magnification"]))


def test_psfs_are_centred(cfg):
    """Every PSF a cutout may draw peaks at its centre (a corner-peaked stamp would displace the F814W light)."""
    observer = sim.Observer(cfg, sim.Grid(128, 8, 1, cfg.base.pixel_scale_arcsec))
    regions = [i for i, _ in observer.psf_sets["F814W"]]
    assert len(regions) >= 50 and 27 not in regions and 34 not in regions
    for psfs in observer.psf_sets.values():
        for _, psf in psfs:
            assert sim.centred_psf(psf) and psf.sum() == pytest.approx(1.0)
    corner = np.zeros((41, 41))
    corner[39, 39] = 1.0
    assert not sim.centred_psf(corner)


def test_noise_matches_the_depth(cfg):
    """Blank sky: the pixel sigma is the one of the drawn depth (5 sigma point source through the PSF's NEA)."""
    from lenssearch.fields.photometry import depth_from_pixel_sigma, zeropoint

    grid = sim.Grid(128, 8, 1, cfg.base.pixel_scale_arcsec)
    observer = sim.Observer(cfg, grid)
    obs = observer.observe(sim.Scene("blank", [], []), np.random.default_rng(3))
    for k, band in enumerate(cfg.base.bands):
        assert_allclose(np.std(obs.observed[..., k]), obs.noise_sigma[k], rtol=0.03)
        assert_allclose(depth_from_pixel_sigma(obs.noise_sigma[k], zeropoint(band), obs.psfs[band]),
                        obs.depth_m5[k], atol=1e-6)
        lo, hi = sorted((cfg.independent.depth_shallow[band], cfg.independent.depth_deep[band]))
        assert lo <= obs.depth_m5[k] <= hi


def test_same_seed_same_bytes(cfg, tmp_path):
    small = with_independent(cfg, n_lenses=2, n_nonlenses=3, supersampling=2)
    a = sim.run_independent_simulate(small, tmp_path / "a")
    sim.run_independent_simulate(small, tmp_path / "b")
    for name in ("cutouts.h5", "metadata.ecsv", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    import dataclasses

    other = dataclasses.replace(small, base=dataclasses.replace(small.base, seed=small.base.seed + 1))
    sim.run_independent_simulate(other, tmp_path / "c")
    assert (tmp_path / "a" / "cutouts.h5").read_bytes() != (tmp_path / "c" / "cutouts.h5").read_bytes()
    assert a["kinds"]["lens"] == 2


def test_kind_counts_and_bad_config(cfg):
    counts = sim.kind_counts(100, cfg.independent.confusers.fractions)
    assert sum(counts.values()) == 100 and counts["elliptical"] == 20
    with pytest.raises(LensSearchError, match="unknown kind"):
        sim.kind_counts(10, {"elliptical": 1.0, "spaceship": 1.0})
    import dataclasses

    bad = dataclasses.replace(cfg, base=dataclasses.replace(cfg.base, bands=("F435W", "F814W")))
    with pytest.raises(LensSearchError, match="base.bands"):
        sim.simulate_independent(bad, n_lenses=1, n_nonlenses=0)
    confusers = dataclasses.replace(cfg.independent.confusers, bulge_to_total_range=(0.0, 0.5))
    with pytest.raises(LensSearchError, match="bulge_to_total_range"):
        sim.simulate_independent(with_independent(cfg, confusers=confusers), n_lenses=0, n_nonlenses=1)
