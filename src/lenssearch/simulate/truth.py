"""What a modeling network learns about each mock's lens: the SIE + external-shear parameters of HOLISMOKES IX.

Schuldt et al. (2023a) predict, for a galaxy-scale lens, the lens centre, the Einstein radius, the complex
ellipticity of an SIE and the external shear. A mock of ``simulate`` is a cluster member (or the same member made an
isolated field lens) lensing a background source; its truth, per mock, is defined here and written by the
``simulate`` stage to ``truth.ecsv`` next to the mocks' ``metadata.ecsv`` (same ids, same order). Every quantity is
in the frame of the cutout: ``x`` along its columns (West on the North-up HST images), ``y`` along its rows
(North), angles counter-clockwise from ``+x``; the field's lens-model frame has the same axes (LensTool's
``x = -dRA cos(Dec0)``, ``y = dDec``) and the cutouts are not rotated.

- ``lens_x_arcsec``, ``lens_y_arcsec``: the member's mass centre (its catalogue position, the centre of its dPIE)
  minus the cutout's centre (pixel ``(n - 1) / 2`` on both axes), in arcsec.
- ``theta_e_arcsec``: the equivalent Einstein radius ``sqrt(A / pi)`` of the member's tangential critical line at
  the source's redshift (the area ``A`` it encloses, :func:`lenssearch.lensing.critical.equivalent_einstein_radius`),
  the quantity the mocks are drawn in (``metadata.ecsv`` holds the same number).
- ``lens_e1``, ``lens_e2``: the complex ellipticity of the member's mass, lenstronomy's convention
  ``(1 - q) / (1 + q) (cos 2 phi, sin 2 phi)``, with ``phi`` the position angle of the major axis and ``q`` the
  axis ratio of the iso-density contours. For a dPIE LensTool's ``emass = (a^2 - b^2) / (a^2 + b^2)`` gives
  ``q = sqrt((1 - emass) / (1 + emass))`` (the same ``q`` as :func:`lenssearch.simulate.local.field_sie`, which
  makes an isolated lens of the member; there ``emass`` is clipped to 0.6).
- ``shear_gamma1``, ``shear_gamma2``: the external shear at the member's centre for a source at ``z_s``:
  ``D_ds/D_s * ((psi_xx - psi_yy) / 2, psi_xy)`` of every mass of the lens model except the member itself (the
  cluster's halos and BCG, the other members, the model's own external shear), from the analytic hessians; for an
  isolated lens, the shear it was given, ``D_ds/D_s * gamma (cos 2 phi, sin 2 phi)``.
- ``kappa_ext``: the convergence of the same masses at the member, ``D_ds/D_s (psi_xx + psi_yy) / 2`` (0 for an
  isolated lens). Recorded, not learned: a uniform sheet is degenerate with ``theta_E`` in the images
  (the mass-sheet degeneracy), so the modeling network's ``theta_E`` is the critical line's, sheet included.

A field given as deflection maps only (no parametric model) has no member mass to separate from the cluster: its
ellipticities, shears and ``kappa_ext`` are NaN (the modeling stage refuses such mocks for training).
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: The parameters a modeling network predicts (:mod:`lenssearch.modeling`), in this order.
PARAMETERS = ("lens_x_arcsec", "lens_y_arcsec", "theta_e_arcsec", "lens_e1", "lens_e2", "shear_gamma1",
              "shear_gamma2")

#: Columns of ``truth.ecsv``.
TRUTH_COLUMNS = ("id",) + PARAMETERS + ("kappa_ext", "lens_q", "lens_angle_deg", "environment")

TRUTH_FILE = "truth.ecsv"


@dataclasses.dataclass(frozen=True)
class MemberTruth:
    """The source-redshift-independent part of a member's truth (hessian at ``D_ds/D_s = 1``)."""

    dx_arcsec: float
    dy_arcsec: float
    q: float
    angle_deg: float
    hessian_ext: tuple[float, float, float]  # (psi_xx, psi_xy, psi_yy) of the other masses at the member

    def at(self, theta_e_arcsec: float, dds_over_ds: float) -> dict:
        """The truth of a mock at a source redshift with ``D_ds/D_s = dds_over_ds``."""
        e1, e2 = ellipticity(self.q, self.angle_deg)
        hxx, hxy, hyy = self.hessian_ext
        f = float(dds_over_ds)
        return {"lens_x_arcsec": self.dx_arcsec, "lens_y_arcsec": self.dy_arcsec,
                "theta_e_arcsec": float(theta_e_arcsec), "lens_e1": e1, "lens_e2": e2,
                "shear_gamma1": f * 0.5 * (hxx - hyy), "shear_gamma2": f * hxy,
                "kappa_ext": f * 0.5 * (hxx + hyy), "lens_q": self.q, "lens_angle_deg": self.angle_deg}


