"""Deflection maps as FITS and as lens models (lenssearch.lensing.deflection_maps)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from numpy.testing import assert_allclose

from lenssearch.errors import InputFileError
from lenssearch.lensing import deflection_maps as dm
from lenssearch.lensing.lenstool import radec_to_xy
from lenssearch.lensing.model import LensComponent, LensModel

REF = (342.1832200, -44.5308890)
Z_LENS = 0.3475


@pytest.fixture(scope="module")
def model():
    return LensModel(
        [
            LensComponent(
                "sie", {"theta_e_arcsec": 1.5, "q": 0.7, "angle_deg": 25.0, "center_x": 0.4, "center_y": -0.3}
            ),
            LensComponent("shear", {"gamma": 0.05, "angle_deg": 40.0}),
        ],
        Z_LENS,
    )


@pytest.fixture(scope="module")
def dmap(model):
    wcs = dm.tan_wcs(REF, (90, 80), 0.1)
    return dm.compute_deflection_map(model, wcs, (90, 80), REF, progress=False)


def rotated_wcs(angle_deg, shape=(90, 80), pixel=0.1):
    wcs = dm.tan_wcs(REF, shape, pixel)
    th, s = np.deg2rad(angle_deg), pixel / 3600.0
    wcs.wcs.cd = [[-s * np.cos(th), s * np.sin(th)], [s * np.sin(th), s * np.cos(th)]]
    return wcs


def test_pixel_centres_follow_the_wcs_and_the_lenstool_frame(dmap, model):
    x, y = dmap.pixel_grid_xy()
    ra, dec = dmap.wcs.pixel_to_world_values(13.0, 57.0)
    assert (x[57, 13], y[57, 13]) == pytest.approx(radec_to_xy(ra, dec, *REF))
    # the map centre is the reference; x grows to the West (towards decreasing RA = increasing column)
    assert (x[44, 39] + x[45, 40]) / 2 == pytest.approx(0.0, abs=0.06)
    assert x[0, 1] > x[0, 0] and y[1, 0] > y[0, 0]
    ax, ay = model.deflection(x, y)
    assert_allclose(dmap.alpha_x, ax, atol=1e-12)
    assert_allclose(dmap.alpha_y, ay, atol=1e-12)


def test_fits_round_trip_keeps_values_wcs_and_metadata(dmap, tmp_path):
    (path,) = dm.write_deflection_fits(dmap, tmp_path / "deflection.fits", dtype=np.float64)
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "ALPHA_X", "ALPHA_Y"]
        header = hdul["ALPHA_X"].header
        assert header["BUNIT"] == "arcsec" and header["DDSDS"] == 1.0 and header["ALPHAFRM"] == "PIXEL"
        assert header["ZLENS"] == Z_LENS and header["CTYPE1"] == "RA---TAN"
    back = dm.read_deflection_fits(path)
    assert_allclose(back.alpha_x, dmap.alpha_x, rtol=0, atol=1e-13)
    assert_allclose(back.alpha_y, dmap.alpha_y, rtol=0, atol=1e-13)
    assert back.z_lens == Z_LENS and back.reference_radec == pytest.approx(REF)
    assert_allclose(back.wcs.wcs.crval, dmap.wcs.wcs.crval)
    assert_allclose(back.wcs.wcs.crpix, dmap.wcs.wcs.crpix)
    assert_allclose(back.wcs.pixel_scale_matrix, dmap.wcs.pixel_scale_matrix)
    # float32 (the default, as the HFF maps) is exact to single precision
    (path32,) = dm.write_deflection_fits(dmap, tmp_path / "deflection32.fits")
    assert_allclose(dm.read_deflection_fits(path32).alpha_x, dmap.alpha_x, rtol=1e-6, atol=1e-6)


def test_reads_hff_style_two_file_maps_on_a_rotated_grid(model, tmp_path):
    """HFF maps: primary-HDU images ``*_x-arcsec-deflect.fits`` / ``*_y-...``, components along pixel axes."""
    shape = (90, 80)
    wcs = rotated_wcs(30.0, shape)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    ra, dec = wcs.pixel_to_world_values(cols, rows)
    x, y = radec_to_xy(ra, dec, *REF)
    ax, ay = model.deflection(x, y)
    # unit vectors of the pixel axes in the model frame (West, North), from the WCS itself
    ra1, dec1 = wcs.pixel_to_world_values(cols + 1.0, rows)
    ra2, dec2 = wcs.pixel_to_world_values(cols, rows + 1.0)
    ex = np.stack(radec_to_xy(ra1, dec1, *REF)) - np.stack([x, y])
    ey = np.stack(radec_to_xy(ra2, dec2, *REF)) - np.stack([x, y])
    ex /= np.hypot(*ex)
    ey /= np.hypot(*ey)
    hff_x = ax * ex[0] + ay * ex[1]  # orthogonal axes: components = projections
    hff_y = ax * ey[0] + ay * ey[1]
    stem = "hlsp_frontier_model_test_cats_v1"
    for name, data in (("x", hff_x), ("y", hff_y)):
        fits.PrimaryHDU(data.astype(np.float32), header=wcs.to_header()).writeto(
            tmp_path / f"{stem}_{name}-arcsec-deflect.fits"
        )
    path_x = tmp_path / f"{stem}_x-arcsec-deflect.fits"
    with pytest.raises(InputFileError, match="ZLENS"):
        dm.read_deflection_fits(path_x)
    back = dm.read_deflection_fits(path_x, z_lens=Z_LENS, reference_radec=REF)
    # LensTool's frame is not conformal (x scales with cos Dec0, not cos Dec): the rotated pixel axes are not
    # exactly orthogonal in it, so projections and the exact basis change differ by ~2e-5 of the deflection
    assert_allclose(back.alpha_x, ax, atol=1e-4)
    assert_allclose(back.alpha_y, ay, atol=1e-4)
    # written back in the file convention, the components are the HFF ones
    px, py = back.pixel_axis_components()
    assert_allclose(px, hff_x, atol=1e-4)
    assert_allclose(py, hff_y, atol=1e-4)
    assert np.abs(px - ax).max() > 0.1  # the rotation by 30 deg is not a no-op
    # our own split layout is read the same way
    dm.write_deflection_fits(back, tmp_path / "mine.fits", split=True)
    again = dm.read_deflection_fits(tmp_path / "mine_x.fits")
    assert_allclose(again.alpha_x, back.alpha_x, atol=1e-6)
    assert dm.read_deflection_fits(tmp_path / "mine.fits").shape == shape


def test_deflection_map_behaves_as_the_lens_model(model):
    wcs = rotated_wcs(-20.0, (120, 120), 0.05)
    dmap = dm.compute_deflection_map(model, wcs, (120, 120), REF, progress=False)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-2.0, 2.0, 200), rng.uniform(-2.0, 2.0, 200)
    far = np.hypot(x - 0.4, y + 0.3) > 0.8  # the SIE is singular at its centre
    x, y = x[far], y[far]
    assert_allclose(np.stack(dmap.deflection(x, y)), np.stack(model.deflection(x, y)), atol=2e-4)
    assert_allclose(np.stack(dmap.hessian(x, y)), np.stack(model.hessian(x, y)), atol=5e-3)
    bx, by = dmap.ray_trace(x, y, 2.0)
    ex, ey = model.ray_trace(x, y, 2.0)
    assert_allclose(bx, ex, atol=2e-4)
    assert_allclose(by, ey, atol=2e-4)
    # whole-map finite differences agree with the analytic hessian away from the centre
    xx, yy = dmap.pixel_grid_xy()
    mask = np.hypot(xx - 0.4, yy + 0.3) > 1.0
    mask[[0, -1], :] = mask[:, [0, -1]] = False
    for got, want in zip(dmap.hessian_maps(), model.hessian(xx, yy)):
        assert_allclose(got[mask], want[mask], atol=5e-3)
    assert np.isnan(dmap.deflection(100.0, 0.0)[0])


def test_bad_files_raise_errors_naming_the_file(dmap, tmp_path):
    no_wcs = tmp_path / "nowcs.fits"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.ImageHDU(dmap.alpha_x, name="ALPHA_X"), fits.ImageHDU(dmap.alpha_y, name="ALPHA_Y")]
    ).writeto(no_wcs)
    with pytest.raises(InputFileError, match=r"nowcs\.fits: no celestial WCS"):
        dm.read_deflection_fits(no_wcs, z_lens=0.3)

    one_ext = tmp_path / "onlyx.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(dmap.alpha_x, dmap.wcs.to_header(), name="ALPHA_X")]).writeto(
        one_ext
    )
    with pytest.raises(InputFileError, match=r"onlyx\.fits: missing extension 'ALPHA_Y'"):
        dm.read_deflection_fits(one_ext, z_lens=0.3)

    bad = dmap.alpha_y.copy()
    bad[3, 4] = np.nan
    nan_file = tmp_path / "nan.fits"
    header = dmap.wcs.to_header()
    fits.HDUList(
        [fits.PrimaryHDU(), fits.ImageHDU(dmap.alpha_x, header, name="ALPHA_X"),
         fits.ImageHDU(bad, header, name="ALPHA_Y")]
    ).writeto(nan_file)
    with pytest.raises(InputFileError, match=r"nan\.fits: deflection map contains 1 NaN"):
        dm.read_deflection_fits(nan_file, z_lens=0.3)

    shape_file = tmp_path / "shape.fits"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.ImageHDU(dmap.alpha_x, header, name="ALPHA_X"),
         fits.ImageHDU(dmap.alpha_y[:-1], header, name="ALPHA_Y")]
    ).writeto(shape_file)
    with pytest.raises(InputFileError, match="different shapes"):
        dm.read_deflection_fits(shape_file, z_lens=0.3)

    with pytest.raises(InputFileError, match="missing.fits: no such deflection map"):
        dm.read_deflection_fits(tmp_path / "missing.fits")
