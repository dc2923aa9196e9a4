"""Critical lines, caustics and the secondary critical-line catalogue (lenssearch.lensing.critical)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from numpy.testing import assert_allclose

from lenssearch.errors import InputFileError, LensSearchError
from lenssearch.lensing import critical as cr
from lenssearch.lensing.model import LensComponent, LensModel

Z_LENS, Z_S = 0.35, 2.0


def sis(theta_e, x=0.0, y=0.0, name=""):
    return LensComponent("sis", {"theta_e_arcsec": theta_e, "center_x": x, "center_y": y}, name)


def members_table(rows):
    return Table(rows=rows, names=("id", "x", "y"), dtype=(str, float, float))


# ------------------------------------------------------------------------------------------------ Jacobian
def test_jacobian_quantities_of_sis_are_analytic():
    model = LensModel([sis(1.3)], Z_LENS)
    f = model.dds_over_ds(Z_S)
    x, y = np.array([0.7, -1.1, 2.5]), np.array([0.4, 0.9, -3.0])
    r = np.hypot(x, y)
    jac = cr.model_jacobian(model, x, y, Z_S)
    assert_allclose(jac.kappa, f * 1.3 / (2 * r), rtol=1e-12)
    assert_allclose(jac.gamma, f * 1.3 / (2 * r), rtol=1e-12)  # |gamma| = kappa for an SIS
    assert_allclose(jac.lambda_t, 1 - f * 1.3 / r, rtol=1e-12)
    assert_allclose(jac.lambda_r, 1.0, atol=1e-12)
    assert_allclose(jac.magnification, 1 / (1 - f * 1.3 / r), rtol=1e-10)


def test_polygon_utilities_on_a_square():
    x, y = np.array([0.0, 2.0, 2.0, 0.0]), np.array([0.0, 0.0, 2.0, 2.0])
    assert cr.polygon_area(x, y) == pytest.approx(4.0)
    assert cr.polygon_centroid(x, y) == pytest.approx((1.0, 1.0))
    assert list(cr.points_in_polygon(np.array([1.0, 3.0]), np.array([1.0, 1.0]), x, y)) == [True, False]
    assert cr.equivalent_einstein_radius(x, y) == pytest.approx(np.sqrt(4 / np.pi))


# ------------------------------------------------------------------------------------------------ analytic lines
def test_sis_critical_curve_is_a_circle_and_caustic_a_point():
    model = LensModel([sis(1.2, 0.3, -0.2)], Z_LENS)
    radius = 1.2 * model.dds_over_ds(Z_S)
    axis = np.arange(-3.0, 3.0001, 0.05)
    lines = cr.tangential_critical_lines(model, Z_S, axis, axis)
    closed = [line for line in lines if line.closed]
    assert len(closed) == 1
    line = closed[0]
    assert_allclose(np.hypot(line.x - 0.3, line.y + 0.2), radius, atol=2e-3)
    assert line.theta_e_arcsec == pytest.approx(radius, abs=2e-3)
    assert line.centroid == pytest.approx((0.3, -0.2), abs=1e-3)
    # the tangential caustic of an SIS degenerates to the point beta = centre
    assert_allclose(line.caustic_x, 0.3, atol=5e-3)
    assert_allclose(line.caustic_y, -0.2, atol=5e-3)


def test_sie_critical_curve_and_caustic_match_kormann():
    theta_e, q, angle = 1.0, 0.6, 30.0
    model = LensModel([LensComponent("sie", {"theta_e_arcsec": theta_e, "q": q, "angle_deg": angle})], Z_LENS)
    f = model.dds_over_ds(Z_S)
    b = f * theta_e  # Einstein radius at z_s
    axis = np.arange(-2.5, 2.5001, 0.02)
    (line,) = [ln for ln in cr.tangential_critical_lines(model, Z_S, axis, axis) if ln.closed]
    phi = np.deg2rad(angle)
    xp = line.x * np.cos(phi) + line.y * np.sin(phi)
    yp = -line.x * np.sin(phi) + line.y * np.cos(phi)
    # Kormann et al. (1994): the tangential critical curve of the SIE is the ellipse kappa = 1/2
    assert_allclose(np.sqrt(q * xp**2 + yp**2 / q), b, atol=2e-3)
    assert line.theta_e_arcsec == pytest.approx(b, abs=2e-3)  # area pi b^2 for every q
    # caustic cusps (Kormann et al. 1994): on the major axis beta = b/sqrt(q) - b sqrt(q)/e arctan(e/q),
    # on the minor axis beta = b sqrt(q) (arctanh(e)/e - 1), e = sqrt(1 - q^2)
    e = np.sqrt(1 - q * q)
    cusp_major = b / np.sqrt(q) - b * np.sqrt(q) / e * np.arctan(e / q)
    cusp_minor = b * np.sqrt(q) * (np.arctanh(e) / e - 1)
    bxp = line.caustic_x * np.cos(phi) + line.caustic_y * np.sin(phi)
    byp = -line.caustic_x * np.sin(phi) + line.caustic_y * np.cos(phi)
    assert np.abs(bxp).max() == pytest.approx(cusp_major, rel=0.02)
    assert np.abs(byp).max() == pytest.approx(cusp_minor, rel=0.02)
    # and every caustic vertex is the lens-equation image of its critical point
    ax, ay = model.deflection(line.x, line.y)
    assert_allclose(line.caustic_x, line.x - f * ax, atol=1e-12)


def test_sie_with_shear_matches_lenstronomy():
    """Peer implementation: lenstronomy's critical curves and caustics of an SIE in external shear."""
    from lenstronomy.LensModel.lens_model import LensModel as LenstronomyModel
    from lenstronomy.LensModel.lens_model_extensions import LensModelExtensions
    from lenstronomy.Util import param_util

    q, angle, g1, g2 = 0.6, 30.0, 0.05, 0.02
    e1, e2 = param_util.phi_q2_ellipticity(np.deg2rad(angle), q)
    kwargs = [{"theta_E": 1.0, "e1": e1, "e2": e2, "center_x": 0.0, "center_y": 0.0}, {"gamma1": g1, "gamma2": g2}]
    ext = LensModelExtensions(LenstronomyModel(["SIE", "SHEAR"]))
    crit_x, crit_y, caus_x, caus_y = ext.critical_curve_caustics(kwargs, compute_window=5, grid_scale=0.01)
    assert len(crit_x) == 1
    f = LensModel([sis(1.0)], Z_LENS).dds_over_ds(Z_S)  # ours are at D_ds/D_s = 1: scale to z_s
    model = LensModel(
        [
            LensComponent("sie", {"theta_e_arcsec": 1.0 / f, "q": q, "angle_deg": angle}),
            LensComponent("shear", {"gamma": np.hypot(g1, g2) / f, "angle_deg": np.rad2deg(np.arctan2(g2, g1)) / 2}),
        ],
        Z_LENS,
    )
    axis = np.arange(-2.5, 2.5001, 0.01)
    (line,) = [ln for ln in cr.tangential_critical_lines(model, Z_S, axis, axis) if ln.closed]
    assert line.theta_e_arcsec == pytest.approx(cr.equivalent_einstein_radius(crit_x[0], crit_y[0]), abs=2e-3)
    assert cr.polygon_area(line.caustic_x, line.caustic_y) == pytest.approx(
        cr.polygon_area(caus_x[0], caus_y[0]), rel=0.02)
    # same orientation: the farthest critical point lies along the same axis
    k, j = np.argmax(np.hypot(line.x, line.y)), np.argmax(np.hypot(crit_x[0], crit_y[0]))
    assert abs(np.cos(np.arctan2(line.y[k], line.x[k]) - np.arctan2(crit_y[0][j], crit_x[0][j]))) > 0.99


