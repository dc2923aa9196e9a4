"""Benchmark: injection of one 128 x 128 x 3 mock, lenssearch's renderer side by side with lenstronomy.

The same elliptical Sersic source (n = 1.5, R_e = 0.15", q = 0.6) through the same deflection field (SIE with
theta_E = 0.9", q = 0.7, plus an external shear of 0.05), on the same 128 x 128 grid of 0.03" pixels with 4 x 4
sub-pixels, convolved with one PSF per band (three 41 x 41 Gaussians of different widths) for the three bands
F435W, F606W, F814W and co-added to a field cutout.

- lenstronomy: ``ImageModel.image`` once per band (each call ray-traces the sub-pixel grid through the SIE + shear,
  evaluates the Sersic, bins and convolves), as one would render three bands with it;
- lenssearch, per mock: the ray-traced Sersic rendered once by the compiled kernel and scaled per band, three FFT
  convolutions with cached PSF transforms, co-add (:class:`lenssearch.simulate.render.Renderer`). In the
  ``simulate`` stage the deflections on the sub-pixel grid are computed once per lens member and reused by all
  its mocks (every source redshift only rescales them); the line "with deflections" also evaluates the SIE +
  shear on the sub-pixel grid for every mock, as lenstronomy does.

Targets (issue 3): >= 10x faster than lenstronomy and >= 50 mocks/s on 2 cores. Both renderers run in one
process on one core (lenssearch's kernel is serial; two processes would double its throughput on 2 cores).
Prints wall and CPU times (medians), throughputs, the speed-up measured in this one run, and the largest pixel
difference between the two renderings. On a shared machine the wall time includes waiting for a CPU; the CPU
time is what a mock costs on an idle core.

Run: ``python benchmarks/bench_inject.py [--repeat 30]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

N, PIXEL, SUPERSAMPLING = 128, 0.03, 4
LENS = dict(theta_e=0.9, q=0.7, angle_deg=25.0, center=(0.03, -0.02), gamma=0.05, gamma_angle_deg=30.0)
SOURCE = dict(x=0.05, y=0.04, re=0.15, n=1.5, q=0.6, angle_deg=35.0)
PSF_SIGMAS_PIX = (1.9, 1.7, 1.5)
BAND_FLUXES = (0.5, 1.0, 1.6)  # e-/s of the unlensed source per band


def gaussian_psf(sigma: float, size: int = 41) -> np.ndarray:
    a = np.arange(size) - size // 2
    psf = np.exp(-0.5 * (a[:, None] ** 2 + a[None, :] ** 2) / sigma**2)
    return psf / psf.sum()


def timed(func, repeat: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``func()`` over ``repeat`` calls (after one warm-up call)."""
    func()
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        func()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def lenstronomy_setup(psfs):
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.Util import param_util

    e1, e2 = param_util.phi_q2_ellipticity(np.deg2rad(LENS["angle_deg"]), LENS["q"])
    g1, g2 = param_util.shear_polar2cartesian(np.deg2rad(LENS["gamma_angle_deg"]), LENS["gamma"])
    kwargs_lens = [dict(theta_E=LENS["theta_e"], e1=e1, e2=e2, center_x=LENS["center"][0],
                        center_y=LENS["center"][1]), dict(gamma1=g1, gamma2=g2)]
    se1, se2 = param_util.phi_q2_ellipticity(np.deg2rad(SOURCE["angle_deg"]), SOURCE["q"])
    data = ImageData(image_data=np.zeros((N, N)), transform_pix2angle=np.eye(2) * PIXEL,
                     ra_at_xy_0=-(N - 1) / 2 * PIXEL, dec_at_xy_0=-(N - 1) / 2 * PIXEL)
    models = [ImageModel(data, PSF(psf_type="PIXEL", kernel_point_source=p),
                         lens_model_class=LensModel(["SIE", "SHEAR"]),
                         source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                         kwargs_numerics=dict(supersampling_factor=SUPERSAMPLING, supersampling_convolution=False))
              for p in psfs]
    return models, kwargs_lens, se1, se2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed repetitions for lenssearch (median reported)")
    parser.add_argument("--repeat-lenstronomy", type=int, default=10, help="timed repetitions for lenstronomy")
    args = parser.parse_args()

    from lenssearch.lensing.profiles import PROFILES
    from lenssearch.simulate.render import Renderer, SersicSource, sersic_total_flux

    psfs = [gaussian_psf(s) for s in PSF_SIGMAS_PIX]
    field = np.random.default_rng(0).normal(0.0, 0.003, (N, N, 3)).astype(np.float32)

    # ---- lenstronomy
    models, kwargs_lens, se1, se2 = lenstronomy_setup(psfs)
    b_n = 1.9992 * SOURCE["n"] - 0.3271  # lenstronomy's b_n, so that both render the same profile
    unit_amp_flux = sersic_total_flux(1.0, SOURCE["re"], SOURCE["n"], b_n)

    def lenstronomy_mock():
        out = np.empty((N, N, 3))
        for k, (model, flux) in enumerate(zip(models, BAND_FLUXES)):
            kw = [dict(amp=flux / unit_amp_flux, R_sersic=SOURCE["re"], n_sersic=SOURCE["n"], e1=se1, e2=se2,
                       center_x=SOURCE["x"], center_y=SOURCE["y"])]
            out[..., k] = model.image(kwargs_lens=kwargs_lens, kwargs_source=kw)
        return field + out

    # ---- lenssearch
    renderer = Renderer(N, PIXEL, SUPERSAMPLING, psfs=psfs)
    source = SersicSource(SOURCE["x"], SOURCE["y"], SOURCE["re"], SOURCE["n"], SOURCE["q"], SOURCE["angle_deg"],
                          b_n=b_n)

    def deflections():
        x, y = renderer.grid()
        ax1, ay1 = PROFILES["sie"].deflection(x, y, theta_e_arcsec=LENS["theta_e"], q=LENS["q"],
                                               angle_deg=LENS["angle_deg"], center_x=LENS["center"][0],
                                               center_y=LENS["center"][1])
        ax2, ay2 = PROFILES["shear"].deflection(x, y, gamma=LENS["gamma"], angle_deg=LENS["gamma_angle_deg"])
        return (ax1 + ax2).astype(np.float32), (ay1 + ay2).astype(np.float32)

    alpha_x, alpha_y = deflections()

    def lenssearch_mock():
        injected, _ = renderer.render(source, alpha_x, alpha_y, 1.0, BAND_FLUXES)
        return field + injected

    def lenssearch_mock_with_deflections():
        ax, ay = deflections()
        injected, _ = renderer.render(source, ax, ay, 1.0, BAND_FLUXES)
        return field + injected

    diff = np.abs(lenssearch_mock().astype(float) - lenstronomy_mock()).max()
    peak = (lenstronomy_mock() - field).max()

    t_ref, c_ref = timed(lenstronomy_mock, args.repeat_lenstronomy)
    t_fast, c_fast = timed(lenssearch_mock, args.repeat)
    t_full, c_full = timed(lenssearch_mock_with_deflections, max(5, args.repeat // 3))

    print(f"mock: {N}x{N}x3, {SUPERSAMPLING}x{SUPERSAMPLING} sub-pixels, SIE + shear, Sersic n={SOURCE['n']}, "
          f"three 41x41 PSFs; one process, cores on the machine: {os.cpu_count()}")
    print(f"largest pixel difference lenssearch - lenstronomy: {diff:.3e} e-/s ({diff / peak:.2e} of the peak)")
    rows = [("lenstronomy ImageModel (3 bands)", t_ref, c_ref),
            ("lenssearch, deflections cached per member", t_fast, c_fast),
            ("lenssearch, with deflections per mock", t_full, c_full)]
    print(f"{'':44s} {'wall ms':>9s} {'CPU ms':>9s} {'mocks/s':>9s} {'speed-up':>9s}")
    for name, wall, cpu in rows:
        print(f"{name:44s} {wall * 1e3:9.2f} {cpu * 1e3:9.2f} {1.0 / wall:9.1f} {t_ref / wall:9.1f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (wall times include waiting for a shared CPU)")
    ok = t_ref / t_fast >= 10 and 1.0 / t_fast >= 50
    print("targets (>= 10x lenstronomy, >= 50 mocks/s), wall time:", "met" if ok else "NOT met")
    ok_cpu = c_ref / c_fast >= 10 and 1.0 / c_fast >= 50
    print("targets (>= 10x lenstronomy, >= 50 mocks/s), CPU time:", "met" if ok_cpu else "NOT met")


if __name__ == "__main__":
    main()