def ellipticity(q: float, angle_deg: float) -> tuple[float, float]:
    """lenstronomy's ``(e1, e2) = (1 - q) / (1 + q) (cos 2 phi, sin 2 phi)`` (NaN in, NaN out)."""
    e = (1.0 - q) / (1.0 + q)
    phi = np.deg2rad(angle_deg)
    return float(e * np.cos(2 * phi)), float(e * np.sin(2 * phi))


def axis_ratio_from_emass(emass: float) -> float:
    """Axis ratio ``b/a`` of LensTool's mass ellipticity ``emass = (a^2 - b^2) / (a^2 + b^2)``."""
    emass = float(emass)
    return float(np.sqrt((1.0 - emass) / (1.0 + emass)))


def member_truth(model, component, centre_xy, cutout_centre_xy, isolated_component=None,
                 isolated_shear=None) -> MemberTruth:
    """A member's :class:`MemberTruth`.

    ``model``: the field's :class:`~lenssearch.lensing.model.LensModel` (``None`` for a map-only field);
    ``component``: the member's own mass component in it (``None`` if there is no model); ``centre_xy``: the
    member's model-frame position; ``cutout_centre_xy``: the cutout centre's. For an isolated lens
    ``isolated_component`` is its SIE (:func:`lenssearch.simulate.local.field_sie`) and ``isolated_shear`` its
    ``(gamma, angle_deg)``.
    """
    dx = float(centre_xy[0] - cutout_centre_xy[0])
    dy = float(centre_xy[1] - cutout_centre_xy[1])
    if isolated_component is not None:
        gamma, angle = isolated_shear
        phi = np.deg2rad(angle)
        # the hessian of a pure shear: psi_xx - psi_yy = 2 gamma cos 2 phi, psi_xy = gamma sin 2 phi, trace 0
        hess = (gamma * np.cos(2 * phi), gamma * np.sin(2 * phi), -gamma * np.cos(2 * phi))
        p = isolated_component.params
        return MemberTruth(dx, dy, float(p["q"]), float(p["angle_deg"]), tuple(float(v) for v in hess))
    if model is None or component is None:
        return MemberTruth(dx, dy, np.nan, np.nan, (np.nan, np.nan, np.nan))
    x = np.array([float(centre_xy[0])])
    y = np.array([float(centre_xy[1])])
    total = model.hessian(x, y)
    own = component.hessian(x, y)
    hess = tuple(float(np.ravel(t)[0] - np.ravel(o)[0]) for t, o in zip(total, own))
    p = component.params
    if "emass" in p:
        q = axis_ratio_from_emass(p["emass"])
    elif "q" in p:
        q = float(p["q"])
    else:
        q = 1.0  # a circular profile (SIS)
    return MemberTruth(dx, dy, q, float(p.get("angle_deg", 0.0)), hess)


def truth_table(rows: list[dict]):
    """The truth rows (dicts with ``id``, ``environment`` and the :data:`TRUTH_COLUMNS`) as an astropy Table with
    units and descriptions."""
    from astropy.table import Table

    from lenssearch.io import describe_columns

    cols = {}
    for name in TRUTH_COLUMNS:
        if name in ("id", "environment"):
            cols[name] = np.array([str(r.get(name, "")) for r in rows], dtype=str)
        else:
            cols[name] = np.array([r.get(name, np.nan) for r in rows], dtype=np.float64)
    table = Table(cols)
    table.meta["definitions"] = "lenssearch.simulate.truth (module docstring); docs/architecture.md"
    return describe_columns(table)


def read_truth(path):
    """Read a ``truth.ecsv`` (strict: a malformed file is an InputFileError naming it)."""
    from lenssearch.errors import InputFileError
    from lenssearch.io import read_ecsv

    table = read_ecsv(path, "lens truth")
    missing = [c for c in TRUTH_COLUMNS if c not in table.colnames]
    if missing:
        raise InputFileError(f"{path}: lens truth lacks column(s) {missing}")
    return table
