"""Distances of a flat LambdaCDM cosmology for the lensing core.

A thin, cached wrapper around :class:`astropy.cosmology.FlatLambdaCDM`. Lens models are evaluated in loops (one
source redshift per multiple-image family, one per secondary critical line, ...), so every distance is cached per
redshift with :func:`functools.lru_cache`. Inputs are redshifts (floats); outputs are plain floats in Mpc or kpc so
that hot loops never carry astropy units.

Deflections in this package are normalised to ``D_ds / D_s = 1``; :meth:`Cosmology.dds_over_ds` gives the factor
that scales them to a source at ``z_s`` (Schneider, Ehlers & Falco 1992, eq. 5.9).
"""

from __future__ import annotations

import functools

import numpy as np

from lenssearch.errors import LensSearchError


class Cosmology:
    """Flat LambdaCDM cosmology with cached distances.

    Parameters
    ----------
    H0
        Hubble constant in km/s/Mpc.
    Om0
        Matter density today (the dark-energy density is ``1 - Om0``).
    """

    def __init__(self, H0: float = 70.0, Om0: float = 0.3) -> None:
        from astropy.cosmology import FlatLambdaCDM

        if not H0 > 0:
            raise LensSearchError(f"cosmology: H0 must be positive, got {H0!r}")
        if not 0.0 < Om0 <= 1.0:
            raise LensSearchError(f"cosmology: Om0 must be in (0, 1], got {Om0!r}")
        self.H0 = float(H0)
        self.Om0 = float(Om0)
        self._astropy = FlatLambdaCDM(H0=self.H0, Om0=self.Om0)
        # Per-instance caches (a method-level lru_cache would keep instances alive and share across them).
        self.angular_diameter_distance = functools.lru_cache(maxsize=4096)(self._angular_diameter_distance)
        self.angular_diameter_distance_z1z2 = functools.lru_cache(maxsize=16384)(
            self._angular_diameter_distance_z1z2
        )
        self.kpc_per_arcsec = functools.lru_cache(maxsize=4096)(self._kpc_per_arcsec)

    # ------------------------------------------------------------------------------------------ constructors
    @classmethod
    def from_config(cls, cfg) -> "Cosmology":
        """Build from a :class:`lenssearch.config.CosmologyConfig` (``cfg.base.cosmology``)."""
        return cls(H0=cfg.H0, Om0=cfg.Om0)

    @property
    def astropy(self):
        """The underlying :class:`astropy.cosmology.FlatLambdaCDM`."""
        return self._astropy

    def __repr__(self) -> str:
        return f"Cosmology(H0={self.H0}, Om0={self.Om0})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cosmology) and (self.H0, self.Om0) == (other.H0, other.Om0)

    def __hash__(self) -> int:
        return hash((self.H0, self.Om0))

    # ------------------------------------------------------------------------------------------ distances
    def _angular_diameter_distance(self, z: float) -> float:
        """Angular-diameter distance to redshift ``z`` in Mpc."""
        return float(self._astropy.angular_diameter_distance(float(z)).value)

    def _angular_diameter_distance_z1z2(self, z1: float, z2: float) -> float:
        """Angular-diameter distance from ``z1`` to ``z2`` in Mpc (0 when ``z2 <= z1``)."""
        z1, z2 = float(z1), float(z2)
        if z2 <= z1:
            return 0.0
        try:  # astropy >= 8: angular_diameter_distance(z1, z2); older: angular_diameter_distance_z1z2
            distance = self._astropy.angular_diameter_distance(z1, z2)
        except TypeError:  # pragma: no cover - astropy < 8
            distance = self._astropy.angular_diameter_distance_z1z2(z1, z2)
        return float(distance.value)

    def _kpc_per_arcsec(self, z: float) -> float:
        """Proper transverse size in kpc of one arcsec at redshift ``z``."""
        return float(self._astropy.kpc_proper_per_arcmin(float(z)).value) / 60.0

    def kpc_per_arcsec_array(self, z) -> np.ndarray:
        """:meth:`kpc_per_arcsec` of an array of redshifts in one astropy call (the same values, bit for bit)."""
        return np.asarray(self._astropy.kpc_proper_per_arcmin(np.asarray(z, dtype=float)).value, dtype=float) / 60.0

    def dds_over_ds_array(self, z_l: float, z_s) -> np.ndarray:
        """:meth:`dds_over_ds` of one lens and an array of source redshifts in two astropy calls (the same values)."""
        z_s = np.atleast_1d(np.asarray(z_s, dtype=float))
        out = np.zeros(z_s.shape)
        behind = z_s > float(z_l)
        if behind.any():
            zb = z_s[behind]
            out[behind] = (self._astropy.angular_diameter_distance(float(z_l), zb).value
                           / self._astropy.angular_diameter_distance(zb).value)
        return out

    def dds_over_ds(self, z_l: float, z_s: float) -> float:
        """Lensing efficiency ``D_ds / D_s`` of a source at ``z_s`` behind a lens at ``z_l`` (0 if ``z_s <= z_l``)."""
        z_l, z_s = float(z_l), float(z_s)
        if z_s <= z_l:
            return 0.0
        return self.angular_diameter_distance_z1z2(z_l, z_s) / self.angular_diameter_distance(z_s)

    def sigma_crit_msun_per_arcsec2(self, z_l: float, z_s: float) -> float:
        """Critical surface density in Msun / arcsec^2 for lens ``z_l`` and source ``z_s``."""
        import astropy.constants as const
        import astropy.units as u

        d_l = self.angular_diameter_distance(z_l) * u.Mpc
        d_s = self.angular_diameter_distance(z_s) * u.Mpc
        d_ls = self.angular_diameter_distance_z1z2(z_l, z_s) * u.Mpc
        if d_ls.value <= 0:
            return float("inf")
        sigma = const.c**2 / (4 * 3.141592653589793 * const.G) * d_s / (d_l * d_ls)
        arcsec_kpc = self.kpc_per_arcsec(z_l) * u.kpc
        return float((sigma * arcsec_kpc**2).to(u.Msun).value)