def sis_in_field_theta_eq(theta_e, kappa, gamma):
    """Equivalent radius of the SIS + convergence + shear critical curve.

    det(M - theta_E/r t t^T) = 0 with M = (1 - kappa) I - Gamma gives
    r(phi) = theta_E [(1 - kappa) - gamma cos 2(phi - phi_g)] / ((1 - kappa)^2 - gamma^2), whose area is
    pi theta_E^2 [(1 - kappa)^2 + gamma^2 / 2] / ((1 - kappa)^2 - gamma^2)^2.
    """
    d = (1 - kappa) ** 2 - gamma**2
    return theta_e * np.sqrt((1 - kappa) ** 2 + gamma**2 / 2) / d


@pytest.mark.parametrize("method", ["fast", "exact"])
def test_galaxy_in_a_smooth_cluster_field_has_the_analytic_theta_e(method):
    """A galaxy-scale SIS embedded in external convergence and shear (a cluster-like environment)."""
    model0 = LensModel([sis(1.0)], Z_LENS)
    f = model0.dds_over_ds(Z_S)
    kappa, gamma, theta_g = 0.25, 0.12, 0.6  # values at z_s
    field = LensComponent("shear", {"gamma": gamma / f, "kappa": kappa / f, "angle_deg": 20.0}, "cluster")
    galaxy = sis(theta_g / f, 10.0, -5.0, "g1")
    model = LensModel([field, galaxy], Z_LENS)
    members = members_table([("g1", 10.0, -5.0)])
    table = cr.secondary_critical_lines(
        model, members, Z_S, resolution_arcsec=0.02, search_radius_arcsec=3.0, theta_e_min_arcsec=0.2,
        theta_e_max_arcsec=3.5, method=method, progress=False,
    )
    assert len(table) == 1
    row = table[0]
    assert row["member_id"] == "g1" and row["member_inside"]
    assert row["theta_e_arcsec"] == pytest.approx(sis_in_field_theta_eq(theta_g, kappa, gamma), abs=0.01)
    assert_allclose(cr.polygon_centroid(row["critical_x"], row["critical_y"]), (10.0, -5.0), atol=0.01)
    # polar form of the analytic curve, vertex by vertex
    dx, dy = row["critical_x"] - 10.0, row["critical_y"] + 5.0
    phi = np.arctan2(dy, dx)
    r_expected = theta_g * ((1 - kappa) - gamma * np.cos(2 * (phi - np.deg2rad(20.0)))) / ((1 - kappa) ** 2 - gamma**2)
    assert_allclose(np.hypot(dx, dy), r_expected, atol=0.005)


