"""Critical lines, caustics and the catalogue of secondary (galaxy-scale) tangential critical lines.

Inputs: a lens model (anything with ``hessian(x, y)``, ``deflection(x, y)`` / ``ray_trace(x, y, z_s)`` and
``dds_over_ds(z_s)`` in the model frame of ``docs/architecture.md``: a :class:`~lenssearch.lensing.model.LensModel`,
a LensTool model's ``.model``, or a :class:`~lenssearch.lensing.deflection_maps.DeflectionMap`) and, for the
catalogue, a table of cluster members (``id``, ``x``, ``y`` in arcsec). Outputs: polygons in arcsec and an astropy
table, written as ECSV plus a FITS binary table of the polygons.

Jacobian (Schneider, Ehlers & Falco 1992, Sect. 5.2; Meneghetti 2021, Ch. 3): with the hessian ``H`` of the
potential at ``D_ds / D_s = 1`` and ``f = D_ds / D_s(z_l, z_s)``,

    A = I - f H,   kappa = f (H_xx + H_yy) / 2,   gamma_1 = f (H_xx - H_yy) / 2,   gamma_2 = f H_xy,
    lambda_t = 1 - kappa - gamma,   lambda_r = 1 - kappa + gamma,   mu = 1 / (lambda_t lambda_r).

Tangential critical lines are the zero contours of ``lambda_t`` (marching squares with linear interpolation,
``skimage.measure.find_contours``, so vertices are sub-pixel); caustics are their images through the lens equation
``beta = theta - f alpha(theta)``, evaluated with the model's own deflection at each vertex.

Secondary critical lines (Angora et al. 2023, Sect. 3.1)
-------------------------------------------------------
Galaxy-scale lines are a few tenths of an arcsec to a few arcsec across, so they are resolved on local grids
around each member rather than on one cluster grid:

1. *Detection*: a grid of step ``max(resolution, theta_e_min / 2)`` aligned on a global lattice, of half-size
   ``search_radius`` around each member. Every closed zero contour of ``lambda_t`` is a candidate. (For Abell
   S1063 at z_s = 2, detecting at 0.03" instead of 0.1" finds the same 93 lines.)
2. *Primary line*: the criterion is (a) a contour that is not closed inside the member's box is not a candidate
   (this removes the cluster-scale line, every galaxy line that merges with it, and any line larger than the
   box), and (b) a closed contour that encloses the centre of a cluster-scale component (components that are not
   members, e.g. the dark-matter halos and a BCG modelled apart; ``cluster_centres``) is primary.
3. *Owner*: the member inside the polygon nearest to its centroid; if none is inside, the member nearest to the
   centroid (column ``member_inside`` tells which). Candidates seen from several boxes are merged by owner and
   centroid.
4. *Refinement*: each unique line is contoured again on a grid of step ``resolution`` over its bounding box (plus
   a margin), and ``theta_E = sqrt(area / pi)`` is taken from that polygon (shoelace area).
5. *Selection*: ``theta_e_min < theta_E < theta_e_max`` (0.2" and 3.5" in the paper).

Speed (``method="fast"``): on a rectangle, the hessian is the exact sum of the components whose centres lie
within :data:`NEAR_MARGIN_ARCSEC` of the rectangle, plus a bicubic spline (nodes every
:data:`FAR_NODE_STEP_ARCSEC`) of the rest. The rest is computed at the nodes as *total minus near*, so it contains
no singular part inside the rectangle and is smooth there; the node values are cached in tiles shared by
overlapping rectangles. Detection uses a cheaper split (1" nodes and margin): it only needs the topology, and every
candidate is then refined with the accurate one. ``method="exact"`` evaluates the whole model at every grid point;
the tests check that both agree to better than 0.01" in ``theta_E`` (for the whole S1063 catalogue at z_s = 2 they
agree to 2e-6"). The full S1063 catalogue (260 members, 264 potentials) takes ~7 s on 2 busy cores.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from lenssearch.errors import InputFileError, LensSearchError
from lenssearch.io import atomic_path, describe_columns

#: Components centred within this distance (arcsec) of a grid rectangle are evaluated exactly (``fast``).
NEAR_MARGIN_ARCSEC = 2.0
#: Node spacing (arcsec) of the spline of the far components (``fast``).
FAR_NODE_STEP_ARCSEC = 0.5
#: Profiles without a centre (uniform fields) are always part of the smooth far field.
UNIFORM_PROFILES = frozenset({"shear"})
#: Columns of the secondary catalogue holding the polygons (object columns in memory, a FITS table on disk).
POLYGON_COLUMNS = ("critical_x", "critical_y", "caustic_x", "caustic_y")
#: Suffix of the companion FITS file of a catalogue ``<stem>.ecsv``.
POLYGON_SUFFIX = "_polygons.fits"


# ------------------------------------------------------------------------------------------------ Jacobian
@dataclasses.dataclass(frozen=True)
class JacobianQuantities:
    """Convergence, shear, eigenvalues and magnification of the lens mapping (arrays of one shape)."""

    kappa: np.ndarray
    gamma1: np.ndarray
    gamma2: np.ndarray

    @property
    def gamma(self) -> np.ndarray:
        """Shear modulus ``sqrt(gamma_1^2 + gamma_2^2)``."""
        return np.hypot(self.gamma1, self.gamma2)

    @property
    def lambda_t(self) -> np.ndarray:
        """Tangential eigenvalue ``1 - kappa - gamma`` (zero on tangential critical lines)."""
        return 1.0 - self.kappa - self.gamma

    @property
    def lambda_r(self) -> np.ndarray:
        """Radial eigenvalue ``1 - kappa + gamma`` (zero on radial critical lines)."""
        return 1.0 - self.kappa + self.gamma

    @property
    def det(self) -> np.ndarray:
        """``det A = (1 - kappa)^2 - gamma^2``."""
        return (1.0 - self.kappa) ** 2 - self.gamma1**2 - self.gamma2**2

    @property
    def magnification(self) -> np.ndarray:
        """Signed magnification ``1 / det A`` (infinite on critical lines)."""
        with np.errstate(divide="ignore"):
            return 1.0 / self.det


def jacobian_quantities(f_xx, f_xy, f_yy, dds_over_ds: float = 1.0) -> JacobianQuantities:
    """Jacobian quantities from the hessian ``(f_xx, f_xy, f_yy)`` at ``D_ds / D_s = 1`` scaled by ``dds_over_ds``."""
    f_xx, f_xy, f_yy = (np.asarray(a, dtype=float) for a in (f_xx, f_xy, f_yy))
    return JacobianQuantities(
        kappa=0.5 * dds_over_ds * (f_xx + f_yy),
        gamma1=0.5 * dds_over_ds * (f_xx - f_yy),
        gamma2=dds_over_ds * f_xy,
    )


def model_jacobian(model, x, y, z_s: float) -> JacobianQuantities:
    """Jacobian quantities of ``model`` at positions ``x, y`` (arcsec) for a source at ``z_s``."""
    return jacobian_quantities(*model.hessian(x, y), dds_over_ds=model.dds_over_ds(z_s))


# ------------------------------------------------------------------------------------------------ polygons
def polygon_area(x, y) -> float:
    """Area enclosed by a polygon (shoelace formula), arcsec^2; the closing vertex may be repeated or not."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygon_centroid(x, y) -> tuple[float, float]:
    """Area centroid of a simple polygon (vertex mean for a degenerate one)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    xs, ys = np.roll(x, -1), np.roll(y, -1)
    cross = x * ys - xs * y
    a = 0.5 * cross.sum()
    if abs(a) < 1e-15:
        return float(x.mean()), float(y.mean())
    return float(((x + xs) * cross).sum() / (6 * a)), float(((y + ys) * cross).sum() / (6 * a))


def points_in_polygon(px, py, x, y) -> np.ndarray:
    """Boolean array: which points ``(px, py)`` lie inside the polygon ``(x, y)``."""
    from matplotlib.path import Path as MplPath

    pts = np.column_stack([np.ravel(px), np.ravel(py)])
    if pts.size == 0:
        return np.zeros(0, dtype=bool)
    return MplPath(np.column_stack([x, y])).contains_points(pts).reshape(np.shape(px))


def equivalent_einstein_radius(x, y) -> float:
    """Circularised Einstein radius ``sqrt(area / pi)`` of a closed critical line (arcsec)."""
    return float(np.sqrt(polygon_area(x, y) / np.pi))


# ------------------------------------------------------------------------------------------------ contours
@dataclasses.dataclass
class CriticalLine:
    """A tangential critical line (arcsec, model frame) and its caustic (``None`` until computed)."""

    x: np.ndarray
    y: np.ndarray
    closed: bool
    caustic_x: np.ndarray | None = None
    caustic_y: np.ndarray | None = None

    @property
    def theta_e_arcsec(self) -> float:
        """Equivalent Einstein radius ``sqrt(area / pi)`` (meaningful for closed lines)."""
        return equivalent_einstein_radius(self.x, self.y)

    @property
    def centroid(self) -> tuple[float, float]:
        """Area centroid."""
        return polygon_centroid(self.x, self.y)


def zero_contours(field: np.ndarray, x_axis: np.ndarray, y_axis: np.ndarray) -> list[CriticalLine]:
    """Zero contours of ``field[iy, ix]`` sampled at ``(x_axis[ix], y_axis[iy])`` (regular axes), in arcsec.

    Closed contours repeat their first vertex at the end (``closed=True``); contours that leave the grid are open.
    """
    from skimage.measure import find_contours

    field = np.asarray(field, dtype=float)
    if field.shape != (len(y_axis), len(x_axis)):
        raise LensSearchError(f"zero_contours: field shape {field.shape} != (len(y_axis), len(x_axis))")
    dx = (x_axis[-1] - x_axis[0]) / (len(x_axis) - 1)
    dy = (y_axis[-1] - y_axis[0]) / (len(y_axis) - 1)
    lines = []
    for contour in find_contours(field, 0.0):
        rows, cols = contour[:, 0], contour[:, 1]
        closed = len(contour) > 3 and bool(np.all(contour[0] == contour[-1]))
        lines.append(CriticalLine(x_axis[0] + cols * dx, y_axis[0] + rows * dy, closed))
    return lines


def grid_axes(center: Sequence[float], half_size_arcsec: float, step_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
    """Axes of a square grid of half-size ``half_size_arcsec`` around ``center``, on the global lattice of step."""
    axes = []
    for c in center:
        lo = np.floor((c - half_size_arcsec) / step_arcsec)
        hi = np.ceil((c + half_size_arcsec) / step_arcsec)
        axes.append(np.arange(lo, hi + 1) * step_arcsec)
    return axes[0], axes[1]


def add_caustics(model, lines: Sequence[CriticalLine], z_s: float) -> list[CriticalLine]:
    """Map critical lines to the source plane with the lens equation (each vertex ray-traced exactly)."""
    for line in lines:
        line.caustic_x, line.caustic_y = model.ray_trace(line.x, line.y, z_s)
    return list(lines)


def tangential_critical_lines(
    model, z_s: float, x_axis: np.ndarray, y_axis: np.ndarray, *, caustics: bool = True
) -> list[CriticalLine]:
    """Tangential critical lines of ``model`` for a source at ``z_s`` on the grid ``x_axis`` x ``y_axis``.

    Parameters
    ----------
    model
        Lens model (``hessian``, ``ray_trace``, ``dds_over_ds``), positions in arcsec.
    z_s
        Source redshift.
    x_axis, y_axis
        Regular grid axes (arcsec); the contour vertices are sub-pixel (linear interpolation of ``lambda_t``).
    caustics
        Also map each line to its caustic.
    """
    xx, yy = np.meshgrid(x_axis, y_axis)
    lam = model_jacobian(model, xx, yy, z_s).lambda_t
    lines = zero_contours(lam, np.asarray(x_axis, float), np.asarray(y_axis, float))
    return add_caustics(model, lines, z_s) if caustics else lines


# ------------------------------------------------------------------------------------------------ hessian on grids
@contextlib.contextmanager
def single_numba_thread():
    """Run the compiled kernels on the calling thread only.

    The near components are evaluated in many small calls, where waking numba's thread pool costs more than the
    work (tens of milliseconds per call on a busy machine); the large node evaluations keep all threads.
    """
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


class GridHessian:
    """Hessian of a model on rectangular grids, exact or with the near/far split of the module docstring.

    Parameters
    ----------
    model
        A lens model. The ``fast`` split needs ``model.components`` (a LensModel); otherwise the model is
        evaluated at every point.
    method
        ``"fast"`` or ``"exact"``.
    near_margin_arcsec, node_step_arcsec
        Components centred within ``near_margin_arcsec`` of a rectangle are exact; the others are interpolated
        from nodes every ``node_step_arcsec`` on a global lattice. The total hessian at the nodes is cached in
        tiles, so overlapping rectangles (members in the cluster core) share it.
    """

    TILE = 8

    def __init__(
        self,
        model,
        method: str = "fast",
        near_margin_arcsec: float = NEAR_MARGIN_ARCSEC,
        node_step_arcsec: float = FAR_NODE_STEP_ARCSEC,
    ) -> None:
        if method not in ("fast", "exact"):
            raise LensSearchError(f"critical lines: method must be 'fast' or 'exact', got {method!r}")
        self.model = model
        self.margin = float(near_margin_arcsec)
        self.step = float(node_step_arcsec)
        components = getattr(model, "components", None)
        self.fast = method == "fast" and components is not None
        self._tiles: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if self.fast:
            self.components = tuple(components)
            self.centres = np.array(
                [
                    (c.params.get("center_x", np.nan), c.params.get("center_y", np.nan))
                    if c.profile not in UNIFORM_PROFILES
                    else (np.nan, np.nan)
                    for c in self.components
                ],
                dtype=float,
            ).reshape(-1, 2)

    def _node_range(self, x0: float, x1: float, y0: float, y1: float) -> tuple[int, int, int, int]:
        """Lattice indices of the spline nodes of a rectangle (two nodes beyond each side)."""
        return (
            int(np.floor(x0 / self.step)) - 2,
            int(np.ceil(x1 / self.step)) + 2,
            int(np.floor(y0 / self.step)) - 2,
            int(np.ceil(y1 / self.step)) + 2,
        )

    def _compute_tiles(self, keys) -> None:
        """Evaluate the whole model on the missing tiles, in one call of the compiled kernels."""
        t = self.TILE
        missing = sorted({k for k in keys if k not in self._tiles})
        if not missing:
            return
        local = np.arange(t)
        xs = np.concatenate([np.tile((a * t + local) * self.step, t) for a, b in missing])
        ys = np.concatenate([np.repeat((b * t + local) * self.step, t) for a, b in missing])
        values = self.model.hessian(xs, ys)
        for k, key in enumerate(missing):
            sl = slice(k * t * t, (k + 1) * t * t)
            self._tiles[key] = tuple(v[sl].reshape(t, t) for v in values)

    def _tile_keys(self, i0: int, i1: int, j0: int, j1: int) -> list[tuple[int, int]]:
        t = self.TILE
        return [(a, b) for b in range(j0 // t, j1 // t + 1) for a in range(i0 // t, i1 // t + 1)]

    def prefetch(self, rectangles) -> None:
        """Evaluate at once the nodes of all ``(x0, x1, y0, y1)`` rectangles (one large parallel call)."""
        if not self.fast:
            return
        keys = set()
        for rect in rectangles:
            keys.update(self._tile_keys(*self._node_range(*rect)))
        self._compute_tiles(keys)

    def _total_at_nodes(self, i0: int, i1: int, j0: int, j1: int):
        """Total hessian at lattice nodes ``x = i step`` (i0..i1), ``y = j step`` (j0..j1), from the tile cache."""
        t = self.TILE
        self._compute_tiles(self._tile_keys(i0, i1, j0, j1))
        tiles_x = range(i0 // t, i1 // t + 1)
        tiles_y = range(j0 // t, j1 // t + 1)
        out = []
        for comp in range(3):
            block = np.vstack([np.hstack([self._tiles[(a, b)][comp] for a in tiles_x]) for b in tiles_y])
            r0, c0 = j0 - tiles_y[0] * t, i0 - tiles_x[0] * t
            out.append(block[r0: r0 + j1 - j0 + 1, c0: c0 + i1 - i0 + 1])
        return out

    def __call__(self, x_axis: np.ndarray, y_axis: np.ndarray):
        """``(f_xx, f_xy, f_yy)`` on the grid, arrays of shape ``(len(y_axis), len(x_axis))``."""
        xx, yy = np.meshgrid(x_axis, y_axis)
        if not self.fast:
            return self.model.hessian(xx, yy)
        from scipy.interpolate import RectBivariateSpline

        from lenssearch.lensing.model import LensModel

        x0, x1, y0, y1 = x_axis[0], x_axis[-1], y_axis[0], y_axis[-1]
        cx, cy = self.centres[:, 0], self.centres[:, 1]
        m = self.margin
        with np.errstate(invalid="ignore"):
            near = (cx > x0 - m) & (cx < x1 + m) & (cy > y0 - m) & (cy < y1 + m)
        i0, i1, j0, j1 = self._node_range(x0, x1, y0, y1)
        xn = np.arange(i0, i1 + 1) * self.step
        yn = np.arange(j0, j1 + 1) * self.step
        far = self._total_at_nodes(i0, i1, j0, j1)
        exact: tuple = (0.0, 0.0, 0.0)
        if near.any():
            near_model = LensModel(
                [c for c, keep in zip(self.components, near) if keep], self.model.z_lens, self.model.cosmology
            )
            xxn, yyn = np.meshgrid(xn, yn)
            with single_numba_thread():
                far = [f - h for f, h in zip(far, near_model.hessian(xxn, yyn))]
                exact = near_model.hessian(xx, yy)
        out = []
        for h_far, h_near in zip(far, exact):
            spline = RectBivariateSpline(yn, xn, h_far, kx=3, ky=3, s=0)
            out.append(spline(y_axis, x_axis) + h_near)
        return tuple(out)


# ------------------------------------------------------------------------------------------------ secondary lines
def _member_arrays(members):
    for col in ("id", "x", "y"):
        if col not in members.colnames:
            raise LensSearchError(f"member table: missing column '{col}' (have {members.colnames})")
    if len(members) == 0:
        raise LensSearchError("member table: no members")
    return (
        np.array([str(v) for v in members["id"]]),
        np.asarray(members["x"], dtype=float),
        np.asarray(members["y"], dtype=float),
    )


def cluster_scale_centres(model, members) -> np.ndarray:
    """Centres (arcsec) of the components that are not members and not uniform (shear): halos, a BCG apart."""
    ids = {str(v) for v in members["id"]}
    centres = [
        (c.params["center_x"], c.params["center_y"])
        for c in getattr(model, "components", ())
        if c.name not in ids and c.profile not in UNIFORM_PROFILES and "center_x" in c.params
    ]
    return np.array(centres, dtype=float).reshape(-1, 2)


@dataclasses.dataclass
class _Candidate:
    line: CriticalLine
    owner: int
    inside: bool
    box_member: int
    centroid: tuple[float, float]
    theta_e: float


def _owner(line: CriticalLine, mx: np.ndarray, my: np.ndarray) -> tuple[int, bool, tuple[float, float]]:
    cxy = line.centroid
    box = (mx >= line.x.min()) & (mx <= line.x.max()) & (my >= line.y.min()) & (my <= line.y.max())
    candidates = np.flatnonzero(box)
    d2 = (mx - cxy[0]) ** 2 + (my - cxy[1]) ** 2
    if candidates.size:
        inside = candidates[points_in_polygon(mx[candidates], my[candidates], line.x, line.y)]
        if inside.size:
            return int(inside[np.argmin(d2[inside])]), True, cxy
    return int(np.argmin(d2)), False, cxy


def _is_primary(line: CriticalLine, centres: np.ndarray) -> bool:
    if len(centres) == 0:
        return False
    return bool(points_in_polygon(centres[:, 0], centres[:, 1], line.x, line.y).any())


def _closed_candidates(lam, x_axis, y_axis, mx, my, centres, box_member) -> list[_Candidate]:
    out = []
    for line in zero_contours(lam, x_axis, y_axis):
        if not line.closed or _is_primary(line, centres):
            continue
        owner, inside, cxy = _owner(line, mx, my)
        out.append(_Candidate(line, owner, inside, box_member, cxy, line.theta_e_arcsec))
    return out


def _merge(candidates: list[_Candidate], tolerance_arcsec: float) -> list[_Candidate]:
    """One candidate per line: same owner and centroids closer than the tolerance (or a tenth of theta_E)."""
    by_owner: dict[int, list[_Candidate]] = {}
    for cand in sorted(candidates, key=lambda c: (c.box_member != c.owner, -c.theta_e)):
        kept = by_owner.setdefault(cand.owner, [])
        tol = max(tolerance_arcsec, 0.1 * cand.theta_e)
        if not any(np.hypot(cand.centroid[0] - k.centroid[0], cand.centroid[1] - k.centroid[1]) < tol for k in kept):
            kept.append(cand)
    return [c for group in by_owner.values() for c in group]


def _refine_axes(cand: _Candidate, resolution: float, margin: float, rectangle: bool = True):
    """Grid axes (or the ``(x0, x1, y0, y1)`` rectangle) on which a candidate is contoured again."""
    line = cand.line
    cx = 0.5 * (line.x.min() + line.x.max())
    cy = 0.5 * (line.y.min() + line.y.max())
    half = 0.5 * max(np.ptp(line.x), np.ptp(line.y)) + margin
    x_axis, y_axis = grid_axes((cx, cy), half, resolution)
    return (x_axis[0], x_axis[-1], y_axis[0], y_axis[-1]) if rectangle else (x_axis, y_axis)


def _refine(cand: _Candidate, hessian: GridHessian, dds_ds: float, resolution: float, margin: float,
            mx, my, centres) -> _Candidate | None:
    """Contour the candidate again at ``resolution`` on its bounding box; None when no line is found there."""
    x_axis, y_axis = _refine_axes(cand, resolution, margin, rectangle=False)
    lam = jacobian_quantities(*hessian(x_axis, y_axis), dds_over_ds=dds_ds).lambda_t
    best, best_d = None, max(3.0 * margin, 0.5 * cand.theta_e)
    for new in _closed_candidates(lam, x_axis, y_axis, mx, my, centres, cand.box_member):
        d = np.hypot(new.centroid[0] - cand.centroid[0], new.centroid[1] - cand.centroid[1])
        if 0.5 < new.theta_e / max(cand.theta_e, 1e-9) < 2.0 and d < best_d:
            best, best_d = new, d
    return best


def _object_column(arrays) -> np.ndarray:
    """A 1-D object array holding one float array per row (never broadcast into a 2-D array)."""
    column = np.empty(len(arrays), dtype=object)
    for k, a in enumerate(arrays):
        column[k] = np.asarray(a, dtype=float)
    return column


def _batch_caustics(model, lines: Sequence[CriticalLine], z_s: float) -> None:
    """Ray-trace the vertices of all lines in one call (one pass of the compiled kernels)."""
    if not lines:
        return
    bx, by = model.ray_trace(np.concatenate([ln.x for ln in lines]), np.concatenate([ln.y for ln in lines]), z_s)
    splits = np.cumsum([len(ln.x) for ln in lines])[:-1]
    for line, cx, cy in zip(lines, np.split(bx, splits), np.split(by, splits)):
        line.caustic_x, line.caustic_y = cx, cy


def secondary_critical_lines(
    model,
    members,
    z_s: float,
    *,
    resolution_arcsec: float,
    search_radius_arcsec: float,
    theta_e_min_arcsec: float,
    theta_e_max_arcsec: float,
    reference_radec: Sequence[float] | None = None,
    cluster_centres: np.ndarray | None = None,
    method: str = "fast",
    member_indices: Sequence[int] | None = None,
    detection_step_arcsec: float | None = None,
    progress: bool = True,
):
    """Catalogue of secondary (galaxy-scale) tangential critical lines for a source at ``z_s``.

    Parameters
    ----------
    model
        A lens model (a LensTool model with ``.model``, ``.members`` and ``.reference_radec`` is unwrapped).
    members
        Table with ``id``, ``x``, ``y`` (arcsec, model frame); ``None`` takes ``model.members``.
    z_s
        Source redshift.
    resolution_arcsec
        Grid step of the refined lines (``field.critical_lines.resolution_arcsec``).
    search_radius_arcsec
        Half-size of the detection box around each member (``field.critical_lines.search_radius_arcsec``).
    theta_e_min_arcsec, theta_e_max_arcsec
        Selection ``theta_min < theta_E < theta_max`` (Angora et al. 2023: 0.2" and 3.5").
    reference_radec
        Model-frame reference (degrees) for the ``ra``/``dec`` columns; default ``model.reference_radec``.
    cluster_centres
        ``(n, 2)`` positions (arcsec) whose enclosing lines are primary; default :func:`cluster_scale_centres`.
    method
        ``"fast"`` (near/far split) or ``"exact"`` (whole model at every grid point).
    member_indices
        Search only around these rows of ``members`` (the owners may still be any member).
    detection_step_arcsec
        Step of the detection grids; default ``max(resolution, theta_e_min / 2)``, which puts a grid node inside
        every line of ``theta_E > theta_e_min`` that surrounds a near-singular galaxy.
    progress
        tqdm progress bar over members.

    Returns
    -------
    astropy.table.Table
        One row per line, sorted by ``theta_e_arcsec`` (descending): ``line_id``, ``member_id``, ``x``, ``y``
        (centroid of the line, arcsec), ``ra``, ``dec``, ``theta_e_arcsec``, ``z_s``, ``member_x``, ``member_y``,
        ``member_inside``, ``area_arcsec2``, ``caustic_area_arcsec2``, ``n_vertices``, and the polygons
        ``critical_x``, ``critical_y``, ``caustic_x``, ``caustic_y`` (object columns of arrays, arcsec).
        ``meta`` records the parameters and the number of closed lines found before the selection.
    """
    from astropy.table import Table
    from tqdm.auto import tqdm

    if hasattr(model, "model") and hasattr(model, "reference_radec"):
        if members is None:
            members = model.members
        if reference_radec is None:
            reference_radec = model.reference_radec
        model = model.model
    if members is None:
        members = getattr(model, "members", None)
    if members is None:
        raise LensSearchError("secondary_critical_lines: no member table given")
    if hasattr(model, "planes") and not hasattr(model, "dds_over_ds"):
        raise LensSearchError(
            f"secondary_critical_lines: {model!r} has lens planes at several redshifts: pass "
            "model.at_source_redshift(z_s) (and cluster_centres) for each source redshift"
        )
    if not (resolution_arcsec > 0 and search_radius_arcsec > 0 and 0 <= theta_e_min_arcsec < theta_e_max_arcsec):
        raise LensSearchError(
            "secondary_critical_lines: need resolution_arcsec > 0, search_radius_arcsec > 0 and "
            f"0 <= theta_e_min < theta_e_max, got {resolution_arcsec}, {search_radius_arcsec}, "
            f"{theta_e_min_arcsec}, {theta_e_max_arcsec}"
        )
    ids, mx, my = _member_arrays(members)
    centres = cluster_scale_centres(model, members) if cluster_centres is None else np.asarray(cluster_centres)
    centres = np.asarray(centres, dtype=float).reshape(-1, 2)
    dds_ds = model.dds_over_ds(z_s)
    # Detection only needs the topology: a cheaper split (1" nodes, 1" margin) and a step of theta_min / 2, which
    # puts a node inside every line with theta_E > theta_min around a (near-singular) galaxy.
    detect = GridHessian(model, method, near_margin_arcsec=1.0, node_step_arcsec=1.0)
    hessian = GridHessian(model, method)
    coarse = detection_step_arcsec or max(resolution_arcsec, theta_e_min_arcsec / 2.0)
    indices = range(len(ids)) if member_indices is None else member_indices

    boxes = {i: grid_axes((mx[i], my[i]), search_radius_arcsec, coarse) for i in indices}
    detect.prefetch([(xa[0], xa[-1], ya[0], ya[-1]) for xa, ya in boxes.values()])
    candidates: list[_Candidate] = []
    for i in tqdm(indices, desc=f"critical lines z_s={z_s:g}", unit="member", disable=not progress, leave=False):
        x_axis, y_axis = boxes[i]
        lam = jacobian_quantities(*detect(x_axis, y_axis), dds_over_ds=dds_ds).lambda_t
        candidates.extend(_closed_candidates(lam, x_axis, y_axis, mx, my, centres, i))
    unique = _merge(candidates, 2.0 * coarse)
    n_closed = len(unique)
    # Lines far outside the selection cannot enter it by refinement (the coarse area is within a few per cent).
    unique = [c for c in unique if 0.5 * theta_e_min_arcsec < c.theta_e < 1.5 * theta_e_max_arcsec]
    margin = 3.0 * coarse + 2.0 * resolution_arcsec
    hessian.prefetch([_refine_axes(c, resolution_arcsec, margin) for c in unique])
    refined = [_refine(c, hessian, dds_ds, resolution_arcsec, margin, mx, my, centres) for c in unique]
    n_lost = sum(r is None for r in refined)
    unique = _merge([r for r in refined if r is not None], 2.0 * resolution_arcsec)
    selected = [c for c in unique if theta_e_min_arcsec < c.theta_e < theta_e_max_arcsec]
    selected.sort(key=lambda c: -c.theta_e)
    _batch_caustics(model, [c.line for c in selected], z_s)

    rows = []
    for k, cand in enumerate(selected, start=1):
        line = cand.line
        rows.append(
            dict(
                line_id=k,
                member_id=ids[cand.owner],
                x=cand.centroid[0],
                y=cand.centroid[1],
                theta_e_arcsec=cand.theta_e,
                z_s=float(z_s),
                member_x=mx[cand.owner],
                member_y=my[cand.owner],
                member_inside=cand.inside,
                area_arcsec2=polygon_area(line.x, line.y),
                caustic_area_arcsec2=polygon_area(line.caustic_x, line.caustic_y),
                n_vertices=len(line.x),
                critical_x=line.x,
                critical_y=line.y,
                caustic_x=line.caustic_x,
                caustic_y=line.caustic_y,
            )
        )
    names = [
        "line_id", "member_id", "x", "y", "theta_e_arcsec", "z_s", "member_x", "member_y", "member_inside",
        "area_arcsec2", "caustic_area_arcsec2", "n_vertices", *POLYGON_COLUMNS,
    ]
    dtypes = [int, str, float, float, float, float, float, float, bool, float, float, int]
    table = Table()
    for name, dtype in zip(names, dtypes):
        table[name] = np.array([r[name] for r in rows], dtype=dtype)
    for name in POLYGON_COLUMNS:
        table[name] = _object_column([r[name] for r in rows])
    if reference_radec is not None:
        from lenssearch.lensing.lenstool import xy_to_radec

        ra, dec = xy_to_radec(np.asarray(table["x"], float), np.asarray(table["y"], float), *reference_radec)
        table.add_column(ra, name="ra", index=4)
        table.add_column(dec, name="dec", index=5)
        table["ra"].unit = table["dec"].unit = "deg"
        table.meta["reference_radec"] = [float(v) for v in reference_radec]
    for col in ("x", "y", "theta_e_arcsec", "member_x", "member_y", *POLYGON_COLUMNS):
        table[col].unit = "arcsec"
    table["area_arcsec2"].unit = table["caustic_area_arcsec2"].unit = "arcsec2"
    table.meta.update(
        z_s=float(z_s),
        dds_over_ds=float(dds_ds),
        resolution_arcsec=float(resolution_arcsec),
        detection_step_arcsec=float(coarse),
        search_radius_arcsec=float(search_radius_arcsec),
        theta_e_min_arcsec=float(theta_e_min_arcsec),
        theta_e_max_arcsec=float(theta_e_max_arcsec),
        method=method,
        n_closed_lines=n_closed,
        n_lost_in_refinement=n_lost,
        primary_criterion="not closed within the member box, or enclosing a cluster-scale component centre",
        cluster_centres=centres.tolist(),
    )
    return table


# ------------------------------------------------------------------------------------------------ drawing
#: ``weighting="uniform"``: the widest theta_E interval one line may stand for (arcsec), so that a lone large line
#: is not drawn for the whole empty range above the others.
UNIFORM_CELL_MAX_ARCSEC = 0.1


def draw_secondary(table, rng: np.random.Generator, theta_min: float | None = None, theta_max: float | None = None,
                   size: int | None = None, weighting: str = "theta_e"):
    """Draw secondary critical lines with probability proportional to ``theta_E`` (Angora et al. 2023, Sect. 3.1).

    ``weighting="uniform"`` draws theta_E (nearly) uniformly over the lines' range instead (HOLISMOKES: Canameras
    et al. 2021 flatten the theta_E distribution): each line is weighted by the theta_E interval it stands for,
    half-way to its neighbours in theta_E, capped at :data:`UNIFORM_CELL_MAX_ARCSEC`.

    Parameters
    ----------
    table
        Catalogue from :func:`secondary_critical_lines` / :func:`read_secondary_catalogue`.
    rng
        The random generator.
    theta_min, theta_max
        Optional extra selection ``theta_min < theta_E < theta_max`` (arcsec) before drawing.
    size
        Number of draws (with replacement); ``None`` for one row.

    Returns
    -------
    astropy.table.Row or astropy.table.Table
        One row (``size=None``) or a table of ``size`` rows.
    """
    theta = np.asarray(table["theta_e_arcsec"], dtype=float)
    ok = np.isfinite(theta) & (theta > 0)
    if theta_min is not None:
        ok &= theta > theta_min
    if theta_max is not None:
        ok &= theta < theta_max
    pool = np.flatnonzero(ok)
    if pool.size == 0:
        raise LensSearchError(
            f"draw_secondary: no critical line with {theta_min} < theta_E < {theta_max} among {len(table)} lines"
        )
    if weighting == "uniform":
        t = theta[pool]
        order = np.argsort(t, kind="stable")
        ts = t[order]
        edges = np.concatenate([[ts[0]], 0.5 * (ts[1:] + ts[:-1]), [ts[-1]]])
        cell = np.minimum(np.diff(edges), UNIFORM_CELL_MAX_ARCSEC)
        cell = np.where(cell > 0, cell, UNIFORM_CELL_MAX_ARCSEC * 1e-3)
        w = np.empty_like(t)
        w[order] = cell
    elif weighting == "theta_e":
        w = theta[pool]
    else:
        raise LensSearchError(f"draw_secondary: weighting must be 'theta_e' or 'uniform', got {weighting!r}")
    p = w / w.sum()
    if size is None:
        return table[int(rng.choice(pool, p=p))]
    return table[rng.choice(pool, size=size, p=p)]


# ------------------------------------------------------------------------------------------------ files
def zs_label(z_s: float) -> str:
    """Redshift label used in file names: 2 -> ``"2.0"``, 1.5 -> ``"1.5"``, 4.25 -> ``"4.25"``."""
    text = f"{z_s:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def polygon_path(path: str | Path) -> Path:
    """The companion polygon file of a catalogue ``<stem>.ecsv``: ``<stem>_polygons.fits``."""
    path = Path(path)
    return path.with_name(path.stem + POLYGON_SUFFIX)


def write_secondary_catalogue(table, path: str | Path) -> tuple[Path, Path]:
    """Write the catalogue as ECSV (scalar columns) plus a FITS binary table of the polygons.

    The FITS file ``<stem>_polygons.fits`` has one row per ``line_id`` and variable-length double columns
    ``critical_x``, ``critical_y``, ``caustic_x``, ``caustic_y`` (arcsec, model frame) and, when the catalogue has
    a reference, ``critical_ra``, ``critical_dec`` (degrees): TOPCAT and astropy read both files.
    """
    from astropy.io import fits
    from astropy.table import Table

    path = Path(path)
    scalar = table.copy(copy_data=True)
    scalar.remove_columns([c for c in POLYGON_COLUMNS if c in scalar.colnames])
    scalar.meta["polygons"] = polygon_path(path).name
    ref = table.meta.get("reference_radec")
    cols = [fits.Column(name="line_id", format="K", array=np.asarray(table["line_id"], dtype=np.int64))]
    polys = {c: [np.asarray(v, dtype=float) for v in table[c]] for c in POLYGON_COLUMNS}
    if ref is not None:
        from lenssearch.lensing.lenstool import xy_to_radec

        radec = [xy_to_radec(px, py, *ref) for px, py in zip(polys["critical_x"], polys["critical_y"])]
        polys["critical_ra"] = [r for r, _ in radec]
        polys["critical_dec"] = [d for _, d in radec]
    for name, arrays in polys.items():
        unit = "deg" if name.endswith(("_ra", "_dec")) else "arcsec"
        cols.append(fits.Column(name=name, format="PD()", unit=unit, array=_object_column(arrays)))
    hdu = fits.BinTableHDU.from_columns(cols, name="POLYGONS")
    hdu.header["ZS"] = (float(table.meta.get("z_s", np.nan)), "source redshift")
    hdu.header["COMMENT"] = "Critical lines and caustics of the secondary catalogue, keyed by line_id."
    with atomic_path(polygon_path(path)) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)
    with atomic_path(path) as tmp:
        describe_columns(Table(scalar)).write(tmp, format="ascii.ecsv")
    return path, polygon_path(path)


def read_secondary_catalogue(path: str | Path):
    """Read a catalogue written by :func:`write_secondary_catalogue`, with its polygons as object columns.

    Raises
    ------
    InputFileError
        Missing or malformed file, or a polygon file whose ``line_id`` do not match the catalogue.
    """
    from astropy.io import fits
    from astropy.table import Table

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such critical-line catalogue")
    try:
        table = Table.read(path, format="ascii.ecsv")
    except Exception as exc:  # astropy raises many types for malformed ECSV
        raise InputFileError(f"{path}: not a readable ECSV catalogue ({exc})") from None
    for col in ("line_id", "theta_e_arcsec"):
        if col not in table.colnames:
            raise InputFileError(f"{path}: missing column '{col}'")
    poly = path.with_name(table.meta.get("polygons", polygon_path(path).name))
    if not poly.exists():
        raise InputFileError(f"{poly}: polygon file of {path.name} is missing")
    with fits.open(poly) as hdul:
        data = hdul["POLYGONS"].data
        line_ids = np.asarray(data["line_id"], dtype=int)
        index = {int(v): k for k, v in enumerate(line_ids)}
        missing = [int(v) for v in table["line_id"] if int(v) not in index]
        if missing:
            raise InputFileError(f"{poly}: no polygons for line_id {missing[:5]} of {path.name}")
        for col in POLYGON_COLUMNS:
            table[col] = _object_column([data[col][index[int(v)]] for v in table["line_id"]])
            table[col].unit = "arcsec"
    return table


def catalogue_summary(table) -> dict:
    """Number of lines and ``theta_E`` statistics (for metrics files)."""
    theta = np.asarray(table["theta_e_arcsec"], dtype=float)
    return {
        "n_lines": int(len(theta)),
        "theta_e_median_arcsec": float(np.median(theta)) if len(theta) else None,
        "theta_e_min_arcsec": float(theta.min()) if len(theta) else None,
        "theta_e_max_arcsec": float(theta.max()) if len(theta) else None,
    }


__all__ = [
    "JacobianQuantities", "jacobian_quantities", "model_jacobian", "polygon_area", "polygon_centroid",
    "points_in_polygon", "equivalent_einstein_radius", "CriticalLine", "zero_contours", "grid_axes",
    "add_caustics", "tangential_critical_lines", "GridHessian", "cluster_scale_centres",
    "secondary_critical_lines", "draw_secondary", "zs_label", "polygon_path", "write_secondary_catalogue",
    "read_secondary_catalogue", "catalogue_summary",
]
