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
