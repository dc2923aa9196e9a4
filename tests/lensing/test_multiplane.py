"""Multi-plane ray tracing against lenstronomy's ``MultiPlane`` on a two-plane SIS/SIE system, the one-plane
limit, and the Jacobian against finite differences of the ray tracer."""

import numpy as np
import pytest

from lenssearch.lensing.cosmology import Cosmology
from lenssearch.lensing.model import LensComponent, LensModel, MultiPlaneLensModel

# lenstronomy warns that an astropy cosmology is given; it is the one we mean
pytestmark = pytest.mark.filterwarnings("ignore:Cosmology is provided")

COSMO = Cosmology(70.0, 0.3)
Z1, Z2, ZS = 0.375, 1.05, 2.5
SIE = dict(theta_e_arcsec=1.4, q=0.7, angle_deg=35.0, center_x=0.2, center_y=-0.3)
SIS = dict(theta_e_arcsec=0.6, center_x=1.1, center_y=0.4)


def _ours():
    front = LensModel([LensComponent("sie", SIE, "front")], Z1, COSMO)
    back = LensModel([LensComponent("sis", SIS, "back")], Z2, COSMO)
    return MultiPlaneLensModel([back, front], COSMO)  # given out of order on purpose


def _lenstronomy():
    from lenstronomy.LensModel.lens_model import LensModel as LenstronomyLensModel
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    e1, e2 = phi_q2_ellipticity(np.deg2rad(SIE["angle_deg"]), SIE["q"])
    # Our deflections are normalised to D_ds/D_s = 1, i.e. they are the physical deflection angles; lenstronomy's
    # multi-plane kwargs are the reduced deflections for its z_source, so its theta_E of plane i is ours times
    # D_is/D_s.
    d = COSMO.angular_diameter_distance
    d12 = COSMO.angular_diameter_distance_z1z2
    r1, r2 = d12(Z1, ZS) / d(ZS), d12(Z2, ZS) / d(ZS)
    model = LenstronomyLensModel(["SIE", "SIS"], z_source=ZS, lens_redshift_list=[Z1, Z2], multi_plane=True,
                                 cosmo=COSMO.astropy)
    kwargs = [
        dict(theta_E=SIE["theta_e_arcsec"] * r1, e1=e1, e2=e2, center_x=SIE["center_x"], center_y=SIE["center_y"]),
        dict(theta_E=SIS["theta_e_arcsec"] * r2, center_x=SIS["center_x"], center_y=SIS["center_y"]),
    ]
    return model, kwargs


def test_two_plane_ray_tracing_matches_lenstronomy():
    ours = _ours()
    assert ours.z_planes == (Z1, Z2)
    model, kwargs = _lenstronomy()
    rng = np.random.default_rng(7)
    x, y = rng.uniform(-3, 3, 400), rng.uniform(-3, 3, 400)
    bx, by = ours.ray_trace(x, y, ZS)
    tx, ty = model.ray_shooting(x, y, kwargs)
    cached = ours.ray_trace(x, y, ZS, first_plane_deflection=ours.first_plane_deflection(x, y))
    np.testing.assert_allclose(cached, (bx, by), atol=1e-12)
    # lenstronomy's SIE is accurate to ~1e-6 arcsec (see test_sis_sie); the planes add no error of their own
    np.testing.assert_allclose(bx, tx, atol=2e-5)
    np.testing.assert_allclose(by, ty, atol=2e-5)
    # the back plane really acts: a single plane at Z1 gives other positions
    single = LensModel([LensComponent("sie", SIE), LensComponent("sis", SIS)], Z1, COSMO)
    sx, _ = single.ray_trace(x, y, ZS)
    assert np.max(np.abs(sx - tx)) > 1e-2


