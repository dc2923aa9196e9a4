"""The background-source population of the mock lenses (Angora et al. 2023, Sect. 3.1, Table 2, Figs. 3-4).

Each source is a Sersic profile with

- an F814W magnitude drawn from galaxy number counts ``N(m)`` (galaxies per deg^2 per mag) between
  ``mag_min`` and ``mag_limit`` (29 AB in the paper),
- a redshift drawn from ``p(z | Delta m)`` in the paper's magnitude bins {22, 24, 25, 26, 27, 28, 29} with the
  paper's functional forms (Lombardi & Bertin 1999), truncated to ``[z_cluster + dz_min, z_max]``,
- an effective radius from the Shibuya et al. (2015) size evolution with the paper's low-redshift plateau,
- a Sersic index, axis ratio and position angle drawn uniformly (Table 2),
- colours from a star-forming SED (:mod:`lenssearch.simulate.colours`).

Number counts (the numbers in ``params.yaml``, ``simulate.sources.counts_*``)
-----------------------------------------------------------------------------
``log10 N(m)`` is piecewise linear between nodes read off the compilation of Capak et al. (2007, ApJS 172, 99,
their i-band counts, COSMOS at the bright end and the HDF-N/S F814W counts of Williams et al. 1996 and Metcalfe
et al. 2001 at the faint end): ``log10 N = 4.45, 5.05, 5.55, 5.85, 5.95`` at ``m = 22, 24, 26, 28, 29``, i.e.
logarithmic slopes 0.30 (22-24), 0.25 (24-26), 0.15 (26-28) and 0.10 (28-29): the flattening of the faint
counts from ~0.3 to <~0.15 dex/mag seen in the Hubble Deep Fields. Only the shape matters (a fixed number of
sources is drawn); it puts 34% of the sources at ``m > 28`` (the paper's KB has 30%, Sect. 3.2) and the median
at 27.4.

Redshift distributions (``simulate.sources.z_bin_*``)
-----------------------------------------------------
``p(z|Dm) = A z^2 exp(-z/z0)`` for the first bin (22-24) and ``A z^2 exp(-(z/z0)^(1/2))`` for the others
(the paper's forms). Both are Gamma laws in disguise, so they are drawn exactly by inverse CDF:
``z/z0 ~ Gamma(3)`` for the first, ``(z/z0)^(1/2) ~ Gamma(6)`` for the others. The untruncated medians are
``2.674 z0`` and ``32.2 z0``. With ``z0 = 0.32, 0.036, 0.044, 0.052, 0.062, 0.072`` the medians are
0.86, 1.16, 1.42, 1.67, 2.0 and 2.3: the median redshift rises with magnitude as in COSMOS2015
(Laigle et al. 2016); the stretched form has the long high-z tail of faint samples. All are truncated at
``z_max = 7`` (the COSMOS photometric-redshift limit) and below at ``z_cluster + dz_min`` (Meneghetti et al.
2022: the GGSL cross-section vanishes below ``z_cluster + 0.4``).

Sizes (``simulate.sources.re_*``)
---------------------------------
``R_e = 2.54 kpc`` for ``z <= 1`` and ``R_e = B (1 + z)^beta`` above, with the combined (UV + optical) fit of
Shibuya et al. (2015), ``B = 6.9 kpc``, ``beta = -1.2``. As in the paper the two pieces are not forced to join:
``B 2^beta = 3.0 kpc`` just above ``z = 1`` versus 2.54 kpc just below (a 0.46 kpc step, Fig. 4 left). The
scatter ``sigma = 0.25 kpc`` is a Gaussian truncated to ``[-1.5 sigma, +1 sigma]`` (the paper's asymmetric
range, which reaches ``R_e <~ 0.5 kpc`` at ``z >~ 4``). Radii are converted to arcsec with the cosmology's
proper scale at the source redshift.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from astropy.table import Table
from scipy import special, stats

from lenssearch.errors import LensSearchError

# ---------------------------------------------------------------------------------------------- number counts
@dataclasses.dataclass(frozen=True)
class NumberCounts:
    """Galaxy number counts with ``log10 N(m)`` piecewise linear between nodes.

    Parameters
    ----------
    mag_nodes
        Increasing magnitudes of the nodes (AB).
    log10_counts
        ``log10 N`` at the nodes, ``N`` in galaxies per deg^2 per mag.
    """

    mag_nodes: tuple[float, ...]
    log10_counts: tuple[float, ...]

    def __post_init__(self) -> None:
        m = np.asarray(self.mag_nodes, float)
        if m.size < 2 or m.size != len(self.log10_counts) or np.any(np.diff(m) <= 0):
            raise LensSearchError(
                "simulate.sources.counts: need >= 2 increasing magnitude nodes and as many log10 counts, got "
                f"{list(self.mag_nodes)} and {list(self.log10_counts)}"
            )

    def _segments(self):
        m = np.asarray(self.mag_nodes, float)
        logn = np.asarray(self.log10_counts, float)
        slope = np.diff(logn) / np.diff(m)
        return m, logn, slope

    def density(self, mag) -> np.ndarray:
        """``N(m)`` in galaxies per deg^2 per mag (log-linear interpolation; 0 outside the nodes)."""
        m_nodes, logn, _ = self._segments()
        mag = np.asarray(mag, float)
        inside = (mag >= m_nodes[0]) & (mag <= m_nodes[-1])
        return np.where(inside, 10.0 ** np.interp(mag, m_nodes, logn), 0.0)

    def cumulative(self, mag) -> np.ndarray:
        """``int_{m_0}^{m} N(m') dm'`` in galaxies per deg^2 (exact for the piecewise exponential)."""
        m_nodes, logn, slope = self._segments()
        mag = np.clip(np.asarray(mag, float), m_nodes[0], m_nodes[-1])
        seg_int = self._segment_integrals(m_nodes[:-1], logn[:-1], slope, np.diff(m_nodes))
        cum_nodes = np.concatenate([[0.0], np.cumsum(seg_int)])
        k = np.clip(np.searchsorted(m_nodes, mag, side="right") - 1, 0, len(slope) - 1)
        partial = self._segment_integrals(m_nodes[k], logn[k], slope[k], mag - m_nodes[k])
        return cum_nodes[k] + partial

    @staticmethod
    def _segment_integrals(m0, logn0, slope, dm):
        """``int_0^dm 10^(logn0 + slope t) dt`` (the flat-slope limit is handled)."""
        n0 = 10.0 ** np.asarray(logn0, float)
        slope = np.asarray(slope, float)
        dm = np.asarray(dm, float)
        k = slope * np.log(10.0)
        flat = np.abs(k) < 1e-12
        safe_k = np.where(flat, 1.0, k)
        return np.where(flat, n0 * dm, n0 * np.expm1(safe_k * dm) / safe_k)

    def cdf(self, mag, mag_min: float, mag_max: float) -> np.ndarray:
        """CDF of the magnitudes drawn by :meth:`sample` between ``mag_min`` and ``mag_max``."""
        lo, hi = self.cumulative(mag_min), self.cumulative(mag_max)
        return np.clip((self.cumulative(mag) - lo) / (hi - lo), 0.0, 1.0)

    def sample(self, rng: np.random.Generator, size: int, mag_min: float, mag_max: float) -> np.ndarray:
        """Draw ``size`` magnitudes with density ``N(m)`` in ``[mag_min, mag_max]`` (inverse CDF, exact)."""
        m_nodes, logn, slope = self._segments()
        if not m_nodes[0] <= mag_min < mag_max <= m_nodes[-1]:
            raise LensSearchError(
                f"simulate.sources: magnitude range [{mag_min}, {mag_max}] outside the counts' nodes "
                f"[{m_nodes[0]}, {m_nodes[-1]}]"
            )
        lo, hi = self.cumulative(mag_min), self.cumulative(mag_max)
        target = lo + rng.random(size) * (hi - lo)
        seg_int = self._segment_integrals(m_nodes[:-1], logn[:-1], slope, np.diff(m_nodes))
        cum_nodes = np.concatenate([[0.0], np.cumsum(seg_int)])
        k = np.clip(np.searchsorted(cum_nodes, target, side="right") - 1, 0, len(slope) - 1)
        rest = target - cum_nodes[k]
        n0 = 10.0 ** logn[k]
        kk = slope[k] * np.log(10.0)
        flat = np.abs(kk) < 1e-12
        safe = np.where(flat, 1.0, kk)
        dm = np.where(flat, rest / n0, np.log1p(rest * safe / n0) / safe)
        return np.clip(m_nodes[k] + dm, mag_min, mag_max)


# ---------------------------------------------------------------------------------------------- p(z | m)
@dataclasses.dataclass(frozen=True)
class RedshiftForm:
    """A ``p(z) = A z^2 f(z/z0)`` law that is a Gamma law in ``u = (z/z0)^(1/power)``.

    ``exponential``: ``A z^2 exp(-z/z0)``, ``u = z/z0 ~ Gamma(3)``;
    ``stretched``: ``A z^2 exp(-(z/z0)^(1/2))``, ``u = (z/z0)^(1/2) ~ Gamma(6)``.
    """

    gamma_shape: float
    power: float  # z = z0 u^power

    def u_of_z(self, z, z0):
        return (np.asarray(z, float) / z0) ** (1.0 / self.power)

    def z_of_u(self, u, z0):
        return z0 * np.asarray(u, float) ** self.power

    def pdf(self, z, z0: float) -> np.ndarray:
        """The untruncated, normalised ``p(z)``."""
        z = np.asarray(z, float)
        u = self.u_of_z(np.maximum(z, 0.0), z0)
        dudz = np.where(z > 0, u / (self.power * np.maximum(z, 1e-300)), 0.0)
        return np.where(z > 0, stats.gamma.pdf(u, self.gamma_shape) * dudz, 0.0)

    def cdf(self, z, z0: float) -> np.ndarray:
        """The untruncated CDF."""
        return special.gammainc(self.gamma_shape, self.u_of_z(np.maximum(np.asarray(z, float), 0.0), z0))


#: The paper's functional forms of p(z|Dm) (Angora et al. 2023, Sect. 3.1).
REDSHIFT_FORMS: dict[str, RedshiftForm] = {
    "exponential": RedshiftForm(gamma_shape=3.0, power=1.0),
    "stretched": RedshiftForm(gamma_shape=6.0, power=2.0),
}


@dataclasses.dataclass(frozen=True)
class RedshiftModel:
    """``p(z | m)`` per magnitude bin, truncated to ``[z_min, z_max]``.

    Parameters
    ----------
    mag_edges
        Bin edges in F814W magnitude (n_bins + 1, increasing).
    forms
        One key of :data:`REDSHIFT_FORMS` per bin.
    z0
        The scale ``z0`` per bin.
    z_max
        Upper truncation (7, the COSMOS limit).
    """

    mag_edges: tuple[float, ...]
    forms: tuple[str, ...]
    z0: tuple[float, ...]
    z_max: float

    def __post_init__(self) -> None:
        n = len(self.mag_edges) - 1
        if n < 1 or len(self.forms) != n or len(self.z0) != n or np.any(np.diff(self.mag_edges) <= 0):
            raise LensSearchError(
                "simulate.sources: z_bin_mag_edges must be increasing with one form and one z0 per bin, got "
                f"{len(self.mag_edges)} edges, {len(self.forms)} forms, {len(self.z0)} z0"
            )
        for i, form in enumerate(self.forms):
            if form not in REDSHIFT_FORMS:
                raise LensSearchError(
                    f"simulate.sources.z_bin_forms[{i}]: unknown form '{form}', expected {sorted(REDSHIFT_FORMS)}"
                )
        if any(z <= 0 for z in self.z0):
            raise LensSearchError(f"simulate.sources.z_bin_z0: must be positive, got {list(self.z0)}")

    def bin_of(self, mag) -> np.ndarray:
        """Index of the magnitude bin of each ``mag`` (clipped to the first/last bin)."""
        return np.clip(np.searchsorted(self.mag_edges, mag, side="right") - 1, 0, len(self.z0) - 1)

    def pdf(self, z, bin_index: int, z_min: float = 0.0) -> np.ndarray:
        """Truncated, normalised ``p(z | bin)`` on ``[z_min, z_max]``."""
        form, z0 = REDSHIFT_FORMS[self.forms[bin_index]], self.z0[bin_index]
        norm = form.cdf(self.z_max, z0) - form.cdf(z_min, z0)
        z = np.asarray(z, float)
        return np.where((z >= z_min) & (z <= self.z_max), form.pdf(z, z0) / norm, 0.0)

    def cdf(self, z, bin_index: int, z_min: float = 0.0) -> np.ndarray:
        """Truncated CDF of ``p(z | bin)`` on ``[z_min, z_max]``."""
        form, z0 = REDSHIFT_FORMS[self.forms[bin_index]], self.z0[bin_index]
        lo, hi = form.cdf(z_min, z0), form.cdf(self.z_max, z0)
        return np.clip((form.cdf(z, z0) - lo) / (hi - lo), 0.0, 1.0)

    def sample(self, rng: np.random.Generator, mags, z_min) -> np.ndarray:
        """Draw one redshift per magnitude from the truncated ``p(z | bin(m))`` (exact inverse CDF).

        ``z_min`` is a scalar or one value per magnitude (``z_cluster + dz_min`` of the source's field).
        """
        mags = np.atleast_1d(np.asarray(mags, float))
        z_min = np.broadcast_to(np.asarray(z_min, float), mags.shape)
        if np.any(z_min >= self.z_max):
            raise LensSearchError(f"simulate.sources: minimum source redshift {z_min.max()} >= z_max {self.z_max}")
        bins = self.bin_of(mags)
        uniform = rng.random(mags.size)
        z = np.empty(mags.size)
        for b in np.unique(bins):
            sel = bins == b
            form, z0 = REDSHIFT_FORMS[self.forms[b]], self.z0[b]
            lo, hi = form.cdf(z_min[sel], z0), form.cdf(self.z_max, z0)
            u = special.gammaincinv(form.gamma_shape, lo + uniform[sel] * (hi - lo))
            z[sel] = form.z_of_u(u, z0)
        return np.clip(z, z_min, self.z_max)

    def median(self, bin_index: int, z_min: float = 0.0) -> float:
        """Median of the truncated ``p(z | bin)``."""
        form, z0 = REDSHIFT_FORMS[self.forms[bin_index]], self.z0[bin_index]
        lo, hi = form.cdf(z_min, z0), form.cdf(self.z_max, z0)
        return float(form.z_of_u(special.gammaincinv(form.gamma_shape, lo + 0.5 * (hi - lo)), z0))


# ---------------------------------------------------------------------------------------------- sizes
@dataclasses.dataclass(frozen=True)
class SizeRelation:
    """``R_e(z)``: constant below ``z_pivot``, Shibuya et al. (2015) ``B (1+z)^beta`` above; truncated scatter.

    Parameters
    ----------
    const_kpc
        ``R_e`` at ``z <= z_pivot`` (2.54 kpc).
    z_pivot
        1.0.
    norm_kpc, slope
        ``B`` and ``beta`` of Shibuya et al. (2015).
    scatter_kpc
        Gaussian ``sigma`` (0.25 kpc).
    scatter_range_sigma
        Truncation of the scatter in units of sigma (``(-1.5, 1.0)``).
    scatter_dex
        0 (the paper): the Gaussian ``scatter_kpc`` above. Positive: a log-normal scatter of this many dex
        instead, ``R_e = R_e(z) 10^(N(0, scatter_dex))`` truncated to ``scatter_range_sigma``. Shibuya et al.
        (2015, Sect. 5) find log-normal size distributions at fixed redshift and luminosity with
        ``sigma_lnRe ~ 0.5-0.6`` (0.22-0.26 dex), much wider than the paper's 0.25 kpc; at ``z ~ 2`` that
        scatter reaches the compact sources (``R_e ~ 0.05-0.1"``) that real lensed knots and doubles have.
    """

    const_kpc: float
    z_pivot: float
    norm_kpc: float
    slope: float
    scatter_kpc: float
    scatter_range_sigma: tuple[float, float]
    scatter_dex: float = 0.0

    def mean_kpc(self, z) -> np.ndarray:
        """The relation without scatter, in kpc."""
        z = np.asarray(z, float)
        return np.where(z <= self.z_pivot, self.const_kpc, self.norm_kpc * (1.0 + z) ** self.slope)

    def bounds_kpc(self, z) -> tuple[np.ndarray, np.ndarray]:
        """The band within which ``R_e`` is drawn (Fig. 4 left)."""
        mean = self.mean_kpc(z)
        lo, hi = self.scatter_range_sigma
        if self.scatter_dex > 0:
            return mean * 10.0 ** (lo * self.scatter_dex), mean * 10.0 ** (hi * self.scatter_dex)
        return mean + lo * self.scatter_kpc, mean + hi * self.scatter_kpc

    def sample_kpc(self, rng: np.random.Generator, z) -> np.ndarray:
        """Draw ``R_e`` in kpc at each redshift (Gaussian or log-normal scatter truncated to the band)."""
        z = np.atleast_1d(np.asarray(z, float))
        lo, hi = self.scatter_range_sigma
        a, b = stats.norm.cdf(lo), stats.norm.cdf(hi)
        deviate = stats.norm.ppf(a + rng.random(z.size) * (b - a))
        if self.scatter_dex > 0:
            return self.mean_kpc(z) * 10.0 ** (deviate * self.scatter_dex)
        re = self.mean_kpc(z) + deviate * self.scatter_kpc
        if np.any(re <= 0):
            raise LensSearchError("simulate.sources: the size relation gives R_e <= 0; check re_* parameters")
        return re


# ---------------------------------------------------------------------------------------------- population
@dataclasses.dataclass(frozen=True)
class SourcePopulation:
    """The whole background-source model of one configuration (see the module docstring)."""

    counts: NumberCounts
    redshifts: RedshiftModel
    sizes: SizeRelation
    mag_min: float
    mag_limit: float
    dz_min: float
    sersic_n_range: tuple[float, float]
    axis_ratio_range: tuple[float, float]
    position_angle_range_deg: tuple[float, float]
    young_fraction_range: tuple[float, float] = (0.0, 0.0)  # F814W light in a young flat-f_nu burst (colours.py)

    @classmethod
    def from_config(cls, cfg) -> "SourcePopulation":
        """Build from ``cfg.simulate.sources`` (:class:`lenssearch.config.SourcePopulationConfig`)."""
        return cls(
            counts=NumberCounts(tuple(cfg.counts_mag_nodes), tuple(cfg.counts_log10_per_deg2_per_mag)),
            redshifts=RedshiftModel(tuple(cfg.z_bin_mag_edges), tuple(cfg.z_bin_forms), tuple(cfg.z_bin_z0),
                                    cfg.z_max),
            sizes=SizeRelation(cfg.re_const_kpc, cfg.re_z_pivot, cfg.re_norm_kpc, cfg.re_slope,
                               cfg.re_scatter_kpc, tuple(cfg.re_scatter_range_sigma), cfg.re_scatter_dex),
            mag_min=cfg.mag_min,
            mag_limit=cfg.mag_limit,
            dz_min=cfg.dz_min,
            sersic_n_range=tuple(cfg.sersic_n_range),
            axis_ratio_range=tuple(cfg.axis_ratio_range),
            position_angle_range_deg=tuple(cfg.position_angle_range_deg),
            young_fraction_range=tuple(cfg.young_fraction),
        )

    def sample(
        self,
        rng: np.random.Generator,
        z_cluster,
        kpc_per_arcsec: Callable[[np.ndarray], np.ndarray],
        size: int | None = None,
    ) -> Table:
        """Draw sources behind clusters at ``z_cluster`` (a scalar with ``size``, or one value per source).

        Parameters
        ----------
        rng
            The generator of every draw (in a fixed order: magnitudes, redshifts, sizes, n, q, angle, then the
            young fraction, drawn only when ``young_fraction_range`` is not (0, 0): the other draws stay the same).
        z_cluster
            Lens redshift(s); sources have ``z_s >= z_cluster + dz_min``.
        kpc_per_arcsec
            Proper kpc per arcsec at an array of redshifts (``Cosmology.kpc_per_arcsec_array``).
        size
            Number of sources when ``z_cluster`` is a scalar.

        Returns
        -------
        Table
            Columns ``mag_F814W``, ``z_s``, ``re_kpc``, ``re_arcsec``, ``sersic_n``, ``axis_ratio``,
            ``position_angle_deg``, and ``young_fraction`` when ``young_fraction_range`` is not (0, 0).
        """
        z_cluster = np.atleast_1d(np.asarray(z_cluster, float))
        if size is not None:
            z_cluster = np.broadcast_to(z_cluster, (size,)) if z_cluster.size == 1 else z_cluster
        n = z_cluster.size
        if size is not None and n != size:
            raise LensSearchError(f"simulate.sources: {n} cluster redshifts for {size} sources")
        mags = self.counts.sample(rng, n, self.mag_min, self.mag_limit)
        z_s = self.redshifts.sample(rng, mags, z_cluster + self.dz_min)
        re_kpc = self.sizes.sample_kpc(rng, z_s)
        scale = np.asarray(kpc_per_arcsec(z_s), dtype=float)
        sersic_n = rng.uniform(*self.sersic_n_range, size=n)
        q = rng.uniform(*self.axis_ratio_range, size=n)
        angle = rng.uniform(*self.position_angle_range_deg, size=n)
        table = Table(
            {
                "mag_F814W": mags,
                "z_s": z_s,
                "re_kpc": re_kpc,
                "re_arcsec": re_kpc / scale,
                "sersic_n": sersic_n,
                "axis_ratio": q,
                "position_angle_deg": angle,
            }
        )
        if max(self.young_fraction_range) > 0:
            table["young_fraction"] = rng.uniform(*self.young_fraction_range, size=n)
        return table

