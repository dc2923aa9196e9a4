"""The lens around one cluster member: deflections, the critical line and caustic at any source redshift.

A full cluster model has hundreds of potentials (~264 for the CATS model of Abell S1063); evaluating all of them
on the 512 x 512 sub-pixels of every mock would dominate the simulation. :class:`LocalLens` splits the model
(the same idea as :class:`lenssearch.lensing.critical.GridHessian`):

- *near*: the components centred within ``near_margin`` of the region (the member, its neighbours, a halo or
  BCG if close) are evaluated exactly (:class:`lenssearch.lensing.model.LensModel`, compiled kernels);
- *far*: the rest is the field's deflection map minus the near components, both at the map's pixel centres of a
  window around the region, interpolated by a bicubic spline. The near components hold every singular part, so
  the far field is smooth inside the window and the spline is accurate.

Without a parametric model (a user field given as deflection maps only) the near part is empty and the map is
interpolated directly. All deflections are in arcsec in the model frame at ``D_ds / D_s = 1``.

:meth:`LocalLens.critical_line` recomputes the secondary tangential critical line of the member at the exact
source redshift on a local grid (``lambda_t = 0``, :func:`lenssearch.lensing.critical.zero_contours`), since the
field's catalogues exist only at a few redshift bins; :meth:`LocalLens.caustic` maps it through the lens equation
with exact deflections at its vertices. :func:`count_images` solves the lens equation for a point source on the
local grid by mapping each grid triangle to the source plane (Schneider, Ehlers & Falco 1992, Sect. 5.4; the
method of lenstronomy's ``LensEquationSolver`` and of GLAMER).
"""

from __future__ import annotations

import dataclasses

import numba
import numpy as np

from lenssearch.errors import LensSearchError

#: Components centred within this distance (arcsec) of the region are evaluated exactly; the others are smooth
#: inside the region (bicubic interpolation error < 1e-4" on 0.1" map pixels at 1" from a member's centre).
NEAR_MARGIN_ARCSEC = 1.0
#: Map pixels added around the window of the far-field spline.
WINDOW_MARGIN_PIXELS = 3
#: Profiles without a centre are part of the smooth far field.
UNIFORM_PROFILES = frozenset({"shear"})


@dataclasses.dataclass
class SecondaryLine:
    """A member's tangential critical line at one source redshift, with its caustic (arcsec, model frame)."""

    x: np.ndarray
    y: np.ndarray
    caustic_x: np.ndarray
    caustic_y: np.ndarray
    theta_e_arcsec: float
    z_s: float


