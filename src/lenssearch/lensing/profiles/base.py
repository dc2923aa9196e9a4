"""The contract shared by every mass profile of the lensing core.

A profile is a class whose methods take positions ``x, y`` in arcsec (numpy arrays of any matching shape, or
scalars) and the profile's parameters as keyword arguments, and return plain float arrays of the same shape:

- ``deflection(x, y, **kw) -> (alpha_x, alpha_y)`` in arcsec,
- ``hessian(x, y, **kw) -> (f_xx, f_xy, f_yy)`` second derivatives of the lensing potential (dimensionless),
- ``convergence(x, y, **kw) -> kappa`` (dimensionless), equal to ``(f_xx + f_yy) / 2``,

all at ``D_ds / D_s = 1`` (scale deflection and hessian by
:meth:`lenssearch.lensing.cosmology.Cosmology.dds_over_ds` for a source at ``z_s``). The methods are class methods,
so ``PROFILES["sis"].deflection(x, y, ...)`` and ``PROFILES["sis"]().deflection(x, y, ...)`` both work.

Each class declares ``name``, ``param_names`` (the keyword arguments, in a canonical order) and ``defaults`` (the
parameters that may be omitted, e.g. the centre). Angles are in degrees counter-clockwise from ``+x`` (West),
following the package convention (``docs/architecture.md``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from lenssearch.errors import LensSearchError


class MassProfile:
    """Base class of the lens mass profiles (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    param_names: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[dict[str, float]] = {}

    @classmethod
    def check_params(cls, params: dict) -> dict:
        """Return ``params`` completed with the defaults; raise LensSearchError on unknown or missing keys."""
        unknown = sorted(set(params) - set(cls.param_names))
        if unknown:
            raise LensSearchError(
                f"profile '{cls.name}': unknown parameter(s) {unknown}; expected {list(cls.param_names)}"
            )
        full = {**cls.defaults, **params}
        missing = [p for p in cls.param_names if p not in full]
        if missing:
            raise LensSearchError(f"profile '{cls.name}': missing parameter(s) {missing}")
        return {p: float(full[p]) for p in cls.param_names}

    @classmethod
    def deflection(cls, x, y, **kw):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def hessian(cls, x, y, **kw):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def convergence(cls, x, y, **kw):
        """Convergence ``kappa = (f_xx + f_yy) / 2`` (profiles override this with a closed form)."""
        f_xx, _, f_yy = cls.hessian(x, y, **kw)
        return 0.5 * (f_xx + f_yy)


# ------------------------------------------------------------------------------------------------ helpers
def as_float_arrays(x, y) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast ``x, y`` to float64 arrays of a common shape."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    return np.broadcast_arrays(x, y)


def rotate_to_frame(x, y, angle_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of ``(x, y)`` in a frame whose ``+x`` axis points at ``angle_rad`` (counter-clockwise).

    This is LensTool's ``rotation(P, theta)``: ``x' = x cos + y sin``, ``y' = y cos - x sin``.
    """
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return x * c + y * s, y * c - x * s


def rotate_from_frame(vx, vy, angle_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`rotate_to_frame` for a vector (LensTool's ``rotation(g, -theta)``)."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return vx * c - vy * s, vy * c + vx * s


def rotate_hessian_from_frame(hxx, hxy, hyy, angle_rad: float):
    """Rotate a symmetric tensor given in the rotated frame back to the sky frame: ``H = R H' R^T``.

    ``R`` is the rotation by ``+angle_rad`` (the matrix of :func:`rotate_from_frame`).
    """
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    c2, s2, cs = c * c, s * s, c * s
    f_xx = c2 * hxx - 2 * cs * hxy + s2 * hyy
    f_yy = s2 * hxx + 2 * cs * hxy + c2 * hyy
    f_xy = cs * (hxx - hyy) + (c2 - s2) * hxy
    return f_xx, f_xy, f_yy