def test_primary_and_merging_lines_are_excluded():
    """A cluster-scale SIS (not a member): its line, and a member line merging with it, are not secondary."""
    model = LensModel(
        [
            sis(8.0, 0.0, 0.0, "halo"),
            sis(0.5, 20.0, 0.0, "far"),  # isolated member: one secondary line
            sis(0.5, 0.0, 6.0, "merging"),  # member on the primary line (radius 8 x 0.73)
            sis(1.0, -40.0, 0.0, "group"),  # a non-member small halo with a faint member inside its line
            sis(0.02, -40.3, 0.0, "faint"),
        ],
        Z_LENS,
    )
    members = members_table([("far", 20.0, 0.0), ("merging", 0.0, 6.0), ("faint", -40.3, 0.0)])
    table = cr.secondary_critical_lines(
        model, members, Z_S, resolution_arcsec=0.02, search_radius_arcsec=4.0, theta_e_min_arcsec=0.2,
        theta_e_max_arcsec=3.5, progress=False,
    )
    assert list(table["member_id"]) == ["far"]
    assert table.meta["cluster_centres"] == [[0.0, 0.0], [-40.0, 0.0]]


def test_a_deflection_map_stands_in_for_the_model():
    """Secondary lines from a 0.1"/pixel deflection FITS grid agree with those of the analytic model."""
    from lenssearch.lensing.deflection_maps import compute_deflection_map, tan_wcs

    ref = (342.18, -44.53)
    model = LensModel(
        [
            LensComponent("dpie", {"sigma_kms": 550.0, "core_radius_arcsec": 3.0, "cut_radius_arcsec": 300.0,
                                   "emass": 0.3, "angle_deg": 20.0}, "halo"),
            LensComponent("dpie", {"sigma_kms": 200.0, "core_radius_arcsec": 0.05, "cut_radius_arcsec": 15.0,
                                   "emass": 0.1, "angle_deg": 10.0, "center_x": 3.0, "center_y": 16.0}, "101"),
            sis(0.5, -12.0, -11.0, "102"),
        ],
        Z_LENS,
    )
    members = members_table([("101", 3.0, 16.0), ("102", -12.0, -11.0)])
    dmap = compute_deflection_map(model, tan_wcs(ref, (400, 400), 0.1), (400, 400), ref, progress=False)
    kw = dict(resolution_arcsec=0.02, search_radius_arcsec=4.0, theta_e_min_arcsec=0.2, theta_e_max_arcsec=3.5,
              progress=False)
    from_map = cr.secondary_critical_lines(dmap, members, Z_S, reference_radec=ref, **kw)
    exact = cr.secondary_critical_lines(model, members, Z_S, **kw)
    assert list(from_map["member_id"]) == list(exact["member_id"]) == ["101", "102"]
    assert_allclose(from_map["theta_e_arcsec"], exact["theta_e_arcsec"], atol=0.01)
    assert_allclose(from_map["caustic_area_arcsec2"], exact["caustic_area_arcsec2"], rtol=0.1, atol=0.01)