class LocalLens:
    """Deflections around ``centre`` from a lens model and/or a deflection map (see the module docstring).

    Parameters
    ----------
    centre
        ``(x, y)`` of the member (arcsec, model frame).
    half_size_arcsec
        Half-size of the square region where deflections will be requested.
    model
        A :class:`~lenssearch.lensing.model.LensModel` (or ``None`` for a map-only field).
    deflection_map
        A :class:`~lenssearch.lensing.deflection_maps.DeflectionMap` (or ``None``: then the far field comes from
        the model at nodes every ``far_node_step_arcsec``).
    exclude_centres
        Optional ``(k, 2)`` array of cluster-scale component centres (halos, a BCG modelled apart): a closed line
        that encloses one of them is primary, not a galaxy-scale line.
    required_half_size_arcsec
        The part of the region that the deflection map must cover (the cutout); beyond it, where the map ends
        (members near the edge of a field), the far field comes from the model at nodes. Without a model the
        whole region must be covered. Not covered: LensSearchError naming the map.
    """

    def __init__(self, centre, half_size_arcsec: float, model=None, deflection_map=None,
                 exclude_centres=None, far_node_step_arcsec: float = 0.25, source: str = "field",
                 required_half_size_arcsec: float | None = None) -> None:
        if model is None and deflection_map is None:
            raise LensSearchError(f"{source}: a local lens needs a lens model or a deflection map")
        self.centre = (float(centre[0]), float(centre[1]))
        self.half = float(half_size_arcsec)
        self.source = source
        self.exclude_centres = np.zeros((0, 2)) if exclude_centres is None else np.asarray(exclude_centres, float)
        self.near = None
        if model is not None:
            self.z_lens = model.z_lens
            self.cosmology = model.cosmology
            self.near = self._near_model(model)
        else:
            self.z_lens = deflection_map.z_lens
            self.cosmology = deflection_map.cosmology
        if deflection_map is not None:
            # the map must cover the required region (the cutout); beyond it, the model may take over
            need = self.half if required_half_size_arcsec is None else min(required_half_size_arcsec, self.half)
            self._map_window(deflection_map, need)
            window = self._map_window(deflection_map, self.half, check=model is None)
            if window is not None:
                self._far_from_map(deflection_map, window)
            else:
                self._far_from_model(model, far_node_step_arcsec)
        else:
            self._far_from_model(model, far_node_step_arcsec)

    # ------------------------------------------------------------------------------------------ construction
    def _near_model(self, model):
        from lenssearch.lensing.model import LensModel

        cx, cy = self.centre
        reach = self.half + NEAR_MARGIN_ARCSEC
        keep = []
        for comp in model.components:
            if comp.profile in UNIFORM_PROFILES or "center_x" not in comp.params:
                continue
            if abs(comp.params["center_x"] - cx) < reach and abs(comp.params["center_y"] - cy) < reach:
                keep.append(comp)
        return LensModel(keep, model.z_lens, model.cosmology) if keep else None

    def _near_deflection(self, x, y):
        if self.near is None:
            return np.zeros(np.shape(x)), np.zeros(np.shape(x))
        return self.near.deflection(x, y)

    def _map_window(self, dmap, half: float, check: bool = True):
        """Map pixel window ``(c0, c1, r0, r1)`` covering ``+-half`` around the centre (plus the spline margin).

        When the map does not cover it: raise LensSearchError (``check``) or return None.
        """
        cx, cy = self.centre
        corners_x = np.array([cx - half, cx + half, cx - half, cx + half])
        corners_y = np.array([cy - half, cy - half, cy + half, cy + half])
        col, row = dmap.xy_to_pixel(corners_x, corners_y)
        ny, nx = dmap.shape
        m = WINDOW_MARGIN_PIXELS
        c0, c1 = int(np.floor(col.min())) - m, int(np.ceil(col.max())) + m
        r0, r1 = int(np.floor(row.min())) - m, int(np.ceil(row.max())) + m
        if c0 < 0 or r0 < 0 or c1 > nx - 1 or r1 > ny - 1:
            if not check:
                return None
            raise LensSearchError(
                f"{dmap.source}: the deflection map ({nx} x {ny} pixels) does not cover the region of "
                f"+-{half:.2f}\" around ({cx:.2f}, {cy:.2f})\" (needs pixels columns {c0}..{c1}, rows {r0}..{r1})"
            )
        return c0, c1, r0, r1

    def _far_from_map(self, dmap, window) -> None:
        from scipy.interpolate import RectBivariateSpline

        c0, c1, r0, r1 = window
        rows = np.arange(r0, r1 + 1)
        cols = np.arange(c0, c1 + 1)
        # model-frame positions of the window's pixels: linear in the pixel index (the WCS is a TAN projection;
        # over a few arcsec the non-linearity is < 1e-9")
        col_c, row_c = 0.5 * (c0 + c1), 0.5 * (r0 + r1)
        x_c, y_c = self._pixel_to_xy(dmap, col_c, row_c)
        self._map_origin = (col_c, row_c, x_c, y_c)
        self._map_inverse = dmap._inverse
        matrix = dmap.matrix
        cc, rr = np.meshgrid(cols - col_c, rows - row_c)
        xw = x_c + matrix[0, 0] * cc + matrix[0, 1] * rr
        yw = y_c + matrix[1, 0] * cc + matrix[1, 1] * rr
        nx_, ny_ = self._near_deflection(xw, yw)
        far_x = dmap.alpha_x[r0 : r1 + 1, c0 : c1 + 1] - nx_
        far_y = dmap.alpha_y[r0 : r1 + 1, c0 : c1 + 1] - ny_
        self._far = tuple(RectBivariateSpline(rows - row_c, cols - col_c, f, kx=3, ky=3, s=0) for f in (far_x, far_y))
        self._far_kind = "map"

    @staticmethod
    def _pixel_to_xy(dmap, col, row):
        from lenssearch.lensing.lenstool import radec_to_xy

        ra, dec = dmap.wcs.pixel_to_world_values(np.array([col]), np.array([row]))
        x, y = radec_to_xy(ra, dec, *dmap.reference_radec)
        return float(np.ravel(x)[0]), float(np.ravel(y)[0])

    def _far_from_model(self, model, step: float) -> None:
        from scipy.interpolate import RectBivariateSpline

        cx, cy = self.centre
        h = self.half + 3 * step
        xn = cx + np.arange(-np.ceil(h / step), np.ceil(h / step) + 1) * step
        yn = cy + np.arange(-np.ceil(h / step), np.ceil(h / step) + 1) * step
        xx, yy = np.meshgrid(xn, yn)
        ax, ay = model.deflection(xx, yy)
        nx_, ny_ = self._near_deflection(xx, yy)
        self._far = tuple(RectBivariateSpline(yn - cy, xn - cx, f, kx=3, ky=3, s=0) for f in (ax - nx_, ay - ny_))
        self._far_kind = "model"

    # ------------------------------------------------------------------------------------------ lensing
    def far_deflection(self, x, y):
        """The smooth far-field deflection (spline) at model-frame positions."""
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        if self._far_kind == "map":
            col_c, row_c, x_c, y_c = self._map_origin
            inv = self._map_inverse
            dx, dy = x - x_c, y - y_c
            u = inv[0, 0] * dx + inv[0, 1] * dy  # column offset
            v = inv[1, 0] * dx + inv[1, 1] * dy  # row offset
        else:
            u, v = x - self.centre[0], y - self.centre[1]
        return self._far[0].ev(v, u), self._far[1].ev(v, u)

    def deflection(self, x, y):
        """Total deflection (arcsec, ``D_ds / D_s = 1``) at model-frame positions inside the region."""
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        fx, fy = self.far_deflection(x, y)
        nx_, ny_ = self._near_deflection(x, y)
        return fx + nx_, fy + ny_

    def deflection_on_grid(self, x_axis, y_axis):
        """Total deflection on the grid ``x_axis`` x ``y_axis`` (arrays of shape ``(len(y), len(x))``).

        The far spline is evaluated with its separable (tensor-product) form, much faster than point by point,
        when the map's pixel axes are the model frame's (North-up maps).
        """
        x_axis = np.asarray(x_axis, float)
        y_axis = np.asarray(y_axis, float)
        xx, yy = np.meshgrid(x_axis, y_axis)
        separable = self._far_kind == "model" or (
            abs(self._map_inverse[0, 1]) < 1e-12 and abs(self._map_inverse[1, 0]) < 1e-12)
        if separable:
            if self._far_kind == "map":
                _, _, x_c, y_c = self._map_origin
                u = self._map_inverse[0, 0] * (x_axis - x_c)
                v = self._map_inverse[1, 1] * (y_axis - y_c)
            else:
                u, v = x_axis - self.centre[0], y_axis - self.centre[1]
            fx, fy = (self._spline_grid(spl, v, u) for spl in self._far)
        else:
            fx, fy = self.far_deflection(xx, yy)
        nx_, ny_ = self._near_deflection(xx, yy)
        return fx + nx_, fy + ny_

    @staticmethod
    def _spline_grid(spline, v, u):
        """``spline`` on the grid ``v`` x ``u`` (any order of the axes: FITPACK wants increasing ones)."""
        iv, iu = np.argsort(v), np.argsort(u)
        out = spline(v[iv], u[iu], grid=True)
        res = np.empty_like(out)
        res[np.ix_(iv, iu)] = out
        return res

    def dds_over_ds(self, z_s: float) -> float:
        return self.cosmology.dds_over_ds(self.z_lens, z_s)

    def ray_trace(self, x, y, z_s: float):
        ax, ay = self.deflection(x, y)
        f = self.dds_over_ds(z_s)
        return np.asarray(x) - f * ax, np.asarray(y) - f * ay

    # ------------------------------------------------------------------------------------------ lens grid
    def grid(self, half_size_arcsec: float, step_arcsec: float) -> "LensGrid":
        """Deflections on a square grid around the member (for critical lines, images, magnification)."""
        if half_size_arcsec > self.half + 1e-9:
            raise LensSearchError(f"local lens: grid half-size {half_size_arcsec} exceeds the region {self.half}")
        n = int(np.floor(half_size_arcsec / step_arcsec))
        axis = np.arange(-n, n + 1) * step_arcsec
        x_axis, y_axis = self.centre[0] + axis, self.centre[1] + axis
        ax, ay = self.deflection_on_grid(x_axis, y_axis)
        return LensGrid(self, x_axis, y_axis, ax, ay)


