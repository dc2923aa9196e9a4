"""The lens truth of the mocks (simulate/truth.py): shear and convergence against lenstronomy, ellipticity, file."""

import numpy as np
import pytest

from lenssearch.lensing.model import LensComponent, LensModel
from lenssearch.simulate.truth import (PARAMETERS, TRUTH_COLUMNS, axis_ratio_from_emass, ellipticity, member_truth,
                                       read_truth)


def test_external_shear_and_convergence_match_lenstronomy():
    from lenstronomy.LensModel.lens_model import LensModel as LenstronomyModel

    member = LensComponent("sis", {"theta_e_arcsec": 0.8, "center_x": 1.0, "center_y": -0.5}, "member")
    halo = LensComponent("sis", {"theta_e_arcsec": 12.0, "center_x": -20.0, "center_y": 9.0}, "halo")
    shear = LensComponent("shear", {"gamma": 0.07, "angle_deg": 25.0}, "shear")
    model = LensModel([member, halo, shear], 0.4)
    truth = member_truth(model, member, (1.0, -0.5), (0.97, -0.49))
    row = truth.at(theta_e_arcsec=0.9, dds_over_ds=0.6)

    ref = LenstronomyModel(["SIS", "SHEAR"])
    phi = np.deg2rad(25.0)
    kwargs = [{"theta_E": 12.0, "center_x": -20.0, "center_y": 9.0},
              {"gamma1": 0.07 * np.cos(2 * phi), "gamma2": 0.07 * np.sin(2 * phi), "ra_0": 0.0, "dec_0": 0.0}]
    f_xx, f_xy, _, f_yy = ref.hessian(1.0, -0.5, kwargs)
    assert row["shear_gamma1"] == pytest.approx(0.6 * 0.5 * (f_xx - f_yy), abs=1e-6)
    assert row["shear_gamma2"] == pytest.approx(0.6 * f_xy, abs=1e-6)
    assert row["kappa_ext"] == pytest.approx(0.6 * 0.5 * (f_xx + f_yy), abs=1e-6)
    assert row["lens_x_arcsec"] == pytest.approx(0.03) and row["lens_y_arcsec"] == pytest.approx(-0.01)
    assert row["theta_e_arcsec"] == 0.9
    assert (row["lens_e1"], row["lens_e2"]) == (0.0, 0.0)  # an SIS is round


def test_isolated_lens_truth_is_the_given_shear_and_sie():
    sie = LensComponent("sie", {"theta_e_arcsec": 1.0, "q": 0.6, "angle_deg": 30.0}, "sie")
    row = member_truth(None, None, (0.0, 0.0), (0.0, 0.0), sie, (0.05, 70.0)).at(1.1, 0.5)
    phi = np.deg2rad(70.0)
    assert row["shear_gamma1"] == pytest.approx(0.5 * 0.05 * np.cos(2 * phi))
    assert row["shear_gamma2"] == pytest.approx(0.5 * 0.05 * np.sin(2 * phi))
    assert row["kappa_ext"] == pytest.approx(0.0)
    e = (1 - 0.6) / 1.6
    assert row["lens_e1"] == pytest.approx(e * np.cos(np.deg2rad(60)))
    assert row["lens_e2"] == pytest.approx(e * np.sin(np.deg2rad(60)))


def test_ellipticity_follows_lenstronomy():
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    for q, angle in ((0.5, 10.0), (0.8, 100.0), (1.0, 45.0)):
        assert ellipticity(q, angle) == pytest.approx(phi_q2_ellipticity(np.deg2rad(angle), q), abs=1e-12)
    # LensTool's emass = (a^2 - b^2) / (a^2 + b^2)
    q = axis_ratio_from_emass(0.3)
    assert (1 - q**2) / (1 + q**2) == pytest.approx(0.3)


def test_map_only_field_has_nan_mass_truth():
    row = member_truth(None, None, (0.0, 0.0), (0.0, 0.0)).at(1.0, 0.5)
    assert np.isnan(row["lens_e1"]) and np.isnan(row["shear_gamma1"])
