"""The simulate stage end to end on a small field: constraints, physics, repeatability, bad input."""

import dataclasses

import numpy as np
import pytest

from lenssearch.errors import LensSearchError
from lenssearch.simulate.inject import run_simulate, split_counts
from lenssearch.simulate.store import CUTOUTS, METADATA, read_cutout_set

from .conftest import Z_LENS, build_field


@pytest.fixture(scope="module")
def mocks(cfg, test_fields, tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "mocks"
    reports = out.parent / "reports"
    metrics = run_simulate(cfg, test_fields, out, reports, progress=False)
    return out, reports, metrics


def test_outputs_and_metadata_constraints(cfg, mocks, test_fields):
    out, reports, metrics = mocks
    cutouts, meta, attrs = read_cutout_set(out)
    n = cfg.simulate.n_mocks
    assert cutouts.shape == (n, 128, 128, 3) and cutouts.dtype == np.float32
    assert attrs["bands"] == ["F435W", "F606W", "F814W"] and attrs["kind"] == "mock"
    assert len(set(meta["id"])) == n and np.all(meta["label"] == 1)
    theta = cfg.field.critical_lines
    assert np.all(meta["theta_e_arcsec"] > theta.theta_e_min_arcsec)
    assert np.all(meta["theta_e_arcsec"] < theta.theta_e_max_arcsec)
    assert np.all(meta["n_images_in_cutout"] >= 1) and np.all(meta["n_images_in_cutout"] <= meta["n_images"])
    assert np.all(meta["z_s"] >= Z_LENS + cfg.simulate.sources.dz_min)
    assert np.all(meta["source_mag_F814W"] <= cfg.simulate.sources.mag_limit)
    assert np.all(meta["n_images"] >= 1) and np.mean(meta["n_images"] >= 2) > 0.5
    assert np.all(meta["magnification"] > 1.0)
    assert np.all(meta["magnification_in_cutout"] <= meta["magnification"] + 1e-9)
    assert np.all(np.isfinite(meta["lens_mag_F814W"]))
    assert set(meta["member_id"]) <= {"TEST-M0000", "TEST-M0001"}
    assert metrics["n_mocks"] == n
    for name in ("metrics.json", "source_counts_pz.png", "size_redshift.png"):
        assert (reports / name).exists()


def test_injected_light_is_the_source(cfg, mocks, test_fields):
    """Cutout minus the field = lensed source; its F814W flux = intrinsic flux x magnification (in the cutout)."""
    from lenssearch.fields.layout import list_fields
    from lenssearch.simulate.scene import FieldScene

    out, _, _ = mocks
    cutouts, meta, _ = read_cutout_set(out)
    scene = FieldScene(list_fields(test_fields)[0], cfg.base.bands, with_lens=False)
    zp = dict(zip(scene.bands, scene.zeropoints))
    for k in range(len(meta)):
        row = meta[k]
        field = scene.cutout(int(row["cutout_row0"]), int(row["cutout_col0"]), 128)
        injected = cutouts[k].astype(float) - field
        intrinsic = 10 ** (-0.4 * (row["source_mag_F814W"] - zp["F814W"]))
        # the PSF spreads a little light out of (and in from the padding into) the cutout
        assert injected[..., 2].sum() == pytest.approx(intrinsic * row["magnification_in_cutout"], rel=0.1, abs=1e-3)
        if row["z_s"] >= 4.0:
            # dropouts: (nearly) nothing in F435W compared with F814W (e-/s, zero points included)
            ratio = injected[..., 0].sum() / injected[..., 2].sum()
            assert ratio < 0.05 * 10 ** (0.4 * (zp["F435W"] - zp["F814W"]))
        # the recorded S/N is the matched-filter S/N of that light against the field's background noise
        sigma = np.array([scene.field.noise_sigma[b] for b in scene.bands])
        snr = np.sqrt(np.sum((injected / sigma) ** 2, axis=(0, 1)))
        recorded = np.array([row[f"lensed_snr_{b}"] for b in scene.bands])
        assert recorded == pytest.approx(snr, rel=1e-3, abs=1e-3)  # float32 cutouts


def test_lensed_snr_analytic():
    """A flat patch of N pixels at s per pixel in noise sigma has S/N = s sqrt(N) / sigma, band by band."""
    from lenssearch.simulate.inject import lensed_snr

    img = np.zeros((20, 20, 2))
    img[5:9, 5:14, 0] = 0.3  # 36 pixels
    img[0, 0, 1] = 2.0  # a single pixel
    assert lensed_snr(img, [0.1, 0.5]) == pytest.approx([0.3 * 6 / 0.1, 4.0])
    assert lensed_snr(2 * img, [0.1, 0.5]) == pytest.approx(2 * lensed_snr(img, [0.1, 0.5]))


def test_z_ge_4_mocks_drop_out_of_f435w(cfg, test_fields, tmp_path):
    """Force high-redshift sources (bins pushed to z > 4) and check the F435W light."""
    src = dataclasses.replace(cfg.simulate.sources, dz_min=4.0)
    c = dataclasses.replace(cfg, simulate=dataclasses.replace(cfg.simulate, sources=src, n_mocks=4))
    out = tmp_path / "hz"
    run_simulate(c, test_fields, out, None, progress=False)
    cutouts, meta, _ = read_cutout_set(out)
    from lenssearch.fields.layout import list_fields
    from lenssearch.simulate.scene import FieldScene

    scene = FieldScene(list_fields(test_fields)[0], cfg.base.bands, with_lens=False)
    assert np.all(meta["z_s"] >= Z_LENS + 4.0)
    for k in range(len(meta)):
        field = scene.cutout(int(meta["cutout_row0"][k]), int(meta["cutout_col0"][k]), 128)
        injected = cutouts[k].astype(float) - field
        f435 = np.abs(injected[..., 0]).sum()
        f814 = injected[..., 2].sum()
        assert f814 > 0 and f435 < 0.05 * f814


def test_each_mock_records_its_sources_young_burst(cfg, mocks, test_fields, tmp_path):
    """``source_young_fraction``: 0 with the default range (the template alone); with a range, the drawn value, and
    the recorded source magnitudes are the colour model's for that value (bluer in F435W than the template's)."""
    from lenssearch.simulate.colours import ColourModel

    _, meta, _ = read_cutout_set(mocks[0])
    assert tuple(cfg.simulate.sources.young_fraction) == (0.0, 0.0) and np.all(meta["source_young_fraction"] == 0.0)
    src = dataclasses.replace(cfg.simulate.sources, young_fraction=(0.5, 1.0))
    c = dataclasses.replace(cfg, simulate=dataclasses.replace(cfg.simulate, sources=src, n_mocks=4))
    run_simulate(c, test_fields, tmp_path / "young", None, progress=False)
    _, young, _ = read_cutout_set(tmp_path / "young")
    y = np.asarray(young["source_young_fraction"])
    assert np.all((y >= 0.5) & (y <= 1.0)) and len(set(y)) == len(y)
    colours = ColourModel.build(tuple(cfg.base.bands), cfg.simulate.sources.sed)  # the same tables on a longer z grid
    for k in range(len(young)):
        mag, z = float(young["source_mag_F814W"][k]), float(young["z_s"][k])
        expected = colours.magnitudes(mag, z, y[k])
        assert float(young["source_mag_F435W"][k]) == pytest.approx(float(expected["F435W"]), abs=1e-6)
        assert float(young["source_mag_F435W"][k]) < float(colours.magnitudes(mag, z)["F435W"])


def test_same_seed_same_bytes(cfg, test_fields, tmp_path):
    c = dataclasses.replace(cfg, simulate=dataclasses.replace(cfg.simulate, n_mocks=3))
    a, b = tmp_path / "a", tmp_path / "b"
    run_simulate(c, test_fields, a, tmp_path / "ra", progress=False)
    run_simulate(c, test_fields, b, tmp_path / "rb", progress=False)
    for name in (CUTOUTS, METADATA):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    for name in ("metrics.json", "source_counts_pz.png", "size_redshift.png"):
        assert (tmp_path / "ra" / name).read_bytes() == (tmp_path / "rb" / name).read_bytes()
    other = dataclasses.replace(c, base=dataclasses.replace(c.base, seed=c.base.seed + 1))
    run_simulate(other, test_fields, tmp_path / "c", None, progress=False)
    assert (a / METADATA).read_bytes() != (tmp_path / "c" / METADATA).read_bytes()


def test_member_catalogue_without_radec_is_a_clear_error(cfg, tmp_path):
    build_field(tmp_path / "fields", drop_member_radec=True)
    out = tmp_path / "mocks"
    with pytest.raises(LensSearchError, match=r"members.ecsv: member catalogue lacks column\(s\) \['ra', 'dec'\]"):
        run_simulate(cfg, tmp_path / "fields", out, None, progress=False)
    assert not out.exists()


def test_deflection_map_covering_the_cutout_but_not_the_lens_grid_is_completed_by_the_model(cfg, tmp_path):
    build_field(tmp_path / "fields", map_size=8.0)
    c = dataclasses.replace(cfg, simulate=dataclasses.replace(cfg.simulate, n_mocks=2))
    run_simulate(c, tmp_path / "fields", tmp_path / "mocks", None, progress=False)
    assert len(read_cutout_set(tmp_path / "mocks")[1]) == 2


def test_deflection_map_not_covering_the_cutout_is_a_clear_error(cfg, tmp_path):
    build_field(tmp_path / "fields", map_size=3.0)
    out = tmp_path / "mocks"
    with pytest.raises(LensSearchError, match="deflection.fits: the deflection map .* does not cover"):
        run_simulate(cfg, tmp_path / "fields", out, None, progress=False)
    assert not out.exists()


def test_cli_reports_bad_input_without_traceback(tmp_path):
    from typer.testing import CliRunner

    from lenssearch.cli import app

    build_field(tmp_path / "fields", drop_member_radec=True)
    result = CliRunner().invoke(app, ["simulate", "--fields", str(tmp_path / "fields"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "lacks column" in result.output and "Traceback" not in result.output


def test_no_fields_is_an_error(cfg, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LensSearchError, match="no field directories"):
        run_simulate(cfg, tmp_path / "empty", tmp_path / "m", None, progress=False)


def test_split_counts():
    assert split_counts(600, 2) == [300, 300]
    assert split_counts(7, 3) == [3, 2, 2]


def test_magnification_matches_a_brute_force_ray_trace(cfg, mocks, test_fields):
    """The stage's magnification (sub-pixels in the cutout + lens grid outside) against a fine direct sum."""
    from lenssearch.fields.layout import list_fields
    from lenssearch.lensing.cosmology import Cosmology
    from lenssearch.simulate.local import LocalLens
    from lenssearch.simulate.render import SersicSource, sersic_at
    from lenssearch.simulate.scene import FieldScene

    out, _, _ = mocks
    _, meta, _ = read_cutout_set(out, load_cutouts=False)
    scene = FieldScene(list_fields(test_fields)[0], cfg.base.bands, with_lens=True)
    cosmo = Cosmology(cfg.base.cosmology.H0, cfg.base.cosmology.Om0)
    step = 0.008
    axis = np.arange(-4.4, 4.4, step)
    for row in meta[:2]:
        member = scene.member_row(str(row["member_id"]))
        centre = (float(member["x_model"]), float(member["y_model"]))
        lens = LocalLens(centre, 4.5, scene.model, scene.deflection_map)
        f = cosmo.dds_over_ds(row["z_lens"], row["z_s"])
        src = SersicSource(row["source_x_arcsec"], row["source_y_arcsec"], row["source_re_arcsec"], row["sersic_n"],
                           row["axis_ratio"], row["position_angle_deg"])
        ax, ay = lens.deflection_on_grid(axis + centre[0], axis + centre[1])
        xx, yy = np.meshgrid(axis + centre[0], axis + centre[1])
        mu = sersic_at(src, xx - f * ax, yy - f * ay).sum() * step**2 * src.amplitude_for_flux(1.0)
        assert row["magnification"] == pytest.approx(mu, rel=0.01)


def test_visibility_cuts_keep_only_visible_arcs_and_the_peak_bound_holds(cfg, test_fields, tmp_path):
    """The visible variant's cuts: every kept mock passes them; the peak bound used to reject draws before any ray
    tracing is never below the peak actually rendered (it is an upper bound, so no mock is lost by it)."""
    from lenssearch.fields.layout import list_fields
    from lenssearch.simulate.colours import ColourModel
    from lenssearch.simulate.inject import MockFactory
    from lenssearch.simulate.render import SersicSource, flux_from_ab
    from lenssearch.simulate.scene import FieldScene

    vis = dataclasses.replace(cfg.simulate.visibility, magnification_min=5.0, peak_sigma_min=5.0, lensed_snr_min=20.0,
                              images_in_cutout_min=2)
    c = dataclasses.replace(cfg, simulate=dataclasses.replace(cfg.simulate, n_mocks=6, visibility=vis,
                                                              theta_e_weighting="uniform"))
    metrics = run_simulate(c, test_fields, tmp_path / "mocks", None, progress=False, variant="visible")
    _, meta, _ = read_cutout_set(tmp_path / "mocks")
    assert len(meta) == 6 and all(str(i).startswith("visible-mock-") for i in meta["id"])
    assert np.all(meta["magnification"] >= 5.0) and np.all(meta["arc_peak_sigma"] >= 5.0)
    assert np.all(meta["lensed_snr"] >= 20.0) and np.all(meta["n_images_in_cutout"] >= 2)
    snr = np.sqrt(sum(np.asarray(meta[f"lensed_snr_{b}"]) ** 2 for b in ("F435W", "F606W", "F814W")))
    np.testing.assert_allclose(meta["lensed_snr"], snr, rtol=1e-9)
    rejected = metrics["rejected"]["TEST"]
    assert rejected["n_drawn"] > 6 and rejected["peak_below_min"] > 0  # the faint draws were rejected
    # the bound: central surface brightness x pixel area >= the rendered peak, for the kept mocks
    scene = FieldScene(list_fields(test_fields)[0], cfg.base.bands, with_lens=True)
    colours = ColourModel.build(tuple(cfg.base.bands), cfg.simulate.sources.sed)  # the same tables on a longer z grid
    factory = MockFactory(scene, c, colours)
    for row in meta:
        mags = colours.magnitudes(row["source_mag_F814W"], row["z_s"])
        fluxes = np.array([float(flux_from_ab(mags[b], zp)) for b, zp in zip(scene.bands, scene.zeropoints)])
        src = SersicSource(0, 0, re_arcsec=row["source_re_arcsec"], sersic_n=row["sersic_n"],
                           axis_ratio=row["axis_ratio"], angle_deg=row["position_angle_deg"])
        bound = np.max(fluxes * src.amplitude_for_flux(1.0) * np.exp(src.bn) * scene.pixel_scale_arcsec**2
                       / factory.noise_sigma)
        assert bound >= row["arc_peak_sigma"] * (1 - 1e-6)
    # the draws do not depend on how many processes make the fields, nor on the run
    run_simulate(c, test_fields, tmp_path / "again", None, progress=False, variant="visible")
    assert (tmp_path / "mocks" / CUTOUTS).read_bytes() == (tmp_path / "again" / CUTOUTS).read_bytes()


def test_simulate_writes_truth_for_every_mock(cfg, mocks):
    """truth.ecsv: same ids and order as metadata.ecsv, finite, theta_E equal to the metadata's."""
    from astropy.table import Table

    from lenssearch.simulate.truth import PARAMETERS, TRUTH_COLUMNS, read_truth

    out = mocks[0]
    meta = Table.read(out / METADATA)
    truth = read_truth(out / "truth.ecsv")
    assert list(truth.colnames) == list(TRUTH_COLUMNS)
    assert list(truth["id"]) == list(meta["id"])
    assert np.allclose(truth["theta_e_arcsec"], meta["theta_e_arcsec"])
    for p in PARAMETERS:
        assert np.all(np.isfinite(truth[p])), p
    half_pixel = 0.5 * cfg.base.pixel_scale_arcsec * np.sqrt(2) + 1e-6
    assert np.all(np.hypot(truth["lens_x_arcsec"], truth["lens_y_arcsec"]) <= half_pixel)
    assert truth["theta_e_arcsec"].unit == "arcsec" and truth["lens_e1"].description


def test_theta_e_buffer_places_sources_across_the_multiple_image_region(cfg, test_fields, tmp_path):
    """The balanced variant's placement: the caustic grown by a fraction of theta_E reaches sources far from the
    caustic, so the same draws come out less magnified (doubles), and every kept mock is still multiply imaged;
    ``inner_caustic_fraction`` brings a share of them back inside the caustic (quads)."""
    vis = dataclasses.replace(cfg.simulate.visibility, magnification_min=0.0, images_in_cutout_min=2)
    mu = {}
    for fraction, inner in ((0.0, 0.0), (0.8, 0.0), (0.8, 1.0)):
        c = dataclasses.replace(cfg, simulate=dataclasses.replace(cfg.simulate, n_mocks=12, visibility=vis,
                                                                  buffer_theta_e_fraction=fraction,
                                                                  inner_caustic_fraction=inner))
        run_simulate(c, test_fields, tmp_path / f"m{fraction}-{inner}", None, progress=False)
        _, meta, _ = read_cutout_set(tmp_path / f"m{fraction}-{inner}")
        assert np.all(meta["n_images"] >= 2) and np.all(meta["n_images_in_cutout"] >= 2)
        mu[fraction, inner] = np.median(meta["magnification"])
    assert mu[0.8, 0.0] < 0.7 * mu[0.0, 0.0], mu
    # every source inside the caustic itself (the doubles/quads balance's share set to 1): the theta_E buffer is
    # ignored, and the mocks are as magnified as the paper's placement's
    assert mu[0.8, 1.0] > 0.7 * mu[0.0, 0.0] and mu[0.8, 1.0] > 1.2 * mu[0.8, 0.0], mu