class IsolatedLens(LocalLens):
    """A galaxy-scale lens in the field: one mass component (the member as a field elliptical, :func:`field_sie`)
    and an external shear.

    Galaxy-scale lenses outside cluster cores (the HOLISMOKES and SLACS lenses) are a massive galaxy with a weak
    external shear from its surroundings, not a member on top of the cluster's convergence and strong shear. This
    lens has ``member_component`` and a shear ``gamma`` at angle ``angle_deg`` centred on it; nothing of the
    cluster. It overrides :class:`LocalLens`'s deflections and inherits the rest (ray tracing, the lens grid).
    """

    def __init__(self, centre, member_component, gamma: float, angle_deg: float, z_lens: float, cosmology) -> None:
        from lenssearch.lensing.model import LensComponent, LensModel

        self.centre = (float(centre[0]), float(centre[1]))
        self.half = np.inf  # analytic everywhere: any grid size (LocalLens.grid)
        self.exclude_centres = np.zeros((0, 2))
        self.z_lens = float(z_lens)
        self.cosmology = cosmology
        shear = LensComponent("shear", {"gamma": float(gamma), "angle_deg": float(angle_deg),
                                        "center_x": self.centre[0], "center_y": self.centre[1]}, "external shear")
        self.model = LensModel([member_component, shear], self.z_lens, cosmology)

    def deflection(self, x, y):
        return self.model.deflection(np.asarray(x, float), np.asarray(y, float))

    def deflection_on_grid(self, x_axis, y_axis):
        xx, yy = np.meshgrid(np.asarray(x_axis, float), np.asarray(y_axis, float))
        return self.model.deflection(xx, yy)


