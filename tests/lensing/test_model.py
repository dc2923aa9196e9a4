"""LensModel: sums of components, the compiled fast path against the numpy reference, ray tracing."""

import numpy as np
import pytest

from lenssearch.errors import LensSearchError
from lenssearch.lensing.cosmology import Cosmology
from lenssearch.lensing.model import LensComponent, LensModel


def _random_model(rng, n=40):
    comps = []
    for i in range(n):
        emass = rng.choice([0.0, 1e-4, 0.03, 0.3, 0.7, 0.95])
        rc = rng.choice([0.0, rng.uniform(0.001, 0.3)])
        comps.append(
            LensComponent(
                "dpie",
                dict(sigma_kms=rng.uniform(30, 400), core_radius_arcsec=rc, cut_radius_arcsec=rng.uniform(0.5, 80),
                     emass=emass, angle_deg=rng.uniform(-180, 180), center_x=rng.uniform(-30, 30),
                     center_y=rng.uniform(-30, 30)),
                name=f"g{i}",
            )
        )
    comps.append(LensComponent("shear", dict(gamma=0.08, angle_deg=25.0), name="shear"))
    comps.append(LensComponent("sie", dict(theta_e_arcsec=1.0, q=0.7, angle_deg=10.0, center_x=3.0), name="sie"))
    comps.append(LensComponent("sis", dict(theta_e_arcsec=0.5, center_y=-4.0), name="sis"))
    return LensModel(comps, z_lens=0.35, cosmology=Cosmology(70.0, 0.3))


def test_fast_path_agrees_with_numpy_reference():
    rng = np.random.default_rng(42)
    model = _random_model(rng)
    x, y = rng.uniform(-40, 40, (2, 3000))
    x = np.append(x, [model.components[0].params["center_x"]])  # a component centre, exactly
    y = np.append(y, [model.components[0].params["center_y"]])
    fast = model.deflection(x, y)
    ref = model.deflection(x, y, fast=False)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-9)
    fast_h = model.hessian(x[:-1], y[:-1])
    ref_h = model.hessian(x[:-1], y[:-1], fast=False)
    np.testing.assert_allclose(fast_h, ref_h, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(model.convergence(x[:-1], y[:-1]), model.convergence(x[:-1], y[:-1], fast=False),
                               rtol=1e-8, atol=1e-9)


def test_sum_shapes_and_ray_trace():
    model = LensModel(
        [LensComponent("sis", dict(theta_e_arcsec=1.0)), LensComponent("shear", dict(gamma=0.1, angle_deg=0.0))],
        z_lens=0.5,
    )
    x, y = np.meshgrid(np.linspace(-2, 2, 5), np.linspace(-1, 1, 3))
    ax, ay = model.deflection(x, y)
    assert ax.shape == (3, 5)
    sis = model.components[0].deflection(x, y)
    shear = model.components[1].deflection(x, y)
    np.testing.assert_allclose(ax, sis[0] + shear[0])
    bx, by = model.ray_trace(x, y, z_s=2.0)
    f = model.cosmology.dds_over_ds(0.5, 2.0)
    np.testing.assert_allclose(bx, x - f * ax)
    np.testing.assert_allclose(by, y - f * ay)
    # a source in front of the lens is not lensed
    np.testing.assert_allclose(model.ray_trace(x, y, z_s=0.3), (x, y))
    a11, a12, a22 = model.jacobian(1.3, 0.2, z_s=2.0)
    f_xx, f_xy, f_yy = model.hessian(1.3, 0.2)
    assert (a11, a12, a22) == pytest.approx((1 - f * f_xx, -f * f_xy, 1 - f * f_yy))


def test_select_and_without():
    model = _random_model(np.random.default_rng(1), n=5)
    assert len(model.without(["g0", "g1"])) == len(model) - 2
    only = model.select(profiles=["dpie"])
    assert {c.profile for c in only.components} == {"dpie"} and len(only) == 5


def test_bad_components():
    with pytest.raises(LensSearchError, match="unknown profile"):
        LensComponent("nfw", dict(a=1.0))
    with pytest.raises(LensSearchError, match="missing parameter"):
        LensComponent("sis", dict(center_x=1.0))
    with pytest.raises(LensSearchError, match="unknown parameter"):
        LensComponent("sis", dict(theta_e_arcsec=1.0, q=0.5))
    with pytest.raises(LensSearchError, match="z_lens"):
        LensModel([], z_lens=0.0)
