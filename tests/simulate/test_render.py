"""The renderer: flux conservation, multiple images, PSF convolution, and lenstronomy as a peer."""

import numpy as np
import pytest
from scipy import ndimage, signal

from lenssearch.errors import LensSearchError
from lenssearch.lensing.profiles import PROFILES
from lenssearch.simulate.render import PSFConvolver, Renderer, SersicSource, flux_from_ab, sersic_total_flux

N, PIX, SS = 128, 0.03, 4


def gaussian_psf(size=21, sigma=1.6):
    a = np.arange(size) - size // 2
    psf = np.exp(-0.5 * (a[:, None] ** 2 + a[None, :] ** 2) / sigma**2)
    return psf / psf.sum()


def deflection(renderer, profile, **kw):
    x, y = renderer.grid()
    ax, ay = PROFILES[profile].deflection(x, y, **kw)
    return ax.astype(np.float32), ay.astype(np.float32)


def test_unlensed_flux_is_conserved():
    r = Renderer(N, PIX, SS)
    src = SersicSource(0.2, -0.1, 0.12, 1.5, 0.6, 40.0)
    zero = np.zeros((N * SS, N * SS), np.float32)
    img = r.lensed(src, zero, zero, 1.0, flux=3.0)
    assert img.sum() == pytest.approx(3.0, rel=1e-3)


def test_flux_is_conserved_far_from_any_caustic():
    """A source far outside the (tiny) caustic of an SIS: mu = r / (r - theta_E) for its single image."""
    r = Renderer(N, PIX, SS)
    theta_e = 0.02
    ax, ay = deflection(r, "sis", theta_e_arcsec=theta_e)
    beta = np.array([0.9, -0.4])
    src = SersicSource(*beta, 0.05, 1.0, 0.8, 10.0)
    img = r.lensed(src, ax, ay, 1.0, flux=1.0)
    b = np.hypot(*beta)
    mu_expected = (b + theta_e) / b  # image at r = b + theta_E, mu = r / (r - theta_E)
    assert img.sum() == pytest.approx(mu_expected, rel=0.01)
    assert abs(img.sum() - 1.0) < 0.05


def test_source_inside_the_caustic_has_multiple_images():
    r = Renderer(N, PIX, SS)
    ax, ay = deflection(r, "sie", theta_e_arcsec=0.8, q=0.7, angle_deg=20.0)
    src = SersicSource(0.05, 0.03, 0.04, 1.2, 0.8, 0.0)
    img = r.lensed(src, ax, ay, 1.0, flux=1.0)
    labels, n = ndimage.label(img > 0.02 * img.max())
    assert n >= 2
    # the images are separated by about twice the Einstein radius
    centres = np.array(ndimage.center_of_mass(img, labels, range(1, n + 1))) * PIX
    sep = np.max(np.hypot(*(centres[:, None, :] - centres[None, :, :]).transpose(2, 0, 1)))
    assert 1.0 < sep < 2.2
    assert img.sum() > 3.0  # strongly magnified


def test_psf_convolver_matches_scipy():
    rng = np.random.default_rng(0)
    img = rng.random((N, N))
    psf = gaussian_psf(25)
    np.testing.assert_allclose(PSFConvolver(psf, (N, N))(img), signal.fftconvolve(img, psf, mode="same"),
                               atol=1e-5)


def test_render_scales_bands_and_crops_padding():
    psf = gaussian_psf()
    r = Renderer(N, PIX, SS, psfs=[psf, psf, psf], pad_pixels=4)
    ax, ay = deflection(r, "sis", theta_e_arcsec=0.5)
    src = SersicSource(0.1, 0.0, 0.08, 1.0, 0.9, 0.0)
    out, unit = r.render(src, ax, ay, 0.7, [0.0, 1.0, 2.0])
    assert out.shape == (N, N, 3) and out.dtype == np.float32
    assert np.all(out[..., 0] == 0)
    np.testing.assert_allclose(out[..., 2], 2 * out[..., 1], rtol=1e-5, atol=1e-9)
    assert unit.shape == (N + 8, N + 8)


