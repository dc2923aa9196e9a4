"""Colours of the injected sources: a star-forming SED redshifted through the ACS throughputs.

The paper uses a star-forming template of Kinney et al. (1996); GalSim ships the Coleman, Wu & Weedman (1980)
templates extended to the UV by Bolzonella et al. (2000), and we use its irregular (``CWW_Im_ext``, the bluest,
actively star-forming) template by default. The redshifted spectrum is attenuated by the mean intergalactic
absorption of Madau (1995): Lyman-series line blanketing (Lyα..Lyδ, eq. 12 and Table 2) plus the
photoelectric absorption by optically thin systems shortward of the Lyman limit (the approximation of his
footnote 3). Shortward of 912 Å rest-frame the template is also set to zero (no escaping ionising photons).
With this, sources at ``z >~ 4`` drop out of F435W (their Lyman break is redward of the band).

AB magnitudes per band (Fukugita et al. 1996 / Oke & Gunn 1983):

    m_AB = -2.5 log10( int f_lambda T lambda dlambda / int T c / lambda dlambda ) - 48.6,

computed on a redshift grid once and interpolated (:class:`ColourModel`), so a colour costs microseconds.
Magnitudes are normalised to the drawn F814W magnitude: ``m_b = m_F814W + (m_b - m_F814W)(z)``.

A source may also carry a young burst (``simulate.sources.young_fraction``, drawn per source): a flat ``f_nu``
spectrum (AB colours 0 before the IGM) holding a fraction ``y`` of its F814W light, redshifted and attenuated
like the template, so ``m_b = m_F814W - 2.5 log10((1 - y) 10^(-0.4 c_b(z)) + y 10^(-0.4 c^young_b(z)))``. The
template's UV is redder than that of z ~ 2-3 star-forming galaxies (UV slopes beta ~ -1.7 +- 0.4, Bouwens et al.
2014; a flat ``f_nu`` is beta = -2); the confusers' discs and rings carry the same burst at the cluster redshift.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np

from lenssearch.errors import LensSearchError

#: Rest wavelengths (Å) and Madau (1995) coefficients of the Lyman series (Lyα, Lyβ, Lyγ, Lyδ).
LYMAN_SERIES_A = np.array([1215.67, 1025.72, 972.537, 949.743])
LYMAN_SERIES_COEFF = np.array([3.6e-3, 1.7e-3, 1.2e-3, 9.3e-4])
LYMAN_LIMIT_A = 911.75
SPEED_OF_LIGHT_A_PER_S = 2.99792458e18

#: GalSim's name for the ACS/WFC throughput of each band.
ACS_BANDPASS_FILES = {"F435W": "ACS_wfc_F435W.dat", "F606W": "ACS_wfc_F606W.dat", "F814W": "ACS_wfc_F814W.dat",
                      "F775W": "ACS_wfc_F775W.dat", "F850LP": "ACS_wfc_F850LP.dat"}


def galsim_share_dir() -> Path:
    """GalSim's data folder (SEDs and bandpasses), without importing all of GalSim."""
    import importlib.util

    spec = importlib.util.find_spec("galsim")
    if spec is None or not spec.submodule_search_locations:
        raise LensSearchError("simulate: GalSim is not installed (its SEDs and ACS throughputs are needed)")
    share = Path(list(spec.submodule_search_locations)[0]) / "share"
    if not share.is_dir():
        import galsim.meta_data  # an unusual install: ask GalSim itself

        share = Path(galsim.meta_data.share_dir)
    return share


