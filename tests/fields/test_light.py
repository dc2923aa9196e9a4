"""Light profiles on stamps: normalisation, half-light radius, spiral arms, point sources."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import gammainc

from lenssearch.fields.light import add_point_source, sersic_b, sersic_stamp, spiral_stamp


@pytest.mark.parametrize("n", [0.5, 1.0, 4.0])
def test_sersic_b_defines_the_half_light_radius(n):
    # the enclosed light of a Sersic profile is gamma(2n, b (R/R_e)^(1/n)) / Gamma(2n)
    assert gammainc(2 * n, sersic_b(n)) == pytest.approx(0.5, abs=1e-10)
    assert sersic_b(4.0) == pytest.approx(7.669, abs=1e-3)  # Ciotti & Bertin 1999


@pytest.mark.parametrize("n, re_pix", [(1.0, 10.0), (2.5, 8.0), (1.0, 2.5)])
def test_sersic_stamp_is_normalised_with_half_light_inside_re(n, re_pix):
    (sy, sx), stamp = sersic_stamp(100.3, 99.6, re_pix, n, 1.0, 0.0, (200, 200), extent_re=12.0)
    assert stamp.sum() == pytest.approx(1.0, abs=1e-5)  # a negligible wing falls off the 200-pixel frame
    yy, xx = np.mgrid[sy, sx]
    inside = np.hypot(xx - 100.3, yy - 99.6) < re_pix
    # half of the light within 12 R_e (where the stamp is truncated) is inside R_e; pixelisation: a few per cent
    truncated = gammainc(2 * n, sersic_b(n) * 12.0 ** (1 / n))
    assert stamp[inside].sum() == pytest.approx(0.5 / truncated, abs=0.04)


def test_stamp_clipped_by_the_frame_keeps_the_light_inside():
    (sy, sx), stamp = sersic_stamp(2.0, 50.0, 5.0, 1.0, 1.0, 0.0, (100, 100))
    assert sx.start == 0
    assert 0.4 < stamp.sum() < 0.75  # about half the galaxy is off the frame


def test_elliptical_stamp_is_elongated_along_its_angle():
    (sy, sx), stamp = sersic_stamp(50.0, 50.0, 6.0, 1.0, 0.4, 90.0, (101, 101))
    yy, xx = np.mgrid[sy, sx]
    var_x = (stamp * (xx - 50.0) ** 2).sum()
    var_y = (stamp * (yy - 50.0) ** 2).sum()
    assert var_y / var_x == pytest.approx(1 / 0.4**2, rel=0.15)


def test_spiral_has_m_fold_arms():
    (sy, sx), stamp = spiral_stamp(80.0, 80.0, 12.0, 1.0, 0.0, (161, 161), n_arms=2, amplitude=0.8)
    assert stamp.sum() == pytest.approx(1.0)
    yy, xx = np.mgrid[sy, sx]
    r = np.hypot(xx - 80.0, yy - 80.0)
    phi = np.arctan2(yy - 80.0, xx - 80.0)
    ring = (r > 15) & (r < 20)
    w = stamp[ring]
    power = {m: abs(np.sum(w * np.exp(-1j * m * phi[ring]))) / w.sum() for m in (1, 2, 3)}
    assert power[2] > 0.2 and power[2] > 5 * power[1] and power[2] > 5 * power[3]


def test_point_source_conserves_flux():
    frames = {"F814W": np.zeros((10, 10))}
    add_point_source(frames, 4.3, 5.8, {"F814W": 2.0})
    assert frames["F814W"].sum() == pytest.approx(2.0)
    ys, xs = np.nonzero(frames["F814W"])
    assert (frames["F814W"] * np.arange(10)[None, :]).sum() / 2.0 == pytest.approx(4.3)
    assert set(xs) == {4, 5} and set(ys) == {5, 6}
