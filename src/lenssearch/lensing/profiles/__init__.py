"""Lens mass profiles, one module each, one contract (see :mod:`lenssearch.lensing.profiles.base`).

``PROFILES`` maps a profile name to its class: ``"sis"``, ``"sie"``, ``"dpie"`` (LensTool profil 81) and ``"shear"``
(LensTool profil 14). Every method takes positions in arcsec and returns values at ``D_ds / D_s = 1``; each class
lists its keyword parameters in ``param_names`` (``defaults`` holds those that may be omitted).
"""

from lenssearch.lensing.profiles.base import MassProfile
from lenssearch.lensing.profiles.dpie import DPIE
from lenssearch.lensing.profiles.shear import Shear
from lenssearch.lensing.profiles.sie import SIE
from lenssearch.lensing.profiles.sis import SIS

PROFILES: dict[str, type[MassProfile]] = {cls.name: cls for cls in (SIS, SIE, DPIE, Shear)}

__all__ = ["PROFILES", "MassProfile", "SIS", "SIE", "DPIE", "Shear"]