#: Speed of light (km/s) and radians -> arcsec, for the isothermal Einstein radius 4 pi (sigma / c)^2.
C_KMS = 299792.458
RAD_TO_ARCSEC = 206264.80624709636


def field_sie(component, sigma_scale: float, source: str = "field"):
    """The member as a field elliptical: an SIE of velocity dispersion ``sigma_scale`` x the member's dPIE sigma
    (cluster members are tidally stripped and their potfile's sigma* is lower than field ellipticals'), axis ratio
    and orientation of the dPIE's mass ellipticity (LensTool's ``emass`` = (a^2 - b^2)/(a^2 + b^2)), untruncated.
    Its Einstein radius at ``D_ds/D_s = 1`` is ``4 pi (sigma / c)^2``."""
    from lenssearch.lensing.model import LensComponent

    p = component.params
    if "sigma_kms" not in p:
        raise LensSearchError(f"{source}: an isolated lens needs the member's dPIE velocity dispersion, got profile "
                              f"'{component.profile}'")
    sigma = float(p["sigma_kms"]) * float(sigma_scale)
    e = min(max(float(p.get("emass", 0.0)), 0.0), 0.6)
    q = float(np.sqrt((1.0 - e) / (1.0 + e)))
    theta = 4.0 * np.pi * (sigma / C_KMS) ** 2 * RAD_TO_ARCSEC
    return LensComponent("sie", {"theta_e_arcsec": theta, "q": q, "angle_deg": float(p.get("angle_deg", 0.0)),
                                 "center_x": float(p["center_x"]), "center_y": float(p["center_y"])},
                         f"{component.name} as a field SIE")


def member_component(model, centre, match_arcsec: float = 0.05, source: str = "field"):
    """The mass component of ``model`` centred on a member (the nearest within ``match_arcsec``)."""
    best, best_d = None, match_arcsec
    for comp in model.components:
        if comp.profile in UNIFORM_PROFILES or "center_x" not in comp.params:
            continue
        d = float(np.hypot(comp.params["center_x"] - centre[0], comp.params["center_y"] - centre[1]))
        if d <= best_d:
            best, best_d = comp, d
    if best is None:
        raise LensSearchError(f"{source}: no mass component within {match_arcsec}\" of the member at "
                              f"({centre[0]:.2f}, {centre[1]:.2f})\" (an isolated lens needs the member's own mass)")
    return best


