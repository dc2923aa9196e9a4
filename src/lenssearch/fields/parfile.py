"""Write a lens model as a LensTool parameter file (``model.par`` of a field directory).

The file follows LensTool's best-fit layout (``best.par``): a ``runmode`` block with the reference RA/Dec
(``reference 3 RA Dec``), one ``potentiel`` block per component with every parameter written out (dPIE = profil
81 with ``core_radius``/``cut_radius`` in arcsec and ``v_disp`` in km/s; external shear = profil 14), a
``cosmologie`` block and ``fini``. It is read back by :func:`lenssearch.lensing.lenstool.read_parfile`. Members
built from a luminosity scaling relation (a LensTool ``potfile``) are written as explicit potentials, as LensTool
does in ``best.par``; the scaling relation itself is recorded in comment lines at the top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from lenssearch.errors import LensSearchError
from lenssearch.io import atomic_path


def _dpie_block(name: str, p: Mapping[str, float], z_lens: float, mag: float | None) -> list[str]:
    lines = [
        f"potentiel {name}",
        "\tprofil       81",
        f"\tx_centre     {p['center_x']:.6f}",
        f"\ty_centre     {p['center_y']:.6f}",
        f"\tellipticite     {p['emass']:.6f}",
        f"\tangle_pos       {p['angle_deg']:.6f}",
        f"\tcore_radius         {p['core_radius_arcsec']:.6f}",
        f"\tcut_radius         {p['cut_radius_arcsec']:.6f}",
        f"\tv_disp     {p['sigma_kms']:.6f}",
    ]
    if mag is not None:
        lines.append(f"\tmag\t\t  {mag:.6f}")
    lines += [f"\tz_lens     {z_lens:.4f}", "\tend"]
    return lines


def _shear_block(name: str, p: Mapping[str, float], z_lens: float) -> list[str]:
    return [
        f"potentiel {name}",
        "\tprofil       14",
        f"\tgamma     {p['gamma']:.6f}",
        f"\tangle_pos     {p['angle_deg']:.6f}",
        "\tkappa         0.0000",
        f"\tz_lens     {z_lens:.4f}",
        "\tend",
    ]


def parfile_text(model, reference_radec: tuple[float, float], magnitudes: Mapping[str, float] | None = None,
                 comments: tuple[str, ...] = ()) -> str:
    """The LensTool parameter-file text of ``model`` (a :class:`lenssearch.lensing.model.LensModel`).

    Parameters
    ----------
    model
        The lens model; its dPIE and shear components are written (other profiles raise LensSearchError).
    reference_radec
        RA, Dec (degrees) of the model's frame origin.
    magnitudes
        Optional ``mag`` per component name (LensTool writes the potfile magnitude of members).
    comments
        Lines written as ``#`` comments at the top (e.g. the scaling relation used).
    """
    magnitudes = magnitudes or {}
    ra0, dec0 = reference_radec
    out = [f"# {c}" for c in comments]
    out += ["runmode", f"\treference     3 {ra0:.7f} {dec0:.7f}", "\tend"]
    for i, comp in enumerate(model.components):
        name = comp.name or f"P{i}"
        if any(ch.isspace() for ch in name):
            raise LensSearchError(f"LensTool potential names cannot contain spaces: '{name}'")
        if comp.profile == "dpie":
            out += _dpie_block(name, comp.params, model.z_lens, magnitudes.get(name))
        elif comp.profile == "shear":
            out += _shear_block(name, comp.params, model.z_lens)
        else:
            raise LensSearchError(f"component '{name}': profile '{comp.profile}' has no LensTool writer here")
    cosmo = model.cosmology
    out += [
        "cosmologie",
        "\tmodel       1",
        f"\tH0        {cosmo.H0:.6f}",
        f"\tomegaM    {cosmo.Om0:.6f}",
        f"\tomegaX    {1.0 - cosmo.Om0:.6f}",
        "\tomegaK    0.",
        "\twX        -1.000000",
        "\twa        0.000000",
        "\tend",
        "fini",
    ]
    return "\n".join(out) + "\n"


def write_parfile(path: str | Path, model, reference_radec, magnitudes=None, comments=()) -> Path:
    """Write :func:`parfile_text` atomically to ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(parfile_text(model, reference_radec, magnitudes, comments))
    return path