# ------------------------------------------------------------------------------------------------ drawing
def test_draw_secondary_frequencies_are_proportional_to_theta_e():
    from scipy.stats import chisquare

    theta = np.array([0.3, 0.6, 0.9, 1.2, 4.0, 0.1])
    table = Table({"line_id": np.arange(1, 7), "theta_e_arcsec": theta})
    rng = np.random.default_rng(20231)
    drawn = cr.draw_secondary(table, rng, theta_min=0.2, theta_max=3.5, size=30000)
    counts = np.array([np.sum(drawn["line_id"] == k) for k in range(1, 7)])
    assert counts[4] == 0 and counts[5] == 0  # outside 0.2" < theta_E < 3.5"
    expected = theta[:4] / theta[:4].sum() * counts.sum()
    assert chisquare(counts[:4], expected).pvalue > 1e-3
    # the same counts are incompatible with uniform drawing: the test can tell the difference
    assert chisquare(counts[:4], np.full(4, counts.sum() / 4)).pvalue < 1e-6
    single = cr.draw_secondary(table, np.random.default_rng(1), theta_min=0.2, theta_max=3.5)
    assert 0.2 < single["theta_e_arcsec"] < 3.5
    with pytest.raises(LensSearchError, match="no critical line"):
        cr.draw_secondary(table, rng, theta_min=5.0)


# ------------------------------------------------------------------------------------------------ files
def test_catalogue_round_trip_with_polygons(tmp_path):
    from astropy.io import fits

    model = LensModel([sis(0.6, 1.0, 2.0, "a"), sis(0.4, -5.0, 0.0, "b")], Z_LENS)
    members = members_table([("a", 1.0, 2.0), ("b", -5.0, 0.0)])
    table = cr.secondary_critical_lines(
        model, members, Z_S, resolution_arcsec=0.02, search_radius_arcsec=2.0, theta_e_min_arcsec=0.2,
        theta_e_max_arcsec=3.5, reference_radec=(342.18, -44.53), progress=False,
    )
    assert list(table["member_id"]) == ["a", "b"]
    path = tmp_path / f"critical_lines_zs{cr.zs_label(Z_S)}.ecsv"
    ecsv, poly = cr.write_secondary_catalogue(table, path)
    assert ecsv.name == "critical_lines_zs2.0.ecsv" and poly.name == "critical_lines_zs2.0_polygons.fits"
    back = cr.read_secondary_catalogue(path)
    for col in ("line_id", "member_id", "x", "y", "ra", "dec", "theta_e_arcsec", "z_s"):
        assert list(back[col]) == list(table[col])
    for col in cr.POLYGON_COLUMNS:
        for a, b in zip(back[col], table[col]):
            assert_allclose(a, b, rtol=0, atol=0)
    # the polygon file is a plain FITS binary table with variable-length columns (TOPCAT, astropy)
    with fits.open(poly) as hdul:
        assert hdul["POLYGONS"].columns["critical_ra"].format.startswith("PD")
        ra = hdul["POLYGONS"].data["critical_ra"][0]
    assert_allclose(np.mean(ra), table["ra"][0], atol=1e-4)
    poly.unlink()
    with pytest.raises(InputFileError, match="polygon file"):
        cr.read_secondary_catalogue(path)