def test_two_plane_jacobian_matches_lenstronomy_and_finite_differences():
    ours = _ours()
    model, kwargs = _lenstronomy()
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-3, 3, 50), rng.uniform(-3, 3, 50)
    keep = np.hypot(x - SIE["center_x"], y - SIE["center_y"]) > 0.2
    keep &= np.hypot(x - SIS["center_x"], y - SIS["center_y"]) > 0.5
    x, y = x[keep], y[keep]
    a11, a12, a21, a22 = ours.jacobian_matrix(x, y, ZS)
    h = 1e-5
    bxp, byp = ours.ray_trace(x + h, y, ZS)
    bxm, bym = ours.ray_trace(x - h, y, ZS)
    np.testing.assert_allclose(a11, (bxp - bxm) / (2 * h), atol=1e-5)
    np.testing.assert_allclose(a21, (byp - bym) / (2 * h), atol=1e-5)
    bxp, byp = ours.ray_trace(x, y + h, ZS)
    bxm, bym = ours.ray_trace(x, y - h, ZS)
    np.testing.assert_allclose(a12, (bxp - bxm) / (2 * h), atol=1e-5)
    np.testing.assert_allclose(a22, (byp - bym) / (2 * h), atol=1e-5)
    # lenstronomy: hessian of the whole line of sight, A = 1 - H
    f_xx, f_xy, f_yx, f_yy = model.hessian(x, y, kwargs, diff=1e-7)
    np.testing.assert_allclose(a11, 1 - f_xx, atol=1e-4)
    np.testing.assert_allclose(a22, 1 - f_yy, atol=1e-4)
    np.testing.assert_allclose(a12, -f_xy, atol=1e-4)
    np.testing.assert_allclose(a21, -f_yx, atol=1e-4)
    assert np.max(np.abs(a12 - a21)) > 1e-6  # multi-plane Jacobians are not symmetric


def test_one_plane_and_sources_in_front():
    plane = LensModel([LensComponent("sie", SIE)], Z1, COSMO)
    multi = MultiPlaneLensModel([plane, LensModel([LensComponent("sis", SIS)], Z2, COSMO)], COSMO)
    x, y = np.linspace(-2, 2, 9), np.linspace(1, -1, 9)
    # a source between the planes sees only the front one
    np.testing.assert_allclose(multi.ray_trace(x, y, 0.8), plane.ray_trace(x, y, 0.8), atol=1e-12)
    np.testing.assert_allclose(multi.jacobian_matrix(x, y, 0.8), plane.jacobian_matrix(x, y, 0.8), atol=1e-12)
    # a source in front of every plane is not deflected
    np.testing.assert_allclose(multi.ray_trace(x, y, 0.2), (x, y))
    view = multi.at_source_redshift(ZS)
    assert view.dds_over_ds(ZS) == 1.0
    ax, ay = view.deflection(x, y)
    bx, by = multi.ray_trace(x, y, ZS)
    np.testing.assert_allclose((x - ax, y - ay), (bx, by))
    with pytest.raises(Exception, match="view per source redshift"):
        view.dds_over_ds(1.5)


def test_maps_and_critical_lines_of_a_multi_plane_model_need_a_source_redshift():
    from astropy.table import Table

    from lenssearch.errors import LensSearchError
    from lenssearch.lensing.critical import secondary_critical_lines
    from lenssearch.lensing.deflection_maps import compute_deflection_map, tan_wcs

    multi = _ours()
    wcs = tan_wcs((342.18, -44.53), (60, 60), 0.1)
    with pytest.raises(LensSearchError, match="one map per source redshift"):
        compute_deflection_map(multi, wcs, (60, 60), (342.18, -44.53))
    members = Table({"id": ["front"], "x": [0.2], "y": [-0.3]})
    with pytest.raises(LensSearchError, match="at_source_redshift"):
        secondary_critical_lines(multi, members, ZS, resolution_arcsec=0.05, search_radius_arcsec=3.0,
                                 theta_e_min_arcsec=0.2, theta_e_max_arcsec=3.5, progress=False)
    # the view of one source redshift gives the map and the lines of that redshift
    view = multi.at_source_redshift(ZS)
    dmap = compute_deflection_map(view, wcs, (60, 60), (342.18, -44.53), z_lens=Z1, progress=False)
    dmap.z_source = ZS
    x, y = np.array([1.0, -0.7]), np.array([0.4, 1.2])
    np.testing.assert_allclose(dmap.ray_trace(x, y, ZS), multi.ray_trace(x, y, ZS), atol=2e-3)
    table = secondary_critical_lines(view, members, ZS, resolution_arcsec=0.05, search_radius_arcsec=3.0,
                                     theta_e_min_arcsec=0.2, theta_e_max_arcsec=3.5, cluster_centres=np.zeros((0, 2)),
                                     progress=False)
    # the SIE's own line (the SIS behind it, 0.9" away, perturbs it): theta_E near the SIE's 1.4" x D_ds/D_s
    f = COSMO.dds_over_ds(Z1, ZS)
    assert len(table) == 1 and abs(table["theta_e_arcsec"][0] - 1.4 * f) < 0.3
