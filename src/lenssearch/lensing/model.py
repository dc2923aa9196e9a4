"""A lens model: a sum of mass components at one lens redshift.

:class:`LensComponent` is one profile of :data:`lenssearch.lensing.profiles.PROFILES` with its parameters;
:class:`LensModel` sums the deflections, hessians and convergences of its components (arcsec, at
``D_ds / D_s = 1``) and ray-traces image-plane positions to a source plane at ``z_s`` with the lens equation
``beta = theta - D_ds/D_s(z_l, z_s) alpha(theta)`` (Schneider, Ehlers & Falco 1992, eq. 5.9).

Speed: the dPIE components (hundreds in a cluster model) are evaluated by compiled numba kernels
(:mod:`lenssearch.lensing.profiles._kernels`) looping over points in parallel; the numpy implementation of each
profile remains the reference (``fast=False``), and the tests check that both agree.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Iterable, Mapping, Sequence

import numpy as np

from lenssearch.errors import LensSearchError
from lenssearch.lensing.cosmology import Cosmology
from lenssearch.lensing.profiles import PROFILES

#: Points per call of the compiled kernels (bounds the memory of temporaries for huge grids).
CHUNK_POINTS = 1 << 20
#: Below this many points the single-threaded kernels are used (a thread pool costs more than it saves, and on a
#: busy machine waiting for the second thread dominates the Newton iterations of lenstool-check).
SERIAL_POINTS = 2048


@dataclasses.dataclass(frozen=True)
class LensComponent:
    """One mass component: a profile name of ``PROFILES``, its parameters and an optional name.

    Parameters
    ----------
    profile
        Key of :data:`lenssearch.lensing.profiles.PROFILES` (``"sis"``, ``"sie"``, ``"dpie"``, ``"shear"``).
    params
        Keyword parameters of the profile (positions and radii in arcsec, angles in degrees); omitted ones take
        the profile's defaults. Stored completed and read-only.
    name
        A label (e.g. LensTool's potential name or the member id).
    """

    profile: str
    params: Mapping[str, float]
    name: str = ""

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise LensSearchError(
                f"lens component '{self.name}': unknown profile '{self.profile}', expected one of {sorted(PROFILES)}"
            )
        try:
            full = PROFILES[self.profile].check_params(dict(self.params))
        except LensSearchError as exc:
            raise LensSearchError(f"lens component '{self.name}': {exc}") from None
        object.__setattr__(self, "params", types.MappingProxyType(full))

    @property
    def profile_class(self):
        """The profile class of this component."""
        return PROFILES[self.profile]

    def deflection(self, x, y):
        """Deflection of this component alone (arcsec, ``D_ds / D_s = 1``)."""
        return self.profile_class.deflection(x, y, **self.params)

    def hessian(self, x, y):
        """Hessian of this component alone."""
        return self.profile_class.hessian(x, y, **self.params)

    def convergence(self, x, y):
        """Convergence of this component alone."""
        return self.profile_class.convergence(x, y, **self.params)

    def with_params(self, **changes) -> "LensComponent":
        """A copy with some parameters changed."""
        return LensComponent(self.profile, {**self.params, **changes}, self.name)


class LensModel:
    """A sum of mass components at redshift ``z_lens``.

    Parameters
    ----------
    components
        The :class:`LensComponent` s.
    z_lens
        Lens redshift.
    cosmology
        Distances for :meth:`ray_trace`; defaults to ``Cosmology()`` (H0 = 70, Om0 = 0.3).
    members
        Optional table of cluster members (see :func:`lenssearch.lensing.lenstool.read_member_catalogue`).
    """

    def __init__(
        self,
        components: Iterable[LensComponent],
        z_lens: float,
        cosmology: Cosmology | None = None,
        members=None,
    ) -> None:
        self.components: tuple[LensComponent, ...] = tuple(components)
        for comp in self.components:
            if not isinstance(comp, LensComponent):
                raise LensSearchError(f"lens model: expected LensComponent, got {type(comp).__name__}")
        if not z_lens > 0:
            raise LensSearchError(f"lens model: z_lens must be positive, got {z_lens!r}")
        self.z_lens = float(z_lens)
        self.cosmology = cosmology if cosmology is not None else Cosmology()
        self.members = members
        self._packed_dpie = None
        self._others: tuple[LensComponent, ...] | None = None

    def __len__(self) -> int:
        return len(self.components)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for comp in self.components:
            counts[comp.profile] = counts.get(comp.profile, 0) + 1
        return f"LensModel(z_lens={self.z_lens}, components={counts}, cosmology={self.cosmology!r})"

    # ------------------------------------------------------------------------------------------ internals
    def _split(self):
        """Pack the dPIE components for the compiled kernels (once)."""
        if self._others is None:
            from lenssearch.lensing.profiles._kernels import pack_dpie

            dpies = [c.params for c in self.components if c.profile == "dpie"]
            self._packed_dpie = pack_dpie(dpies)
            self._others = tuple(c for c in self.components if c.profile != "dpie")
        return self._packed_dpie, self._others

    @staticmethod
    def _flat(x, y):
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        x, y = np.broadcast_arrays(x, y)
        return x.shape, np.ascontiguousarray(x.ravel()), np.ascontiguousarray(y.ravel())

    def _kernel_sum(self, kernel, serial_kernel, x, y, n_out):
        """Run a compiled kernel over chunks of points; returns ``n_out`` flat arrays."""
        packed, _ = self._split()
        out = [np.zeros(x.size) for _ in range(n_out)]
        if packed.shape[0] == 0 or x.size == 0:
            return out
        if x.size < SERIAL_POINTS:
            return list(serial_kernel(x, y, packed))
        for start in range(0, x.size, CHUNK_POINTS):
            stop = min(start + CHUNK_POINTS, x.size)
            res = kernel(x[start:stop], y[start:stop], packed)
            for o, r in zip(out, res):
                o[start:stop] = r
        return out

    # ------------------------------------------------------------------------------------------ lensing
    def deflection(self, x, y, fast: bool = True):
        """Total deflection ``(alpha_x, alpha_y)`` in arcsec at ``D_ds / D_s = 1``.

        Parameters
        ----------
        x, y
            Image-plane positions in arcsec (arrays of any broadcastable shapes, or scalars).
        fast
            Use the compiled kernels for the dPIE components (default); ``False`` sums the numpy reference.
        """
        shape, xf, yf = self._flat(x, y)
        if fast:
            from lenssearch.lensing.profiles._kernels import dpie_deflection, dpie_deflection_serial

            ax, ay = self._kernel_sum(dpie_deflection, dpie_deflection_serial, xf, yf, 2)
            components = self._split()[1]
        else:
            ax, ay = np.zeros(xf.size), np.zeros(xf.size)
            components = self.components
        for comp in components:
            gx, gy = comp.deflection(xf, yf)
            ax += gx
            ay += gy
        return ax.reshape(shape), ay.reshape(shape)

    def hessian(self, x, y, fast: bool = True):
        """Total hessian ``(f_xx, f_xy, f_yy)`` of the lensing potential at ``D_ds / D_s = 1``."""
        shape, xf, yf = self._flat(x, y)
        if fast:
            from lenssearch.lensing.profiles._kernels import dpie_hessian, dpie_hessian_serial

            f_xx, f_xy, f_yy = self._kernel_sum(dpie_hessian, dpie_hessian_serial, xf, yf, 3)
            components = self._split()[1]
        else:
            f_xx, f_xy, f_yy = (np.zeros(xf.size) for _ in range(3))
            components = self.components
        for comp in components:
            hxx, hxy, hyy = comp.hessian(xf, yf)
            f_xx += hxx
            f_xy += hxy
            f_yy += hyy
        return f_xx.reshape(shape), f_xy.reshape(shape), f_yy.reshape(shape)

    def convergence(self, x, y, fast: bool = True):
        """Total convergence at ``D_ds / D_s = 1`` (half the trace of the hessian on the fast path)."""
        if fast:
            f_xx, _, f_yy = self.hessian(x, y, fast=True)
            return 0.5 * (f_xx + f_yy)
        shape, xf, yf = self._flat(x, y)
        kappa = np.zeros(xf.size)
        for comp in self.components:
            kappa += comp.convergence(xf, yf)
        return kappa.reshape(shape)

    def dds_over_ds(self, z_s: float) -> float:
        """Lensing efficiency ``D_ds / D_s`` for a source at ``z_s``."""
        return self.cosmology.dds_over_ds(self.z_lens, z_s)

    def ray_trace(self, x, y, z_s: float, fast: bool = True):
        """Source-plane positions ``beta = theta - D_ds/D_s alpha(theta)`` (arcsec) for a source at ``z_s``."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        ax, ay = self.deflection(x, y, fast=fast)
        f = self.dds_over_ds(z_s)
        return x - f * ax, y - f * ay

    def jacobian(self, x, y, z_s: float, fast: bool = True):
        """Lens-equation Jacobian ``A = d beta / d theta`` as ``(a11, a12, a22)`` for a source at ``z_s``."""
        f_xx, f_xy, f_yy = self.hessian(x, y, fast=fast)
        f = self.dds_over_ds(z_s)
        return 1.0 - f * f_xx, -f * f_xy, 1.0 - f * f_yy

    def select(self, names: Sequence[str] | None = None, profiles: Sequence[str] | None = None) -> "LensModel":
        """A model with only the components whose name (or profile) is listed."""
        keep = [
            c
            for c in self.components
            if (names is None or c.name in names) and (profiles is None or c.profile in profiles)
        ]
        return LensModel(keep, self.z_lens, self.cosmology, self.members)

    def without(self, names: Sequence[str]) -> "LensModel":
        """A model without the named components (e.g. a member, to isolate its own contribution)."""
        drop = set(names)
        return LensModel([c for c in self.components if c.name not in drop], self.z_lens, self.cosmology, self.members)

    def jacobian_matrix(self, x, y, z_s: float, fast: bool = True):
        """The four entries ``(a11, a12, a21, a22)`` of ``A = d beta / d theta`` (``a21 = a12`` on one plane)."""
        a11, a12, a22 = self.jacobian(x, y, z_s, fast=fast)
        return a11, a12, a12, a22


class MultiPlaneLensModel:
    """Lens planes at several redshifts, ray-traced through in order of redshift.

    The recursive lens equation (Schneider, Ehlers & Falco 1992, Sect. 9.1; Petkova et al. 2014, eq. 2): with
    the planes ``i = 1..N`` at ``z_1 < z_2 < ...`` and the deflections ``alpha_i`` of each plane at
    ``D_ds / D_s = 1`` (that is, the physical deflection angle, the convention of this package),

        theta_1 = theta,
        theta_j = theta - sum_{i < j} (D_{i j} / D_j) alpha_i(theta_i),
        beta    = theta_{s},  the plane j = s being the source at z_s,

    and its Jacobian ``A_j = I - sum_{i < j} (D_{i j} / D_j) H_i(theta_i) A_i`` (not symmetric in general). Only the
    planes in front of the source (``z_i < z_s``) deflect it. ``D_{ij}`` are angular-diameter distances of the
    model's cosmology. With one plane this is ``beta = theta - D_ds/D_s alpha(theta)`` of :class:`LensModel`.

    Parameters
    ----------
    planes
        One :class:`LensModel` per lens redshift (sorted here by ``z_lens``; planes at the same redshift are merged).
    cosmology
        Distances (default: the first plane's).
    members
        Optional member table (as :attr:`LensModel.members`).
    """

    def __init__(self, planes: Sequence[LensModel], cosmology: Cosmology | None = None, members=None) -> None:
        planes = list(planes)
        if not planes:
            raise LensSearchError("multi-plane lens model: no planes")
        for plane in planes:
            if not isinstance(plane, LensModel):
                raise LensSearchError(f"multi-plane lens model: expected LensModel planes, got {type(plane).__name__}")
        self.cosmology = cosmology if cosmology is not None else planes[0].cosmology
        merged: dict[float, list[LensComponent]] = {}
        for plane in planes:
            merged.setdefault(plane.z_lens, []).extend(plane.components)
        self.planes: tuple[LensModel, ...] = tuple(
            LensModel(comps, z, self.cosmology) for z, comps in sorted(merged.items())
        )
        self.members = members

    @property
    def z_lens(self) -> float:
        """Redshift of the nearest plane."""
        return self.planes[0].z_lens

    @property
    def z_planes(self) -> tuple[float, ...]:
        """Redshifts of the planes, increasing."""
        return tuple(p.z_lens for p in self.planes)

    @property
    def components(self) -> tuple[LensComponent, ...]:
        """All components of all planes (in plane order)."""
        return tuple(c for p in self.planes for c in p.components)

    def __len__(self) -> int:
        return sum(len(p) for p in self.planes)

    def __repr__(self) -> str:
        return f"MultiPlaneLensModel(z_planes={self.z_planes}, n_components={len(self)}, cosmology={self.cosmology!r})"

    def _distance_ratios(self, z_s: float):
        """Planes in front of ``z_s`` and the ratios ``D_ij / D_j`` for every later plane ``j`` (the source last)."""
        active = [p for p in self.planes if p.z_lens < z_s]
        targets = [p.z_lens for p in active[1:]] + [float(z_s)]
        d = self.cosmology.angular_diameter_distance
        d12 = self.cosmology.angular_diameter_distance_z1z2
        # ratio[i][j]: plane i deflecting towards target j (targets index planes 1..n-1 then the source)
        ratio = [[d12(p.z_lens, zt) / d(zt) if zt > p.z_lens else 0.0 for zt in targets] for p in active]
        return active, ratio

    def ray_trace(self, x, y, z_s: float, fast: bool = True, first_plane_deflection=None):
        """Source-plane positions (arcsec) of image-plane positions for a source at ``z_s`` (recursive equation).

        ``first_plane_deflection``: the nearest plane's ``(alpha_x, alpha_y)`` at ``(x, y)`` if already known (it
        does not depend on ``z_s``: a grid ray-traced to many source redshifts computes it once).
        """
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        x, y = np.broadcast_arrays(x, y)
        active, ratio = self._distance_ratios(z_s)
        alphas = []
        px, py = x, y
        for j in range(len(active) + 1):
            if j > 0:
                px = x - sum(ratio[i][j - 1] * alphas[i][0] for i in range(j))
                py = y - sum(ratio[i][j - 1] * alphas[i][1] for i in range(j))
            if j < len(active):
                if j == 0 and first_plane_deflection is not None and active[0] is self.planes[0]:
                    alphas.append(first_plane_deflection)
                else:
                    alphas.append(active[j].deflection(px, py, fast=fast))
        return px, py

    def first_plane_deflection(self, x, y, fast: bool = True):
        """Deflection of the nearest plane alone (arcsec, ``D_ds / D_s = 1``), for :meth:`ray_trace`."""
        return self.planes[0].deflection(x, y, fast=fast)

    def jacobian_matrix(self, x, y, z_s: float, fast: bool = True):
        """``(a11, a12, a21, a22)`` of ``A = d beta / d theta`` for a source at ``z_s`` (recursive equation)."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        x, y = np.broadcast_arrays(x, y)
        active, ratio = self._distance_ratios(z_s)
        one, zero = np.ones(x.shape), np.zeros(x.shape)
        alphas, products = [], []  # products[i] = H_i(theta_i) A_i as (p11, p12, p21, p22)
        px, py = x, y
        a = (one, zero, zero, one)
        for j in range(len(active) + 1):
            if j > 0:
                px = x - sum(ratio[i][j - 1] * alphas[i][0] for i in range(j))
                py = y - sum(ratio[i][j - 1] * alphas[i][1] for i in range(j))
                a = tuple(
                    base - sum(ratio[i][j - 1] * products[i][k] for i in range(j))
                    for k, base in enumerate((one, zero, zero, one))
                )
            if j < len(active):
                alphas.append(active[j].deflection(px, py, fast=fast))
                hxx, hxy, hyy = active[j].hessian(px, py, fast=fast)
                a11, a12, a21, a22 = a
                products.append((hxx * a11 + hxy * a21, hxx * a12 + hxy * a22,
                                 hxy * a11 + hyy * a21, hxy * a12 + hyy * a22))
        return a

    def jacobian(self, x, y, z_s: float, fast: bool = True):
        """Symmetric part ``(a11, (a12 + a21) / 2, a22)`` of the Jacobian (the rotation part is second order)."""
        a11, a12, a21, a22 = self.jacobian_matrix(x, y, z_s, fast=fast)
        return a11, 0.5 * (a12 + a21), a22

    def at_source_redshift(self, z_s: float) -> "SourcePlaneView":
        """The model seen by sources at ``z_s``: a single-plane-like view (see :class:`SourcePlaneView`)."""
        return SourcePlaneView(self, z_s)


class SourcePlaneView:
    """A multi-plane model for one source redshift, behaving as a single-plane model at ``D_ds / D_s = 1``.

    ``deflection(x, y) = theta - beta(theta; z_s)`` (the effective deflection of the whole line of sight for
    sources at ``z_s``), ``hessian = I - A`` symmetrised, and ``dds_over_ds(z) = 1`` *for ``z = z_s`` only*
    (other redshifts raise): deflection maps and critical lines of a multi-plane model are made one source
    redshift at a time with this view.
    """

    def __init__(self, model: MultiPlaneLensModel, z_s: float) -> None:
        self.parent = model  # not '.model': that would read as a LensTool model wrapper
        self.z_s = float(z_s)
        self.z_lens = model.z_lens
        self.cosmology = model.cosmology
        self.members = model.members
        self.components = None  # no near/far split: the planes are not additive

    def deflection(self, x, y, fast: bool = True):
        """Effective deflection ``theta - beta`` (arcsec) for sources at ``z_s``."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        bx, by = self.parent.ray_trace(x, y, self.z_s, fast=fast)
        return x - bx, y - by

    def hessian(self, x, y, fast: bool = True):
        """``I - A`` (symmetrised) for sources at ``z_s``."""
        a11, a12, a22 = self.parent.jacobian(x, y, self.z_s, fast=fast)
        return 1.0 - a11, -a12, 1.0 - a22

    def convergence(self, x, y, fast: bool = True):
        """Effective convergence ``1 - (a11 + a22) / 2`` for sources at ``z_s``."""
        f_xx, _, f_yy = self.hessian(x, y, fast=fast)
        return 0.5 * (f_xx + f_yy)

    def dds_over_ds(self, z_s: float) -> float:
        """1 for the view's own source redshift; other redshifts need another view."""
        if abs(float(z_s) - self.z_s) > 1e-9:
            raise LensSearchError(
                f"multi-plane model viewed for z_s = {self.z_s:g}: no D_ds/D_s scaling to z_s = {z_s:g} "
                "(make a view per source redshift)"
            )
        return 1.0

    def ray_trace(self, x, y, z_s: float, fast: bool = True):
        """Source-plane positions for ``z_s`` (the view's redshift)."""
        self.dds_over_ds(z_s)
        return self.parent.ray_trace(x, y, self.z_s, fast=fast)

    def jacobian(self, x, y, z_s: float, fast: bool = True):
        """Symmetrised Jacobian for ``z_s`` (the view's redshift)."""
        self.dds_over_ds(z_s)
        return self.parent.jacobian(x, y, self.z_s, fast=fast)

    def jacobian_matrix(self, x, y, z_s: float, fast: bool = True):
        """Full Jacobian for ``z_s`` (the view's redshift)."""
        self.dds_over_ds(z_s)
        return self.parent.jacobian_matrix(x, y, self.z_s, fast=fast)