@dataclasses.dataclass
class LensGrid:
    """Deflections ``alpha_x, alpha_y`` (``D_ds / D_s = 1``) on the grid ``x_axis`` x ``y_axis`` of a local lens."""

    lens: LocalLens
    x_axis: np.ndarray
    y_axis: np.ndarray
    alpha_x: np.ndarray
    alpha_y: np.ndarray

    def __post_init__(self) -> None:
        self.step = float(self.x_axis[1] - self.x_axis[0])
        # hessian by second-order central differences of the deflection (first order on the border)
        axy, axx = np.gradient(self.alpha_x, self.step)
        ayy, ayx = np.gradient(self.alpha_y, self.step)
        self.f_xx, self.f_xy, self.f_yy = axx, 0.5 * (axy + ayx), ayy
        # convergence and shear modulus at D_ds/D_s = 1: both scale linearly with D_ds/D_s
        self.kappa1 = 0.5 * (axx + ayy)
        self.gamma1 = np.hypot(0.5 * (axx - ayy), self.f_xy)
        self.xx, self.yy = np.meshgrid(self.x_axis, self.y_axis)

    def lambda_t(self, z_s: float) -> np.ndarray:
        """Tangential eigenvalue ``1 - kappa - gamma`` for a source at ``z_s``."""
        return 1.0 - self.lens.dds_over_ds(z_s) * (self.kappa1 + self.gamma1)

    def magnification(self, z_s: float) -> np.ndarray:
        """Signed magnification ``1 / ((1 - kappa)^2 - gamma^2)`` for a source at ``z_s``."""
        f = self.lens.dds_over_ds(z_s)
        with np.errstate(divide="ignore"):
            return 1.0 / ((1.0 - f * self.kappa1) ** 2 - (f * self.gamma1) ** 2)

    def critical_line(self, z_s: float) -> SecondaryLine | None:
        """The member's closed tangential critical line at ``z_s`` (largest closed ``lambda_t = 0`` contour that
        encloses the member and no cluster-scale centre), with its caustic; ``None`` if there is none."""
        from lenssearch.lensing.critical import equivalent_einstein_radius, points_in_polygon, zero_contours

        cx, cy = self.lens.centre
        best, best_theta = None, 0.0
        for line in zero_contours(self.lambda_t(z_s), self.x_axis, self.y_axis):
            if not line.closed:
                continue
            if not points_in_polygon(np.array([cx]), np.array([cy]), line.x, line.y)[0]:
                continue
            ex = self.lens.exclude_centres
            if len(ex) and points_in_polygon(ex[:, 0], ex[:, 1], line.x, line.y).any():
                continue
            theta = equivalent_einstein_radius(line.x, line.y)
            if theta > best_theta:
                best, best_theta = line, theta
        if best is None:
            return None
        bx, by = self.lens.ray_trace(best.x, best.y, z_s)
        return SecondaryLine(np.asarray(best.x), np.asarray(best.y), bx, by, best_theta, float(z_s))

    def source_positions(self, z_s: float):
        """Source-plane positions of the grid nodes."""
        f = self.lens.dds_over_ds(z_s)
        return self.xx - f * self.alpha_x, self.yy - f * self.alpha_y


def sample_in_caustic(rng: np.random.Generator, caustic_x, caustic_y, buffer_arcsec: float,
                      max_batches: int = 50, batch: int = 256):
    """A point drawn uniformly in the caustic (even-odd rule) grown by ``buffer_arcsec``.

    Rejection sampling in the bounding box grown by the buffer: a candidate is accepted when it is inside the
    polygon or closer than the buffer to one of its edges. Returns ``(x, y)`` or ``None``.
    """
    from lenssearch.lensing.critical import points_in_polygon

    px = np.asarray(caustic_x, float)
    py = np.asarray(caustic_y, float)
    x0, x1 = px.min() - buffer_arcsec, px.max() + buffer_arcsec
    y0, y1 = py.min() - buffer_arcsec, py.max() + buffer_arcsec
    ax, ay = px[:-1], py[:-1]
    ex, ey = np.diff(px), np.diff(py)
    len2 = np.maximum(ex * ex + ey * ey, 1e-30)
    for _ in range(max_batches):
        cx = rng.uniform(x0, x1, batch)
        cy = rng.uniform(y0, y1, batch)
        ok = points_in_polygon(cx, cy, px, py)
        if buffer_arcsec > 0:
            t = np.clip(((cx[:, None] - ax) * ex + (cy[:, None] - ay) * ey) / len2, 0.0, 1.0)
            d2 = (cx[:, None] - ax - t * ex) ** 2 + (cy[:, None] - ay - t * ey) ** 2
            ok |= d2.min(axis=1) <= buffer_arcsec**2
        hits = np.flatnonzero(ok)
        if hits.size:
            return float(cx[hits[0]]), float(cy[hits[0]])
    return None


