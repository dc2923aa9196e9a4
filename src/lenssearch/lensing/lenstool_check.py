"""Check a LensTool model against its multiple images the way LensTool does: its image-plane rms.

For every family of a multiple-image catalogue (LensTool ``mul.cat`` format, see
:func:`lenssearch.lensing.lenstool.read_multiple_images`) with two or more images:

1. *Redshift*: the catalogue's; a family left at ``z <= 0`` (optimised by the fit) takes the ``best.par``'s
   ``z_m_limit`` value or a ``#N z:`` header line (:func:`lenssearch.lensing.lenstool.resolve_redshifts`); a family
   with neither is left out with a warning.
2. *Source*: each observed image ``theta_i`` is ray-traced to the source plane at the family's redshift (one plane,
   ``beta = theta - D_ds/D_s alpha``, or the recursive multi-plane equation); the source is their barycentre,
   weighted by ``|mu_i|`` (LensTool's image-plane fit ``forme -2``, and the default when the par file has no
   ``image`` block: it reproduces the ``Chi2pos`` headers of the CATS/HFF ``best.par`` files) or plain (``forme -1``).
3. *Predicted images*: every solution of the lens equation for that source, found as LensTool does by triangle
   mapping (the cells of an image-plane grid whose two triangles, mapped to the source plane, contain the source)
   and refined with damped Newton iterations on the Jacobian, plus Newton started at each observed image (an image
   too close to a critical line for the grid).
4. *Pairing*: observed and predicted images are paired one to one minimising the summed squared distances
   (:func:`scipy.optimize.linear_sum_assignment`), so two observed images of a close pair across a critical line
   are never paired with the same predicted image. If the model predicts fewer images than observed, the leftover
   observed images take their nearest predicted image (``paired`` is False).
5. *rms*: ``sqrt(mean |theta_pred - theta_obs|^2)`` per family and over all images of families with >= 2 images;
   the source-plane scatter is ``rms_i |beta_i - <beta>|``.

LensTool's own figure: a ``best.par`` of an image-plane fit carries ``#Chi2pos: X`` in its header, the chi2 of the
``N`` images at the positional error ``sigma`` (``sigposArcsec``, 0.5" by default), i.e. an rms of
``sqrt(X sigma^2 / N)``; :attr:`CheckResult.lenstool_rms_arcsec` gives it beside ours. (Jullo et al. 2007, eq. 7-8;
LensTool's ``o_chi.c``: ``chi2_img`` / ``unlens_bc``.)
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from lenssearch.errors import LensToolError
from lenssearch.lensing.lenstool import (
    BARYCENTRE_BY_FORME,
    DEFAULT_SIGPOS_ARCSEC,
    LensToolModel,
    read_multiple_images,
    read_parfile,
    resolve_redshifts,
)

#: Newton stops when the source-plane residual is below this (arcsec).
NEWTON_TOLERANCE_ARCSEC = 1e-9
#: A root is accepted when its source-plane residual is below this (arcsec).
ACCEPT_TOLERANCE_ARCSEC = 1e-6
NEWTON_MAX_ITERATIONS = 100
#: Largest Newton step (arcsec): keeps the iteration near its start when it begins close to a critical line, where
#: the Jacobian is nearly singular.
NEWTON_MAX_STEP_ARCSEC = 0.5
#: Step of the image-plane grid of the triangle mapping (arcsec), and its margin around the observed images.
GRID_STEP_ARCSEC = 0.5
GRID_MARGIN_ARCSEC = 15.0
#: Two roots closer than this are one image (arcsec).
SAME_IMAGE_ARCSEC = 1e-3
BARYCENTRES = ("auto", "mean", "magnification")


@dataclasses.dataclass
class CheckResult:
    """Outcome of :func:`check_model`.

    Attributes
    ----------
    families
        One row per family: ``family``, ``n_images``, ``z_s``, ``z_origin``, ``source_x``, ``source_y`` (arcsec),
        ``source_scatter_arcsec``, ``image_rms_arcsec``, ``n_predicted``, ``converged``.
    images
        One row per image: ``id``, ``family``, ``z``, ``x``, ``y``, ``beta_x``, ``beta_y``, ``mu``, ``x_pred``,
        ``y_pred``, ``offset_arcsec``, ``paired``, ``converged``.
    total_source_scatter_arcsec
        rms over all images of ``|beta_i - <beta>|``.
    total_image_rms_arcsec
        rms over all images of ``|theta_pred - theta_obs|``.
    lenstool_rms_arcsec
        The rms implied by the par file's ``#Chi2pos`` header, or None.
    barycentre
        ``"magnification"`` or ``"mean"``.
    notes
        Assumptions and warnings (families left out, default cosmology, barycentre without ``image`` block ...).
    other_planes
        For a model with potentials at several redshifts: ``(planes, rms)`` of the other convention (``"single"``,
        LensTool 6, when the check ran ``"multi"``, and conversely), so that a user sees which one the model's
        header was fitted with; None otherwise.
    """

    families: object
    images: object
    total_source_scatter_arcsec: float
    total_image_rms_arcsec: float
    lenstool_rms_arcsec: float | None = None
    barycentre: str = "magnification"
    notes: list = dataclasses.field(default_factory=list)
    other_planes: tuple | None = None


# ------------------------------------------------------------------------------------------------ lens equation
def _newton(model, bx: float, by: float, z_s: float, x0, y0):
    """Damped Newton on ``beta(theta) = (bx, by)`` from many starts at once; returns ``x, y, residual``."""
    x = np.array(x0, dtype=float, copy=True)
    y = np.array(y0, dtype=float, copy=True)
    res = np.full(x.shape, np.inf)
    active = np.ones(x.shape, dtype=bool)
    for _ in range(NEWTON_MAX_ITERATIONS):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        sx, sy = model.ray_trace(x[idx], y[idx], z_s)
        rx, ry = sx - bx, sy - by
        res[idx] = np.hypot(rx, ry)
        done = res[idx] < NEWTON_TOLERANCE_ARCSEC
        active[idx[done]] = False
        idx, rx, ry = idx[~done], rx[~done], ry[~done]
        if idx.size == 0:
            break
        a11, a12, a21, a22 = model.jacobian_matrix(x[idx], y[idx], z_s)
        det = a11 * a22 - a12 * a21
        bad = ~np.isfinite(det) | (det == 0)
        active[idx[bad]] = False
        det = np.where(bad, 1.0, det)
        dx = np.where(bad, 0.0, (a22 * rx - a12 * ry) / det)
        dy = np.where(bad, 0.0, (a11 * ry - a21 * rx) / det)
        step = np.hypot(dx, dy)
        scale = np.where(step > NEWTON_MAX_STEP_ARCSEC, NEWTON_MAX_STEP_ARCSEC / np.maximum(step, 1e-300), 1.0)
        x[idx] -= dx * scale
        y[idx] -= dy * scale
    return x, y, res


def solve_lens_equation(model, beta_x: float, beta_y: float, z_s: float, x0: float, y0: float):
    """Image position near ``(x0, y0)`` of a source at ``(beta_x, beta_y)``, ``z_s`` (damped Newton).

    ``model`` is any lens model with ``ray_trace(x, y, z_s)`` and ``jacobian_matrix(x, y, z_s)``
    (:class:`~lenssearch.lensing.model.LensModel`, :class:`~lenssearch.lensing.model.MultiPlaneLensModel`).

    Returns
    -------
    x, y, converged
        The image position in arcsec and whether the source-plane residual fell below ``ACCEPT_TOLERANCE_ARCSEC``.
    """
    x, y, res = _newton(model, float(beta_x), float(beta_y), float(z_s), np.array([x0]), np.array([y0]))
    return float(x[0]), float(y[0]), bool(res[0] < ACCEPT_TOLERANCE_ARCSEC)


class _Grid:
    """The image-plane grid of the triangle mapping, ray-traced once per source redshift."""

    def __init__(self, model, x_obs, y_obs, step: float = GRID_STEP_ARCSEC, margin: float = GRID_MARGIN_ARCSEC):
        self.model = model
        x0, x1 = np.min(x_obs) - margin, np.max(x_obs) + margin
        y0, y1 = np.min(y_obs) - margin, np.max(y_obs) + margin
        self.x_axis = np.arange(x0, x1 + step, step)
        self.y_axis = np.arange(y0, y1 + step, step)
        self.xx, self.yy = np.meshgrid(self.x_axis, self.y_axis)
        self.single_plane = hasattr(model, "dds_over_ds") and hasattr(model, "deflection") and not hasattr(
            model, "planes")
        self._alpha = None
        self._cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def source_positions(self, z_s: float):
        """``beta`` of every grid node for a source at ``z_s``."""
        key = round(float(z_s), 6)
        if key not in self._cache:
            if self.single_plane:
                if self._alpha is None:
                    self._alpha = self.model.deflection(self.xx, self.yy)
                f = self.model.dds_over_ds(z_s)
                self._cache[key] = (self.xx - f * self._alpha[0], self.yy - f * self._alpha[1])
            else:
                if self._alpha is None:  # the nearest plane does not depend on z_s
                    self._alpha = self.model.first_plane_deflection(self.xx, self.yy)
                self._cache[key] = self.model.ray_trace(self.xx, self.yy, z_s, first_plane_deflection=self._alpha)
        return self._cache[key]

    def cells_containing(self, bx: float, by: float, z_s: float):
        """Image-plane centres of the grid triangles whose source-plane images contain ``(bx, by)``."""
        sx, sy = self.source_positions(z_s)
        sx, sy = sx - bx, sy - by
        hits_x, hits_y = [], []
        # lower-left triangle (i, j), (i, j+1), (i+1, j) and upper-right (i+1, j+1), (i+1, j), (i, j+1)
        for corners in (((0, 0), (0, 1), (1, 0)), ((1, 1), (1, 0), (0, 1))):
            (ra, ca), (rb, cb), (rc, cc) = corners
            ny, nx = sx.shape
            ax, ay = sx[ra: ny - 1 + ra, ca: nx - 1 + ca], sy[ra: ny - 1 + ra, ca: nx - 1 + ca]
            bx_, by_ = sx[rb: ny - 1 + rb, cb: nx - 1 + cb], sy[rb: ny - 1 + rb, cb: nx - 1 + cb]
            cx, cy = sx[rc: ny - 1 + rc, cc: nx - 1 + cc], sy[rc: ny - 1 + rc, cc: nx - 1 + cc]
            # the origin (the source) is inside when the three edge cross products have one sign
            d1 = ax * by_ - ay * bx_
            d2 = bx_ * cy - by_ * cx
            d3 = cx * ay - cy * ax
            inside = ((d1 >= 0) & (d2 >= 0) & (d3 >= 0)) | ((d1 <= 0) & (d2 <= 0) & (d3 <= 0))
            rows, cols = np.nonzero(inside)
            step_x = self.x_axis[1] - self.x_axis[0]
            step_y = self.y_axis[1] - self.y_axis[0]
            hits_x.append(self.x_axis[cols] + step_x * (ca + cb + cc) / 3.0)
            hits_y.append(self.y_axis[rows] + step_y * (ra + rb + rc) / 3.0)
        return np.concatenate(hits_x), np.concatenate(hits_y)


def _unique(x, y, tolerance: float):
    """Indices of the points of ``(x, y)`` left after merging those closer than ``tolerance``."""
    keep: list[int] = []
    for i in range(len(x)):
        if all(math.hypot(x[i] - x[k], y[i] - y[k]) > tolerance for k in keep):
            keep.append(i)
    return np.array(keep, dtype=int)


def predicted_images(model, bx: float, by: float, z_s: float, x_obs, y_obs, grid: _Grid | None = None):
    """All images of a source at ``(bx, by)``, ``z_s``: triangle mapping on ``grid`` + Newton, and Newton from the
    observed positions; returns ``x, y`` (arcsec) of the distinct converged roots."""
    starts_x, starts_y = [np.asarray(x_obs, dtype=float)], [np.asarray(y_obs, dtype=float)]
    if grid is not None:
        cx, cy = grid.cells_containing(bx, by, z_s)
        starts_x.append(cx)
        starts_y.append(cy)
    x, y, res = _newton(model, bx, by, z_s, np.concatenate(starts_x), np.concatenate(starts_y))
    ok = res < ACCEPT_TOLERANCE_ARCSEC
    x, y = x[ok], y[ok]
    keep = _unique(x, y, SAME_IMAGE_ARCSEC)
    return x[keep], y[keep]


def pair_images(x_obs, y_obs, x_pred, y_pred):
    """One-to-one pairing of observed and predicted images minimising the summed squared distances.

    Returns
    -------
    index, paired
        For each observed image the index of its predicted image, and whether the pairing is one to one (False
        for the leftover observed images when fewer images are predicted: they take the nearest one).
    """
    from scipy.optimize import linear_sum_assignment

    n = len(x_obs)
    index = np.full(n, -1, dtype=int)
    paired = np.zeros(n, dtype=bool)
    if len(x_pred) == 0:
        return index, paired
    cost = (np.subtract.outer(x_obs, x_pred)) ** 2 + (np.subtract.outer(y_obs, y_pred)) ** 2
    rows, cols = linear_sum_assignment(cost)
    index[rows], paired[rows] = cols, True
    for i in np.flatnonzero(~paired):
        index[i] = int(np.argmin(cost[i]))
    return index, paired


# ------------------------------------------------------------------------------------------------ the check
def _barycentre_mode(lt: LensToolModel, barycentre: str, notes: list) -> str:
    if barycentre not in BARYCENTRES:
        raise LensToolError(f"barycentre must be one of {BARYCENTRES}, got {barycentre!r}")
    if barycentre != "auto":
        return barycentre
    forme = lt.image.forme
    if forme in BARYCENTRE_BY_FORME:
        return BARYCENTRE_BY_FORME[forme]
    if forme is None:
        notes.append(
            f"{lt.path}: no 'forme' in an 'image' block; the source is the |mu|-weighted barycentre of the "
            "ray-traced images (LensTool's image-plane fit, forme -2, as in the CATS/HFF best.par files)"
        )
    else:
        notes.append(
            f"{lt.path}, line {lt.image.line}: forme {forme} is a source-plane fit; the image-plane rms is "
            "computed with the |mu|-weighted barycentre (forme -2)"
        )
    return "magnification"


def lenstool_header_rms(lt: LensToolModel, n_images: int, notes: list | None = None,
                        sigpos_arcsec: float | None = None) -> float | None:
    """The image-plane rms implied by the header's ``#Chi2pos`` for ``n_images`` images, or None without one.

    The positional error is ``sigpos_arcsec``, else the par file's ``sigposArcsec``, else LensTool's 0.5" (a
    ``best.par`` does not repeat the ``image`` block of the fit's input file).
    """
    if lt.chi2pos is None or n_images <= 0:
        return None
    if sigpos_arcsec is not None and not sigpos_arcsec > 0:
        raise LensToolError(f"sigpos must be positive, got {sigpos_arcsec}")
    sigma = sigpos_arcsec if sigpos_arcsec is not None else lt.image.sigpos_arcsec
    if sigma is None:
        sigma = DEFAULT_SIGPOS_ARCSEC
        if notes is not None:
            notes.append(f"{lt.path}: no 'sigposArcsec' in the 'image' block; Chi2pos is read at LensTool's "
                         f"positional error of {sigma:g} arcsec")
    return math.sqrt(lt.chi2pos * sigma * sigma / n_images)


def check_model(lt: LensToolModel, images, *, barycentre: str = "auto", grid_step_arcsec: float = GRID_STEP_ARCSEC,
                sigpos_arcsec: float | None = None, progress: bool = True) -> CheckResult:
    """LensTool's image-plane rms of ``lt`` for a multiple-image table (see the module docstring).

    Parameters
    ----------
    lt
        The model (:func:`~lenssearch.lensing.lenstool.read_parfile`).
    images
        A table of :func:`~lenssearch.lensing.lenstool.read_multiple_images`.
    barycentre
        ``"auto"`` (the ``image`` block's ``forme``; ``|mu|``-weighted without one), ``"mean"`` or
        ``"magnification"``.
    grid_step_arcsec
        Step of the triangle-mapping grid; 0 searches only from the observed images.
    sigpos_arcsec
        Positional error of the fit, to read the header's ``Chi2pos`` (see :func:`lenstool_header_rms`).
    progress
        A tqdm bar over families.
    """
    from astropy.table import Table
    from tqdm.auto import tqdm

    model = lt.model
    notes = list(lt.notes)
    mode = _barycentre_mode(lt, barycentre, notes)
    source_file = images.meta.get("source_file", "multiple images")
    families_all = np.asarray(images["family"])
    counts = {f: int(np.sum(families_all == f)) for f in dict.fromkeys(families_all)}
    n_lenstool = sum(c for c in counts.values() if c >= 2)
    images, skipped = resolve_redshifts(images, lt.image, lt.path)
    notes.extend(skipped)
    if len(images) == 0:
        raise LensToolError(f"{source_file}: no family has a redshift")
    if "x" not in images.colnames:
        images = images.copy()
        images["x"], images["y"] = lt.radec_to_xy(images["ra"], images["dec"])
    x_obs = np.asarray(images["x"], dtype=float)
    y_obs = np.asarray(images["y"], dtype=float)
    z = np.asarray(images["z"], dtype=float)
    lines = images["line"] if "line" in images.colnames else [None] * len(z)
    for zi, line in zip(z, lines):
        if not zi > model.z_lens:
            where = f", line {line}" if line is not None else ""
            raise LensToolError(f"{source_file}{where}: image redshift {zi} is not behind the lens ({model.z_lens})")

    n = len(images)
    beta_x, beta_y, mu = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    x_pred, y_pred = np.full(n, np.nan), np.full(n, np.nan)
    converged, paired = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    dev_source = np.full(n, np.nan)
    grid = _Grid(model, x_obs, y_obs, step=grid_step_arcsec) if grid_step_arcsec > 0 else None
    family_rows = []
    family_names = np.asarray(images["family"])
    origins = np.asarray(images["z_origin"])
    for family in tqdm(list(dict.fromkeys(family_names)), desc="families", leave=False,
                         disable=None if progress else True):
        idx = np.flatnonzero(family_names == family)
        z_s = float(z[idx[0]])
        beta_x[idx], beta_y[idx] = model.ray_trace(x_obs[idx], y_obs[idx], z_s)
        a11, a12, a21, a22 = model.jacobian_matrix(x_obs[idx], y_obs[idx], z_s)
        mu[idx] = 1.0 / (a11 * a22 - a12 * a21)
        if len(idx) < 2:
            family_rows.append((family, len(idx), z_s, origins[idx[0]], beta_x[idx[0]], beta_y[idx[0]], np.nan,
                                np.nan, 0, False))
            continue
        weights = np.abs(mu[idx]) if mode == "magnification" else np.ones(len(idx))
        bx = float(np.sum(weights * beta_x[idx]) / np.sum(weights))
        by = float(np.sum(weights * beta_y[idx]) / np.sum(weights))
        dev_source[idx] = np.hypot(beta_x[idx] - bx, beta_y[idx] - by)
        px, py = predicted_images(model, bx, by, z_s, x_obs[idx], y_obs[idx], grid)
        index, paired[idx] = pair_images(x_obs[idx], y_obs[idx], px, py)
        found = index >= 0
        x_pred[idx[found]], y_pred[idx[found]] = px[index[found]], py[index[found]]
        converged[idx] = found
        offsets = np.hypot(x_pred[idx] - x_obs[idx], y_pred[idx] - y_obs[idx])
        family_rows.append(
            (
                family, len(idx), z_s, origins[idx[0]], bx, by, float(np.sqrt(np.mean(dev_source[idx] ** 2))),
                float(np.sqrt(np.mean(offsets**2))), len(px), bool(found.all() and paired[idx].all()),
            )
        )
    offsets = np.hypot(x_pred - x_obs, y_pred - y_obs)
    used = np.isfinite(offsets)
    multiple = np.isfinite(dev_source)
    if not multiple.any():
        raise LensToolError(f"{source_file}: no family has two or more images")
    lost = multiple & ~used
    if lost.any():
        notes.append(f"{source_file}: the model predicts no image for the source of "
                     f"{', '.join(str(i) for i in images['id'][lost])}: left out of the rms")
    if (multiple & used & ~paired).any():
        notes.append(f"{source_file}: the model predicts fewer images than observed for "
                     f"{', '.join(str(i) for i in images['id'][multiple & used & ~paired])}: paired with the nearest")
    fam_table = Table(
        rows=family_rows,
        names=("family", "n_images", "z_s", "z_origin", "source_x", "source_y", "source_scatter_arcsec",
               "image_rms_arcsec", "n_predicted", "converged"),
        dtype=(str, int, float, str, float, float, float, float, int, bool),
    )
    img_table = Table(
        {
            "id": images["id"], "family": images["family"], "z": z, "x": x_obs, "y": y_obs,
            "beta_x": beta_x, "beta_y": beta_y, "mu": mu, "x_pred": x_pred, "y_pred": y_pred,
            "offset_arcsec": offsets, "paired": paired, "converged": converged,
        }
    )
    total_source = float(np.sqrt(np.mean(dev_source[multiple] ** 2)))
    total_image = float(np.sqrt(np.mean(offsets[used] ** 2))) if used.any() else float("nan")
    lenstool_rms = lenstool_header_rms(lt, n_lenstool, notes, sigpos_arcsec)
    for table in (fam_table, img_table):
        for col in table.colnames:
            if col.endswith("arcsec") or col in ("x", "y", "source_x", "source_y", "beta_x", "beta_y", "x_pred",
                                                  "y_pred"):
                table[col].unit = "arcsec"
                table[col].format = ".4f"
    img_table["mu"].format = ".3f"
    fam_table.meta.update(
        {
            "parfile": str(lt.path), "multfile": str(source_file), "barycentre": mode, "planes": lt.planes,
            "z_planes": list(lt.z_planes),
            "total_source_scatter_arcsec": total_source, "total_image_rms_arcsec": total_image,
            "lenstool_chi2pos": lt.chi2pos, "lenstool_rms_arcsec": lenstool_rms,
            "n_images": int(used.sum()), "n_families": int(sum(r[1] >= 2 for r in family_rows)),
        }
    )
    return CheckResult(fam_table, img_table, total_source, total_image, lenstool_rms, mode, notes)


def lenstool_check(parfile: str | Path, multfile: str | Path, *, planes: str = "multi", barycentre: str = "auto",
                   sigpos_arcsec: float | None = None, progress: bool = True) -> CheckResult:
    """Read a LensTool model and its multiple images and run :func:`check_model`.

    ``planes``: ``"multi"`` ray-traces potentials at several redshifts plane by plane; ``"single"`` puts them all
    at the first potential's redshift as LensTool 6 does (:func:`~lenssearch.lensing.lenstool.read_parfile`).
    """
    lt = read_parfile(parfile, planes=planes)
    if lt.reference_radec is None:
        raise LensToolError(f"{parfile}: no 'reference 3 RA Dec' (or 'reference 1 hh:mm:ss dd:mm:ss') in a 'runmode' "
                            "block: the model frame has no origin on the sky, so RA/Dec images cannot be placed")
    images = read_multiple_images(multfile, lt.reference_radec)
    result = check_model(lt, images, barycentre=barycentre, sigpos_arcsec=sigpos_arcsec, progress=progress)
    if len(lt.z_planes) > 1:
        other = "single" if planes == "multi" else "multi"
        alt = check_model(read_parfile(parfile, planes=other), images, barycentre=barycentre, progress=False)
        result.other_planes = (other, alt.total_image_rms_arcsec)
        result.families.meta["other_planes"] = {"planes": other, "total_image_rms_arcsec": alt.total_image_rms_arcsec}
    return result
