"""The lens around a member: near/far deflections, critical lines and caustics, image counting, placement."""

import numpy as np
import pytest

from lenssearch.errors import LensSearchError
from lenssearch.lensing.cosmology import Cosmology
from lenssearch.lensing.deflection_maps import compute_deflection_map, tan_wcs
from lenssearch.lensing.model import LensComponent, LensModel
from lenssearch.simulate.local import LocalLens, count_images, sample_in_caustic

from .conftest import REFERENCE, Z_LENS, lens_model


@pytest.fixture(scope="module")
def model():
    return lens_model()


@pytest.fixture(scope="module")
def dmap(model):
    n = 200
    wcs = tan_wcs(REFERENCE, (n, n), 0.1)
    return compute_deflection_map(model, wcs, (n, n), REFERENCE, z_lens=Z_LENS, cosmology=model.cosmology,
                                  progress=False)


def test_near_far_deflection_matches_the_full_model(model, dmap):
    lens = LocalLens((0.0, 0.0), 5.0, model, dmap)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-4.8, 4.8, (2, 500))
    ax, ay = lens.deflection(x, y)
    ex, ey = model.deflection(x, y)
    assert np.max(np.hypot(ax - ex, ay - ey)) < 1e-4
    # the separable grid evaluation is the same field
    axis = np.linspace(-4.0, 4.0, 41)
    gx, gy = lens.deflection_on_grid(axis, axis + 0.3)
    xx, yy = np.meshgrid(axis, axis + 0.3)
    fx, fy = model.deflection(xx, yy)
    assert np.max(np.hypot(gx - fx, gy - fy)) < 1e-4


def test_far_field_from_the_model_without_a_map(model):
    lens = LocalLens((2.9, -2.4), 3.0, model, None)
    x, y = np.random.default_rng(1).uniform(-2.5, 2.5, (2, 300)) + np.array([[2.9], [-2.4]])
    ax, ay = lens.deflection(x, y)
    ex, ey = model.deflection(x, y)
    assert np.max(np.hypot(ax - ex, ay - ey)) < 1e-4


def test_map_only_local_lens(model, dmap):
    lens = LocalLens((0.0, 0.0), 4.0, None, dmap)
    x, y = np.random.default_rng(2).uniform(-3, 3, (2, 200))
    ax, ay = lens.deflection(x, y)
    ex, ey = dmap.deflection(x, y)
    # both are bicubic interpolations of the map (on a window / on the whole map)
    np.testing.assert_allclose(ax, ex, atol=1e-4)
    np.testing.assert_allclose(ay, ey, atol=1e-4)
    fx, fy = model.deflection(x, y)
    # map-only fields pay for it near the members (0.1" map pixels): why the near components are exact
    assert np.max(np.hypot(ax - fx, ay - fy)) < 0.1


def test_map_that_does_not_cover_the_region_is_an_error(model):
    wcs = tan_wcs(REFERENCE, (40, 40), 0.1)
    small = compute_deflection_map(model, wcs, (40, 40), REFERENCE, z_lens=Z_LENS, progress=False)
    with pytest.raises(LensSearchError, match="does not cover"):
        LocalLens((0.0, 0.0), 5.0, model, small)


def test_sis_critical_line_caustic_and_images():
    """An isolated SIS: theta_E at D_ds/D_s, a point caustic, two images at beta +- theta_E."""
    cosmo = Cosmology()
    sis = LensModel([LensComponent("sis", dict(theta_e_arcsec=1.0), "M")], 0.3, cosmo)
    lens = LocalLens((0.0, 0.0), 3.0, sis, None)
    grid = lens.grid(2.5, 0.01)
    z_s = 2.0
    f = cosmo.dds_over_ds(0.3, z_s)
    line = grid.critical_line(z_s)
    assert line.theta_e_arcsec == pytest.approx(f, rel=5e-3)
    assert np.max(np.hypot(line.caustic_x, line.caustic_y)) < 0.01
    bx, by = grid.source_positions(z_s)
    beta = 0.3
    # the singular centre of the SIS maps onto a circle: the |mu| cut removes that spurious solution
    x, y, mu = count_images(bx, by, grid.x_axis, grid.y_axis, beta, 0.0, grid.magnification(z_s), 0.1)
    assert len(x) == 2
    np.testing.assert_allclose(np.sort(x), [beta - f, beta + f], atol=0.02)
    # a source outside the caustic-free SIS cross-section (beta > theta_E) has one image
    x, _, _ = count_images(bx, by, grid.x_axis, grid.y_axis, 1.5 * f, 0.0)
    assert len(x) == 1


def test_sample_in_caustic_is_uniform_inside_the_polygon():
    square_x = np.array([0, 1, 1, 0, 0.0])
    square_y = np.array([0, 0, 1, 1, 0.0])
    rng = np.random.default_rng(3)
    pts = np.array([sample_in_caustic(rng, square_x, square_y, 0.0) for _ in range(2000)])
    assert pts.min() >= 0 and pts.max() <= 1
    assert abs(pts[:, 0].mean() - 0.5) < 0.03 and abs(pts[:, 1].mean() - 0.5) < 0.03
    # the buffer grows the region
    pts = np.array([sample_in_caustic(rng, square_x, square_y, 0.2) for _ in range(2000)])
    assert pts.min() < -0.1 and pts.max() > 1.1
    d_out = np.maximum(np.maximum(-pts, pts - 1), 0)
    assert np.all(np.hypot(d_out[:, 0], d_out[:, 1]) <= 0.2 + 1e-9)


def test_isolated_lens_is_a_field_sie_with_its_einstein_radius():
    """An isolated member: an SIE of sigma x scale, 4 pi (sigma / c)^2 at D_ds/D_s = 1, plus a shear; its
    tangential critical line at z_s has the SIS radius times D_ds/D_s (round, no shear)."""
    from lenssearch.lensing.cosmology import Cosmology
    from lenssearch.lensing.model import LensComponent
    from lenssearch.simulate.local import IsolatedLens, field_sie

    dpie = LensComponent("dpie", {"sigma_kms": 160.0, "core_radius_arcsec": 0.01, "cut_radius_arcsec": 10.0,
                                  "emass": 0.0, "angle_deg": 0.0, "center_x": 3.0, "center_y": -2.0}, "m1")
    sie = field_sie(dpie, 1.25)
    theta1 = 4 * np.pi * (200.0 / 299792.458) ** 2 * 206264.80624709636
    assert sie.profile == "sie" and np.isclose(sie.params["theta_e_arcsec"], theta1) and sie.params["q"] == 1.0
    cosmo = Cosmology(70.0, 0.3)
    lens = IsolatedLens((3.0, -2.0), sie, 0.0, 0.0, 0.35, cosmo)
    line = lens.grid(3.0, 0.02).critical_line(2.0)
    assert line is not None
    assert abs(line.theta_e_arcsec - theta1 * cosmo.dds_over_ds(0.35, 2.0)) < 0.03
    # the shear is centred on the member: no deflection there from it, and nothing of a cluster anywhere
    sheared = IsolatedLens((3.0, -2.0), sie, 0.08, 30.0, 0.35, cosmo)
    ax, ay = sheared.deflection(np.array([3.5]), np.array([-2.0]))
    bx, by = lens.deflection(np.array([3.5]), np.array([-2.0]))
    assert abs(ax[0] - bx[0]) > 0.01 and np.allclose(sheared.exclude_centres.shape, (0, 2))