def test_bad_deflection_shape_is_rejected():
    r = Renderer(N, PIX, SS)
    with pytest.raises(LensSearchError, match="shape"):
        r.lensed(SersicSource(0, 0, 0.1, 1, 1, 0), np.zeros((10, 10)), np.zeros((10, 10)), 1.0)


def test_sersic_total_flux_matches_integral():
    src = SersicSource(0.0, 0.0, 0.2, 1.7, 0.5, 30.0)
    x = np.linspace(-6, 6, 3001)
    xx, yy = np.meshgrid(x, x)
    total = src.surface_brightness(xx, yy).sum() * (x[1] - x[0]) ** 2
    assert total == pytest.approx(sersic_total_flux(1.0, 0.2, 1.7), rel=2e-3)


def test_flux_from_ab():
    assert flux_from_ab(25.0, 25.0) == pytest.approx(1.0)
    assert flux_from_ab(27.5, 25.0) == pytest.approx(0.1)


@pytest.mark.parametrize("convolve", [False, True])
def test_agrees_with_lenstronomy(convolve):
    """Same Sersic through the same SIE + shear, same grid and supersampling, as lenstronomy's ImageModel."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.Util import param_util

    theta_e, q_lens, phi_lens = 0.9, 0.7, 25.0
    gamma, gamma_angle = 0.05, 30.0
    e1, e2 = param_util.phi_q2_ellipticity(np.deg2rad(phi_lens), q_lens)
    g1, g2 = param_util.shear_polar2cartesian(np.deg2rad(gamma_angle), gamma)
    kwargs_lens = [dict(theta_E=theta_e, e1=e1, e2=e2, center_x=0.03, center_y=-0.02), dict(gamma1=g1, gamma2=g2)]
    n_s, q_s, phi_s, re_s = 1.4, 0.6, 35.0, 0.12
    se1, se2 = param_util.phi_q2_ellipticity(np.deg2rad(phi_s), q_s)
    b_n = 1.9992 * n_s - 0.3271  # lenstronomy's approximation
    kwargs_source = [dict(amp=5.0, R_sersic=re_s, n_sersic=n_s, e1=se1, e2=se2, center_x=0.05, center_y=0.04)]
    psf = gaussian_psf()
    data = ImageData(image_data=np.zeros((N, N)), transform_pix2angle=np.eye(2) * PIX,
                     ra_at_xy_0=-(N - 1) / 2 * PIX, dec_at_xy_0=-(N - 1) / 2 * PIX)
    psf_class = PSF(psf_type="PIXEL", kernel_point_source=psf) if convolve else PSF(psf_type="NONE")
    model = ImageModel(data, psf_class, lens_model_class=LensModel(["SIE", "SHEAR"]),
                       source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                       kwargs_numerics=dict(supersampling_factor=SS, supersampling_convolution=False))
    reference = model.image(kwargs_lens=kwargs_lens, kwargs_source=kwargs_source)

    r = Renderer(N, PIX, SS, psfs=[psf] if convolve else None)
    x, y = r.grid()
    ax1, ay1 = PROFILES["sie"].deflection(x, y, theta_e_arcsec=theta_e, q=q_lens, angle_deg=phi_lens,
                                           center_x=0.03, center_y=-0.02)
    ax2, ay2 = PROFILES["shear"].deflection(x, y, gamma=gamma, angle_deg=gamma_angle)
    src = SersicSource(0.05, 0.04, re_s, n_s, q_s, phi_s, b_n=b_n)
    flux = sersic_total_flux(5.0, re_s, n_s, b_n)
    mine, _ = r.render(src, (ax1 + ax2).astype(np.float32), (ay1 + ay2).astype(np.float32), 1.0, [flux])
    mine = mine[..., 0]
    assert np.abs(mine - reference).max() < 2e-3 * reference.max()
    assert mine.sum() == pytest.approx(reference.sum(), rel=1e-3)