@numba.njit(cache=True)
def _triangle_hits(bx, by):
    """Grid triangles whose source-plane image contains the origin: ``(row, col, fractional row, col)``."""
    ny, nx = bx.shape
    out = []
    for r in range(ny - 1):
        for c in range(nx - 1):
            xa, ya = bx[r, c], by[r, c]
            xb, yb = bx[r, c + 1], by[r, c + 1]
            xc, yc = bx[r + 1, c], by[r + 1, c]
            xd, yd = bx[r + 1, c + 1], by[r + 1, c + 1]
            # quick rejection: the cell's mapped corners all on one side of the origin
            if (xa > 0 and xb > 0 and xc > 0 and xd > 0) or (xa < 0 and xb < 0 and xc < 0 and xd < 0):
                continue
            if (ya > 0 and yb > 0 and yc > 0 and yd > 0) or (ya < 0 and yb < 0 and yc < 0 and yd < 0):
                continue
            # triangles (a, b, c) and (d, c, b)
            for t in range(2):
                if t == 0:
                    p0x, p0y, p1x, p1y, p2x, p2y = xa, ya, xb, yb, xc, yc
                    fr, fc = 1.0 / 3.0, 1.0 / 3.0
                else:
                    p0x, p0y, p1x, p1y, p2x, p2y = xd, yd, xc, yc, xb, yb
                    fr, fc = 2.0 / 3.0, 2.0 / 3.0
                d0 = p0x * p1y - p0y * p1x
                d1 = p1x * p2y - p1y * p2x
                d2 = p2x * p0y - p2y * p0x
                if (d0 >= 0 and d1 >= 0 and d2 >= 0) or (d0 <= 0 and d1 <= 0 and d2 <= 0):
                    out.append((r, c, r + fr, c + fc))
    return out


def count_images(beta_x: np.ndarray, beta_y: np.ndarray, x_axis, y_axis, source_x: float, source_y: float,
                 magnification: np.ndarray | None = None, min_abs_magnification: float = 0.0,
                 merge_arcsec: float | None = None):
    """Images of a point source: grid triangles whose source-plane image contains the source.

    Each grid cell is split into two triangles; a triangle whose mapped vertices enclose ``(source_x, source_y)``
    holds one image (sign test of the three cross products). Solutions closer than ``merge_arcsec`` (default two
    grid steps) are one image. With ``magnification`` (on the grid), images with ``|mu| < min_abs_magnification``
    are dropped (the highly demagnified central image of a cored lens).

    Returns
    -------
    (x, y, mu)
        Image positions (arcsec) and magnifications (NaN without ``magnification``).
    """
    bx = np.ascontiguousarray(beta_x - source_x, dtype=np.float64)
    by = np.ascontiguousarray(beta_y - source_y, dtype=np.float64)
    step = float(x_axis[1] - x_axis[0])
    merge = 2.0 * step if merge_arcsec is None else merge_arcsec
    images: list[list[float]] = []
    for r, c, fr, fc in _triangle_hits(bx, by):
        x = x_axis[0] + fc * step
        y = y_axis[0] + fr * step
        for img in images:
            if np.hypot(img[0] - x, img[1] - y) < merge:
                break
        else:
            mu = float(magnification[r, c]) if magnification is not None else np.nan
            images.append([x, y, mu])
    if magnification is not None and min_abs_magnification > 0:
        images = [img for img in images if abs(img[2]) >= min_abs_magnification]
    arr = np.array(images, dtype=float).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]