def read_two_columns(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a two-column text table (``#`` comments), raising LensSearchError naming the file."""
    try:
        data = np.loadtxt(path, comments="#")
    except (OSError, ValueError) as exc:
        raise LensSearchError(f"{path}: cannot read a two-column table ({exc})") from None
    if data.ndim != 2 or data.shape[1] < 2:
        raise LensSearchError(f"{path}: expected two columns (wavelength, value)")
    return data[:, 0].astype(float), data[:, 1].astype(float)


def read_sed(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A GalSim SED (``<share>/SEDs/<name>.sed``): wavelength in Å, f_lambda (arbitrary units)."""
    path = galsim_share_dir() / "SEDs" / f"{name}.sed"
    if not path.exists():
        choices = sorted(p.stem for p in (galsim_share_dir() / "SEDs").glob("*.sed"))
        raise LensSearchError(f"simulate.sources.sed: no SED '{name}' in {path.parent}; choose one of {choices}")
    return read_two_columns(path)


def read_bandpass(band: str) -> tuple[np.ndarray, np.ndarray]:
    """ACS/WFC total throughput of ``band``: wavelength in Å, throughput (GalSim's files are in nm)."""
    if band not in ACS_BANDPASS_FILES:
        raise LensSearchError(f"simulate: no ACS throughput for band '{band}', expected {sorted(ACS_BANDPASS_FILES)}")
    wave, thr = read_two_columns(galsim_share_dir() / "bandpasses" / ACS_BANDPASS_FILES[band])
    if wave.max() < 3000:  # GalSim stores nm
        wave = wave * 10.0
    return wave, np.clip(thr, 0.0, None)


def madau1995_transmission(wave_obs_a, z: float) -> np.ndarray:
    """Mean IGM transmission ``exp(-tau_eff)`` at observed wavelengths for a source at ``z`` (Madau 1995).

    Line blanketing: ``tau = sum_j A_j (lambda_obs / lambda_j)^3.46`` for ``lambda_obs < lambda_j (1 + z)``
    (eq. 12, Table 2). Lyman continuum (``lambda_obs < 912 (1 + z)``), footnote 3 with ``x_c = lambda/912``,
    ``x_em = 1 + z``:
    ``0.25 x_c^3 (x_em^0.46 - x_c^0.46) + 9.4 x_c^1.5 (x_em^0.18 - x_c^0.18)
    - 0.7 x_c^3 (x_c^-1.32 - x_em^-1.32) - 0.023 (x_em^1.68 - x_c^1.68)``.
    """
    wave = np.asarray(wave_obs_a, float)
    tau = np.zeros_like(wave)
    for lam, coeff in zip(LYMAN_SERIES_A, LYMAN_SERIES_COEFF):
        sel = wave < lam * (1.0 + z)
        tau[sel] += coeff * (wave[sel] / lam) ** 3.46
    x_em = 1.0 + z
    x_c = wave / LYMAN_LIMIT_A
    sel = x_c < x_em
    xc = x_c[sel]
    tau_c = (0.25 * xc**3 * (x_em**0.46 - xc**0.46) + 9.4 * xc**1.5 * (x_em**0.18 - xc**0.18)
             - 0.7 * xc**3 * (xc ** -1.32 - x_em ** -1.32) - 0.023 * (x_em**1.68 - xc**1.68))
    tau[sel] += np.maximum(tau_c, 0.0)
    return np.exp(-np.minimum(tau, 700.0))


def ab_magnitude(wave_a, f_lambda, band_wave_a, band_thr) -> float:
    """AB magnitude (up to the SED's arbitrary zero point) of ``f_lambda`` through a throughput."""
    thr = np.interp(wave_a, band_wave_a, band_thr, left=0.0, right=0.0)
    num = np.trapezoid(f_lambda * thr * wave_a, wave_a)
    den = np.trapezoid(thr * SPEED_OF_LIGHT_A_PER_S / wave_a, wave_a)
    if num <= 0:
        return np.inf
    return float(-2.5 * np.log10(num / den) - 48.6)


@dataclasses.dataclass(frozen=True)
class ColourModel:
    """``m_band - m_F814W`` as a function of redshift, tabulated on a grid and interpolated.

    Build with :meth:`build`. ``colours[i, j]`` is the colour of band ``bands[i]`` at ``z_grid[j]``; a band that
    receives no flux at all gets a colour of :data:`DROPOUT_COLOUR` (the source is invisible there).
    """

    bands: tuple[str, ...]
    reference_band: str
    z_grid: np.ndarray
    colours: np.ndarray
    sed: str
    young_colours: np.ndarray  # the same for a flat-f_nu spectrum (a young burst), IGM-attenuated

    @classmethod
    def build(cls, bands=("F435W", "F606W", "F814W"), sed: str = "CWW_Im_ext", reference_band: str = "F814W",
              z_max: float = 7.5, dz: float = 0.01) -> "ColourModel":
        return _build_cached(tuple(bands), sed, reference_band, float(z_max), float(dz))

    @classmethod
    def for_sources(cls, bands, sources) -> "ColourModel":
        """The lensed sources' colours (``simulate.sources``: its ``sed``, to ``z_max + 0.5``), relative to F814W:
        the one model the mocks, the hard negatives' companions and the demo search's planted lenses share."""
        return cls.build(tuple(bands), sources.sed, "F814W", sources.z_max + 0.5)

    def colour(self, band: str, z) -> np.ndarray:
        """``m_band - m_reference`` at redshift(s) ``z``."""
        try:
            i = self.bands.index(band)
        except ValueError:
            raise LensSearchError(f"simulate: no colour for band '{band}', known bands {list(self.bands)}") from None
        return np.interp(np.asarray(z, float), self.z_grid, self.colours[i])

    def magnitudes(self, mag_reference, z, young_fraction=None) -> dict[str, np.ndarray]:
        """Magnitudes in every band for sources of reference magnitude ``mag_reference`` at ``z``; with
        ``young_fraction`` (per source, in [0, 1]) that fraction of the reference-band light is a young flat-f_nu
        burst (module docstring). ``None`` or 0: the template alone."""
        mag_reference = np.asarray(mag_reference, float)
        if young_fraction is None or not np.any(np.asarray(young_fraction, float) > 0):
            return {b: mag_reference + self.colour(b, z) for b in self.bands}
        y = np.asarray(young_fraction, float)
        if np.any((y < 0) | (y > 1)):
            raise LensSearchError(f"simulate: young_fraction {y} outside [0, 1]")
        out = {}
        for i, b in enumerate(self.bands):
            young = np.interp(np.asarray(z, float), self.z_grid, self.young_colours[i])
            flux = (1.0 - y) * 10.0 ** (-0.4 * self.colour(b, z)) + y * 10.0 ** (-0.4 * young)
            colour = np.minimum(-2.5 * np.log10(np.maximum(flux, 10.0 ** (-0.4 * DROPOUT_COLOUR))), DROPOUT_COLOUR)
            out[b] = mag_reference + colour
        return out


#: Colour given to a band with no transmitted flux (flux ratio 10^-20: nothing).
DROPOUT_COLOUR = 50.0


@functools.lru_cache(maxsize=8)
def _build_cached(bands, sed, reference_band, z_max, dz) -> ColourModel:
    wave_rest, flam_rest = read_sed(sed)
    throughputs = {b: read_bandpass(b) for b in set(bands) | {reference_band}}
    lo = min(w.min() for w, _ in throughputs.values())
    hi = max(w.max() for w, _ in throughputs.values())
    wave_obs = np.linspace(lo, hi, 4000)
    z_grid = np.round(np.arange(0.0, z_max + dz / 2, dz), 6)
    colours = _colour_table(wave_rest, flam_rest, bands, reference_band, throughputs, wave_obs, z_grid)
    flat_wave = np.geomspace(100.0, 3.0e5, 20000)
    young = _colour_table(flat_wave, flat_wave**-2.0, bands, reference_band, throughputs, wave_obs, z_grid)
    return ColourModel(tuple(bands), reference_band, z_grid, colours, sed, young)


def _colour_table(wave_rest, flam_rest, bands, reference_band, throughputs, wave_obs, z_grid) -> np.ndarray:
    """``m_band - m_reference`` of a rest-frame ``f_lambda`` on ``z_grid`` (no flux below the Lyman limit, Madau
    1995 IGM)."""
    flam_rest = np.where(wave_rest < LYMAN_LIMIT_A, 0.0, flam_rest)
    colours = np.empty((len(bands), z_grid.size))
    for j, z in enumerate(z_grid):
        # f_lambda observed ∝ f_lambda,rest(lambda/(1+z)) / (1+z); the constant cancels in colours
        flam = np.interp(wave_obs / (1.0 + z), wave_rest, flam_rest, left=0.0, right=0.0)
        flam = flam * madau1995_transmission(wave_obs, z)
        m_ref = ab_magnitude(wave_obs, flam, *throughputs[reference_band])
        for i, b in enumerate(bands):
            m = ab_magnitude(wave_obs, flam, *throughputs[b])
            colours[i, j] = min(m - m_ref, DROPOUT_COLOUR) if np.isfinite(m) else DROPOUT_COLOUR
    colours.setflags(write=False)
    return colours