def test_zs_label():
    assert [cr.zs_label(z) for z in (1.5, 2, 3.0, 4.25, 6)] == ["1.5", "2.0", "3.0", "4.25", "6.0"]


# ------------------------------------------------------------------------------------------------ S1063
@pytest.fixture(scope="module")
def s1063():
    from importlib.resources import files

    from lenssearch.lensing.lenstool import read_parfile

    folder = files("lenssearch") / "data" / "lenstool" / "AS1063_cats_gold"
    return read_parfile(folder / "best.par", folder / "ref_potential_w_clumpNE.cat")


S1063_MEMBERS = ["14042", "14770", "13475", "14604", "11368"]  # theta_E from ~1.7" down to ~0.2" at z_s = 2


def _s1063_lines(model, method, resolution):
    ids = list(model.members["id"])
    return cr.secondary_critical_lines(
        model, None, Z_S, resolution_arcsec=resolution, search_radius_arcsec=4.0, theta_e_min_arcsec=0.2,
        theta_e_max_arcsec=3.5, method=method, member_indices=[ids.index(m) for m in S1063_MEMBERS],
        progress=False,
    )


def _by_member(table):
    return {m: t for m, t in zip(table["member_id"], table["theta_e_arcsec"]) if m in S1063_MEMBERS}


def test_fast_scheme_matches_brute_force_on_s1063_members(s1063):
    fast = _by_member(_s1063_lines(s1063, "fast", 0.02))
    exact = _by_member(_s1063_lines(s1063, "exact", 0.02))
    assert sorted(fast) == sorted(exact) == sorted(S1063_MEMBERS)
    for member in S1063_MEMBERS:
        assert fast[member] == pytest.approx(exact[member], abs=0.01), member


def test_theta_e_converges_with_resolution_on_s1063(s1063):
    coarse = _by_member(_s1063_lines(s1063, "fast", 0.04))
    fine = _by_member(_s1063_lines(s1063, "fast", 0.02))
    assert sorted(coarse) == sorted(fine)
    for member in fine:
        assert coarse[member] == pytest.approx(fine[member], abs=0.03), member


def test_draw_secondary_uniform_weighting_flattens_theta_e():
    from astropy.table import Table

    rng = np.random.default_rng(3)
    theta = np.sort(np.concatenate([rng.uniform(0.2, 0.6, 400), rng.uniform(0.6, 2.0, 100)]))  # many small lines
    table = Table({"theta_e_arcsec": theta, "line_id": np.arange(theta.size)})
    drawn = np.asarray(cr.draw_secondary(table, rng, 0.2, 3.5, size=40000, weighting="uniform")["theta_e_arcsec"])
    # flat in theta_E: [0.2, 0.6) holds 0.4 / 1.8 of the draws, not the 80% of the lines (nor ~53% of theta_E)
    assert abs(np.mean(drawn < 0.6) - 0.4 / 1.8) < 0.03
    natural = np.asarray(cr.draw_secondary(table, rng, 0.2, 3.5, size=40000)["theta_e_arcsec"])
    assert np.mean(natural < 0.6) > 0.4
    with pytest.raises(LensSearchError, match="weighting"):
        cr.draw_secondary(table, rng, weighting="flat")
