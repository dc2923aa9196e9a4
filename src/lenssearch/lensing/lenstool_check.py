"""Check a LensTool model against its multiple images: source-plane scatter and image-plane rms.

For every family of a multiple-image catalogue (LensTool ``mul.cat`` format, see
:func:`lenssearch.lensing.lenstool.read_multiple_images`):

1. each observed image ``theta_i`` is ray-traced to the source plane at its own redshift,
   ``beta_i = theta_i - D_ds/D_s(z_l, z_i) alpha(theta_i)``;
2. the family's source is the mean ``<beta>``; its source-plane scatter is ``rms_i |beta_i - <beta>|``;
3. ``<beta>`` is mapped back to the image plane by solving the lens equation ``theta - f alpha(theta) = <beta>``
   near each observed image with damped Newton iterations on the Jacobian ``A = 1 - f H`` started at
   ``theta_i`` (falling back to :func:`scipy.optimize.root` if Newton does not converge);
4. the image-plane rms is ``sqrt(mean_i |theta_pred,i - theta_i|^2)``, per family and over all images.

A family with a single image constrains nothing: it is listed with NaN scatter and rms and left out of the totals.

This is LensTool's image-plane ``rms_i`` (Jullo et al. 2007, eq. 7-8, with the predicted image nearest to each
observed one). It is the acceptance test of the lensing core: it only comes out at the published value if the
profiles, units, angles and the coordinate frame are all right.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from lenssearch.errors import LensToolError
from lenssearch.lensing.lenstool import LensToolModel, read_multiple_images, read_parfile

#: Newton stops when the source-plane residual is below this (arcsec).
NEWTON_TOLERANCE_ARCSEC = 1e-9
NEWTON_MAX_ITERATIONS = 100
#: Largest Newton step (arcsec): keeps the iteration near the observed image when it starts close to a critical
#: line, where the Jacobian is nearly singular.
NEWTON_MAX_STEP_ARCSEC = 0.5


@dataclasses.dataclass
class CheckResult:
    """Outcome of :func:`check_model`.

    Attributes
    ----------
    families
        One row per family: ``family``, ``n_images``, ``z_s``, ``source_x``, ``source_y`` (arcsec),
        ``source_scatter_arcsec``, ``image_rms_arcsec``, ``converged``.
    images
        One row per image: ``id``, ``family``, ``z``, ``x``, ``y``, ``beta_x``, ``beta_y``, ``x_pred``,
        ``y_pred``, ``offset_arcsec``, ``converged``.
    total_source_scatter_arcsec
        rms over all images of ``|beta_i - <beta>|``.
    total_image_rms_arcsec
        rms over all images of ``|theta_pred - theta_obs|``.
    """

    families: object
    images: object
    total_source_scatter_arcsec: float
    total_image_rms_arcsec: float


def solve_lens_equation(model, beta_x: float, beta_y: float, z_s: float, x0: float, y0: float):
    """Image position near ``(x0, y0)`` of a source at ``(beta_x, beta_y)``, ``z_s``.

    Damped Newton iterations on the lens equation with the analytic Jacobian; if they do not converge,
    :func:`scipy.optimize.root` (``hybr``) from the same start.

    Returns
    -------
    x, y, converged
        The image position in arcsec and whether the residual fell below ``NEWTON_TOLERANCE_ARCSEC * 1e3``.
    """
    f = model.dds_over_ds(z_s)
    x, y = float(x0), float(y0)
    for _ in range(NEWTON_MAX_ITERATIONS):
        ax, ay = model.deflection(np.array([x]), np.array([y]))
        rx = x - f * ax[0] - beta_x
        ry = y - f * ay[0] - beta_y
        if np.hypot(rx, ry) < NEWTON_TOLERANCE_ARCSEC:
            return x, y, True
        f_xx, f_xy, f_yy = (h[0] for h in model.hessian(np.array([x]), np.array([y])))
        a11, a12, a22 = 1.0 - f * f_xx, -f * f_xy, 1.0 - f * f_yy
        det = a11 * a22 - a12 * a12
        if det == 0 or not np.isfinite(det):
            break
        dx = (a22 * rx - a12 * ry) / det
        dy = (a11 * ry - a12 * rx) / det
        step = np.hypot(dx, dy)
        if step > NEWTON_MAX_STEP_ARCSEC:
            dx, dy = dx * NEWTON_MAX_STEP_ARCSEC / step, dy * NEWTON_MAX_STEP_ARCSEC / step
        x, y = x - dx, y - dy

    from scipy.optimize import root

    def residual(p):
        ax, ay = model.deflection(np.array([p[0]]), np.array([p[1]]))
        return [p[0] - f * ax[0] - beta_x, p[1] - f * ay[0] - beta_y]

    def jacobian(p):
        f_xx, f_xy, f_yy = (h[0] for h in model.hessian(np.array([p[0]]), np.array([p[1]])))
        return [[1.0 - f * f_xx, -f * f_xy], [-f * f_xy, 1.0 - f * f_yy]]

    sol = root(residual, [x0, y0], jac=jacobian, method="hybr")
    res = np.hypot(*residual(sol.x))
    return float(sol.x[0]), float(sol.x[1]), bool(res < NEWTON_TOLERANCE_ARCSEC * 1e3)


def check_model(lt: LensToolModel, images) -> CheckResult:
    """Source-plane scatter and image-plane rms of ``lt`` for a multiple-image table (see module docstring)."""
    from astropy.table import Table

    model = lt.model
    if "x" not in images.colnames:
        images = images.copy()
        images["x"], images["y"] = lt.radec_to_xy(images["ra"], images["dec"])
    source_file = images.meta.get("source_file", "multiple images")
    x_obs = np.asarray(images["x"], dtype=float)
    y_obs = np.asarray(images["y"], dtype=float)
    z = np.asarray(images["z"], dtype=float)
    ax, ay = model.deflection(x_obs, y_obs)
    f = np.array([model.dds_over_ds(zi) for zi in z])
    for zi, line in zip(z, images["line"] if "line" in images.colnames else [None] * len(z)):
        if not zi > model.z_lens:
            where = f", line {line}" if line is not None else ""
            raise LensToolError(f"{source_file}{where}: image redshift {zi} is not behind the lens ({model.z_lens})")
    beta_x = x_obs - f * ax
    beta_y = y_obs - f * ay

    family_rows = []
    n = len(images)
    x_pred = np.full(n, np.nan)
    y_pred = np.full(n, np.nan)
    converged = np.zeros(n, dtype=bool)
    dev_source = np.full(n, np.nan)
    families = list(dict.fromkeys(images["family"]))
    try:
        from tqdm import tqdm

        iterator = tqdm(families, desc="families", leave=False, disable=None)
    except ImportError:  # pragma: no cover
        iterator = families
    for family in iterator:
        idx = np.flatnonzero(np.asarray(images["family"]) == family)
        if len(idx) < 2:
            family_rows.append((family, len(idx), z[idx[0]], beta_x[idx[0]], beta_y[idx[0]], np.nan, np.nan, False))
            continue
        bx, by = beta_x[idx].mean(), beta_y[idx].mean()
        dev_source[idx] = np.hypot(beta_x[idx] - bx, beta_y[idx] - by)
        for i in idx:
            x_pred[i], y_pred[i], converged[i] = solve_lens_equation(model, bx, by, z[i], x_obs[i], y_obs[i])
        offsets = np.hypot(x_pred[idx] - x_obs[idx], y_pred[idx] - y_obs[idx])
        family_rows.append(
            (
                family, len(idx), float(np.median(z[idx])), bx, by,
                float(np.sqrt(np.mean(dev_source[idx] ** 2))), float(np.sqrt(np.mean(offsets**2))),
                bool(converged[idx].all()),
            )
        )
    offsets = np.hypot(x_pred - x_obs, y_pred - y_obs)
    used = np.isfinite(offsets)
    if not used.any():
        raise LensToolError(f"{source_file}: no family has two or more images")
    fam_table = Table(
        rows=family_rows,
        names=("family", "n_images", "z_s", "source_x", "source_y", "source_scatter_arcsec", "image_rms_arcsec",
               "converged"),
        dtype=(str, int, float, float, float, float, float, bool),
    )
    img_table = Table(
        {
            "id": images["id"], "family": images["family"], "z": z, "x": x_obs, "y": y_obs,
            "beta_x": beta_x, "beta_y": beta_y, "x_pred": x_pred, "y_pred": y_pred,
            "offset_arcsec": offsets, "converged": converged,
        }
    )
    total_source = float(np.sqrt(np.nanmean(dev_source[used] ** 2)))
    total_image = float(np.sqrt(np.mean(offsets[used] ** 2)))
    for table in (fam_table, img_table):
        for col in table.colnames:
            if col.endswith("arcsec") or col in ("x", "y", "source_x", "source_y", "beta_x", "beta_y", "x_pred",
                                                  "y_pred"):
                table[col].unit = "arcsec"
                table[col].format = ".4f"
    fam_table.meta.update(
        {
            "parfile": str(lt.path), "multfile": str(source_file),
            "total_source_scatter_arcsec": total_source, "total_image_rms_arcsec": total_image,
            "n_images": int(used.sum()), "n_families": int(sum(r[1] >= 2 for r in family_rows)),
        }
    )
    return CheckResult(fam_table, img_table, total_source, total_image)


def lenstool_check(parfile: str | Path, multfile: str | Path) -> CheckResult:
    """Read a LensTool model and its multiple images and run :func:`check_model`."""
    lt = read_parfile(parfile)
    if lt.reference_radec is None:
        raise LensToolError(f"{parfile}: runmode has no 'reference 3 RA Dec'; cannot place RA/Dec images")
    images = read_multiple_images(multfile, lt.reference_radec)
    return check_model(lt, images)
