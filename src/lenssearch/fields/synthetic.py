"""Synthetic HST/ACS cluster fields: mass model, light, PSFs and noise (kind ``synthetic``).

A synthetic field imitates a CLASH or Frontier-Fields cluster core observed with ACS/WFC in F435W, F606W and
F814W at 0.03"/pixel (Angora et al. 2023, Sect. 3.1 uses such fields):

Mass (a LensTool model, written as ``model.par``)
    one or two cluster-scale dPIE halos (LensTool profil 81) plus an external shear, and one circular-to-elliptical
    dPIE per cluster member (the BCG included) whose parameters follow LensTool's luminosity scaling relations
    (the ``potfile`` of Bergamini et al. 2019; Jullo et al. 2007): ``sigma = sigma* (L/L*)^(1/4)``,
    ``r_core = r_core* (L/L*)^(1/2)``, ``r_cut = r_cut* (L/L*)^(1/2)``, ``L/L* = 10^(-0.4 (m_F814W - m*))``.
Light
    members with F814W magnitudes from a Schechter (1976) luminosity function between ``m* - bright_offset`` and
    the magnitude limit, the BCG ``bcg_offset_mag`` brighter than ``m*`` at the main halo's centre, colours on a
    red sequence (the CWW elliptical template at the cluster redshift, a slope in magnitude and a Gaussian scatter),
    Sersic profiles (``n`` growing with luminosity) with ``R_e = R_e* (L/L*)^slope`` and log-normal scatter
    (Shen et al. 2003 for early types); a smooth intracluster light around the BCG; foreground and background
    field galaxies with number counts ``N(m) ~ 10^(slope m)``, ellipticals and blue discs with logarithmic spiral
    arms and a red bulge (the paper's main false positives); stars as point sources (with diffraction-like spikes
    when bright). Members are distributed with a cored projected density ``~ 1 / (1 + r^2 / r_c^2)`` around the
    halos, kept ``edge_margin_arcsec`` inside the frame so that their cutouts are complete.
Observation
    each band's frame is convolved with the band PSF (:mod:`lenssearch.fields.psf`), then Poisson noise of the
    sources (an effective exposure time) and Gaussian background noise whose sigma gives the configured 5-sigma
    point-source depth (:mod:`lenssearch.fields.photometry`) are added. Images are in e-/s, background-subtracted
    (zero mean sky), with a TAN WCS and the ACS AB zero points.

Lensing of the field galaxies by the cluster is not simulated (they are unlensed interlopers); the members'
own critical lines are computed from the model (:mod:`lenssearch.lensing.critical`), so members that are already
strong lenses are known.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from lenssearch.errors import LensSearchError
from lenssearch.fields import layout
from lenssearch.fields.light import (
    add_diffraction_spikes,
    add_point_source,
    add_stamp,
    convolve_frame,
    sersic_stamp,
    spiral_stamp,
)
from lenssearch.fields.photometry import mag_to_flux, pixel_sigma_from_depth, template_colours, zeropoint

C_KMS = 299792.458
#: Velocity dispersion of the members along the line of sight (km/s) for their redshifts.
MEMBER_VELOCITY_DISPERSION_KMS = 1000.0
#: Margin (arcsec) by which the deflection map extends beyond the image on every side.
MAP_MARGIN_ARCSEC = 8.0


def field_rng(seed: int, name: str, stream: int = 0) -> np.random.Generator:
    """The random generator of one field: derived from ``base.seed``, the field's name and a stream number."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(stream)])


# ------------------------------------------------------------------------------------------------ members
def schechter_magnitudes(rng, n: int, m_star: float, alpha: float, m_bright: float, m_faint: float) -> np.ndarray:
    """Draw ``n`` apparent magnitudes from a Schechter luminosity function between ``m_bright`` and ``m_faint``.

    ``phi(m) ~ 10^(0.4 (alpha + 1) (m* - m)) exp(-10^(0.4 (m* - m)))`` (Schechter 1976, in magnitudes), sampled
    by inverting its tabulated cumulative distribution.
    """
    if not m_faint > m_bright:
        raise LensSearchError(f"members: magnitude range must be increasing, got [{m_bright}, {m_faint}]")
    grid = np.linspace(m_bright, m_faint, 4001)
    x = 10.0 ** (0.4 * (m_star - grid))
    pdf = x ** (alpha + 1.0) * np.exp(-x)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    return np.interp(rng.uniform(size=n), cdf, grid)


def m_star_at(z: float, members_cfg, cosmology) -> float:
    """Apparent m* at redshift ``z``: the reference m* shifted by the distance-modulus difference."""
    dm = cosmology.astropy.distmod
    return float(members_cfg.m_star_F814W + dm(z).value - dm(members_cfg.z_ref).value)


def _cored_radii(rng, n: int, r_core: float, r_max: float) -> np.ndarray:
    """Radii with projected density ``~ 1/(1 + r^2/r_c^2)`` inside ``r_max`` (inverse of its cumulative)."""
    u = rng.uniform(size=n)
    return r_core * np.sqrt(np.expm1(u * np.log1p((r_max / r_core) ** 2)))


def draw_members(entry, synth, bands, cosmology, rng):
    """The member catalogue of a synthetic field (BCG first), with light and mass parameters.

    Returns an astropy Table with ``member_id``, ``x_arcsec``, ``y_arcsec`` (model frame, origin at the field
    centre), ``z``, ``mag_<band>``, ``re_arcsec``, ``sersic_n``, ``axis_ratio``, ``position_angle_deg``,
    ``sigma_kms``, ``core_radius_arcsec``, ``cut_radius_arcsec``, ``emass``, ``is_bcg``, ``halo``.
    """
    from astropy.table import Table

    mc = synth.members
    if entry.n_members < 1:
        raise LensSearchError(f"field.synthetic.fields '{entry.name}': n_members must be >= 1")
    if not entry.halos:
        raise LensSearchError(f"field.synthetic.fields '{entry.name}': at least one halo is required")
    z_l = entry.z_lens
    m_star = m_star_at(z_l, mc, cosmology)
    kpc = cosmology.kpc_per_arcsec(z_l)
    n = entry.n_members
    mags = np.empty(n)
    mags[0] = m_star - mc.bcg_offset_mag
    mags[1:] = np.sort(schechter_magnitudes(rng, n - 1, m_star, mc.schechter_alpha, m_star - mc.bright_offset_mag,
                                            mc.mag_limit_F814W))
    lum = 10.0 ** (-0.4 * (mags - m_star))

    # positions: BCG at the main halo, the brightest remaining members at the other halos, the rest cored
    half = 0.5 * entry.size_arcsec - mc.edge_margin_arcsec
    if half <= 0:
        raise LensSearchError(f"field '{entry.name}': size_arcsec too small for edge_margin_arcsec")
    weights = np.array([h.sigma_kms**3 for h in entry.halos])
    halo_of = rng.choice(len(entry.halos), size=n, p=weights / weights.sum())
    halo_of[0] = 0
    x = np.empty(n)
    y = np.empty(n)
    fixed = {0: 0}
    for k in range(1, len(entry.halos)):
        if k < n:
            fixed[k] = k
    for idx, k in fixed.items():
        halo_of[idx] = k
        x[idx], y[idx] = entry.halos[k].x_arcsec, entry.halos[k].y_arcsec
    todo = np.array([i for i in range(n) if i not in fixed], dtype=int)
    r_max = np.sqrt(2.0) * entry.size_arcsec
    while todo.size:
        h = halo_of[todo]
        cx = np.array([entry.halos[k].x_arcsec for k in h])
        cy = np.array([entry.halos[k].y_arcsec for k in h])
        r = _cored_radii(rng, todo.size, mc.core_radius_arcsec, r_max)
        phi = rng.uniform(0.0, 2.0 * np.pi, todo.size)
        x[todo], y[todo] = cx + r * np.cos(phi), cy + r * np.sin(phi)
        inside = (np.abs(x[todo]) <= half) & (np.abs(y[todo]) <= half)
        todo = todo[~inside]

    # light
    re_kpc = mc.re_star_kpc * lum**mc.re_luminosity_slope * 10.0 ** rng.normal(0.0, mc.re_scatter_dex, n)
    re_arcsec = np.clip(re_kpc / kpc, 0.04, None)
    n_lo, n_hi = mc.sersic_n_range
    frac = np.clip((mc.mag_limit_F814W - mags) / max(mc.mag_limit_F814W - mags[0], 1e-6), 0.0, 1.0)
    sersic_n = np.clip(n_lo + (n_hi - n_lo) * frac + rng.normal(0.0, 0.3, n), 1.0, 6.0)
    q_lo, q_hi = mc.axis_ratio_range
    q = rng.uniform(q_lo, q_hi, n)
    pa = rng.uniform(0.0, 180.0, n)
    base_colours = template_colours("E", z_l, tuple(bands))  # m_band - m_F814W of the elliptical template
    scatter = rng.normal(0.0, mc.red_sequence_scatter_mag, n)
    colour_slope = mc.red_sequence_slope * (mags - m_star)
    z = z_l + (1.0 + z_l) * rng.normal(0.0, MEMBER_VELOCITY_DISPERSION_KMS, n) / C_KMS

    # mass (LensTool potfile scaling relations)
    sigma = mc.sigma_star_kms * lum**0.25
    r_core = mc.core_radius_star_kpc * lum**0.5 / kpc
    r_cut = mc.cut_radius_star_kpc * lum**0.5 / kpc
    emass = (1.0 - q**2) / (1.0 + q**2)

    table = Table()
    table["member_id"] = np.array([f"{entry.name}-M{i:04d}" for i in range(n)])
    table["x_arcsec"] = x
    table["y_arcsec"] = y
    table["z"] = z
    for j, band in enumerate(bands):
        # slope and scatter are those of the widest colour (first band - F814W); each other colour gets them in
        # proportion to its template colour, so a redder galaxy is redder in every colour
        weight = base_colours[j] / base_colours[0] if base_colours[0] > 0 else 0.0
        table[f"mag_{band}"] = mags + base_colours[j] + weight * (colour_slope + scatter)
    table["re_arcsec"] = re_arcsec
    table["sersic_n"] = sersic_n
    table["axis_ratio"] = q
    table["position_angle_deg"] = pa
    table["sigma_kms"] = sigma
    table["core_radius_arcsec"] = r_core
    table["cut_radius_arcsec"] = r_cut
    table["emass"] = emass
    table["is_bcg"] = np.arange(n) == 0
    table["halo"] = halo_of
    table.meta["m_star_F814W"] = m_star
    return table


def build_mass_model(entry, members, cosmology):
    """The field's LensModel: cluster halos + external shear + one dPIE per member (LensTool profil 81)."""
    from lenssearch.lensing.model import LensComponent, LensModel

    kpc = cosmology.kpc_per_arcsec(entry.z_lens)
    comps = []
    for i, h in enumerate(entry.halos):
        comps.append(LensComponent("dpie", {
            "sigma_kms": h.sigma_kms, "core_radius_arcsec": h.core_radius_kpc / kpc,
            "cut_radius_arcsec": h.cut_radius_kpc / kpc, "emass": h.emass, "angle_deg": h.angle_deg,
            "center_x": h.x_arcsec, "center_y": h.y_arcsec}, f"HALO{i + 1}"))
    if entry.shear_gamma > 0:
        comps.append(LensComponent("shear", {"gamma": entry.shear_gamma, "angle_deg": entry.shear_angle_deg},
                                   "SHEAR"))
    for row in members:
        comps.append(LensComponent("dpie", {
            "sigma_kms": float(row["sigma_kms"]), "core_radius_arcsec": float(row["core_radius_arcsec"]),
            "cut_radius_arcsec": float(row["cut_radius_arcsec"]), "emass": float(row["emass"]),
            "angle_deg": float(row["position_angle_deg"]), "center_x": float(row["x_arcsec"]),
            "center_y": float(row["y_arcsec"])}, str(row["member_id"])))
    return LensModel(comps, entry.z_lens, cosmology)


# ------------------------------------------------------------------------------------------------ light
def _pixel_positions(wcs, ra, dec):
    px, py = wcs.world_to_pixel_values(np.asarray(ra, dtype=float), np.asarray(dec, dtype=float))
    return np.atleast_1d(px), np.atleast_1d(py)


def paint_members(frames, members, wcs, pixel_scale_arcsec, bands, zeropoints) -> None:
    """Add the members' Sersic light to the frames (``members`` needs ra, dec, mags and light parameters)."""
    from tqdm.auto import tqdm

    px, py = _pixel_positions(wcs, members["ra"], members["dec"])
    shape = next(iter(frames.values())).shape
    for i, row in enumerate(tqdm(members, desc="members", unit="gal", leave=False)):
        stamp = sersic_stamp(px[i], py[i], row["re_arcsec"] / pixel_scale_arcsec, float(row["sersic_n"]),
                             float(row["axis_ratio"]), float(row["position_angle_deg"]), shape)
        add_stamp(frames, stamp, {b: float(mag_to_flux(row[f"mag_{b}"], zeropoints[b])) for b in bands})


def paint_icl(frames, bcg, icl_cfg, z_lens, cosmology, wcs, pixel_scale_arcsec, bands, zeropoints) -> None:
    """Add the intracluster light: a Sersic around the BCG with the BCG's colours."""
    if icl_cfg.fraction_of_bcg_flux <= 0:
        return
    px, py = _pixel_positions(wcs, [bcg["ra"]], [bcg["dec"]])
    shape = next(iter(frames.values())).shape
    re_pix = icl_cfg.re_kpc / cosmology.kpc_per_arcsec(z_lens) / pixel_scale_arcsec
    stamp = sersic_stamp(px[0], py[0], re_pix, icl_cfg.sersic_n, icl_cfg.axis_ratio,
                         float(bcg["position_angle_deg"]), shape, max_half=max(shape), extent_re=6.0)
    fluxes = {b: icl_cfg.fraction_of_bcg_flux * float(mag_to_flux(bcg[f"mag_{b}"], zeropoints[b])) for b in bands}
    add_stamp(frames, stamp, fluxes)


def draw_field_galaxies(rng, n_side_arcsec: float, fg_cfg, bands, reference_radec):
    """Foreground/background galaxies: positions, F814W magnitudes from the counts, type, redshift, colours."""
    from astropy.table import Table

    from lenssearch.lensing.lenstool import xy_to_radec

    area_arcmin2 = (n_side_arcsec / 60.0) ** 2
    n = int(rng.poisson(fg_cfg.density_per_arcmin2 * area_arcmin2))
    lo, hi, s = fg_cfg.mag_bright_F814W, fg_cfg.mag_limit_F814W, fg_cfg.counts_slope
    u = rng.uniform(size=n)
    # N(m) ~ 10^(s m): inverse cumulative
    mags = np.log10(10 ** (s * lo) + u * (10 ** (s * hi) - 10 ** (s * lo))) / s
    half = 0.5 * n_side_arcsec
    x = rng.uniform(-half, half, n)
    y = rng.uniform(-half, half, n)
    z = rng.uniform(*fg_cfg.z_range, n)
    spiral = rng.uniform(size=n) < fg_cfg.spiral_fraction
    re = fg_cfg.re_arcsec_at_mag22 * 10.0 ** (fg_cfg.size_mag_slope * (mags - 22.0) + rng.normal(0, 0.15, n))
    t = Table()
    t["galaxy_id"] = np.array([f"G{i:05d}" for i in range(n)])
    t["x_arcsec"], t["y_arcsec"] = x, y
    t["ra"], t["dec"] = xy_to_radec(x, y, *reference_radec)
    t["z"] = z
    t["mag_F814W"] = mags
    t["kind"] = np.where(spiral, "spiral", "spheroid")
    t["re_arcsec"] = np.clip(re, 0.03, 3.0)
    t["sersic_n"] = np.where(spiral, 1.0, rng.uniform(1.0, 4.0, n))
    t["axis_ratio"] = np.where(spiral, rng.uniform(0.3, 1.0, n), rng.uniform(0.4, 1.0, n))
    t["position_angle_deg"] = rng.uniform(0.0, 180.0, n)
    t["bulge_fraction"] = np.where(spiral, rng.uniform(0.05, 0.3, n), 1.0)
    t["n_arms"] = np.where(rng.uniform(size=n) < 0.8, 2, 3)
    t["pitch_deg"] = rng.uniform(10.0, 30.0, n)
    t["arm_amplitude"] = rng.uniform(0.4, 0.9, n)
    t["arm_phase_rad"] = rng.uniform(0.0, 2 * np.pi, n)
    disc_colours = template_colours("Scd", z, tuple(bands))
    bulge_colours = template_colours("E", z, tuple(bands))
    young = template_colours("Im", z, tuple(bands))
    spheroid_colours = np.where((t["sersic_n"] > 2.5)[:, None], bulge_colours, young)
    for j, band in enumerate(bands):
        t[f"disc_colour_{band}"] = np.where(spiral, disc_colours[:, j], spheroid_colours[:, j])
        t[f"bulge_colour_{band}"] = bulge_colours[:, j]
    return t


def paint_field_galaxies(frames, galaxies, wcs, pixel_scale_arcsec, bands, zeropoints) -> None:
    """Add the field galaxies: spiral discs (blue disc + red bulge) and single Sersic spheroids."""
    from tqdm.auto import tqdm

    if len(galaxies) == 0:
        return
    px, py = _pixel_positions(wcs, galaxies["ra"], galaxies["dec"])
    shape = next(iter(frames.values())).shape
    for i, g in enumerate(tqdm(galaxies, desc="field galaxies", unit="gal", leave=False)):
        total = float(mag_to_flux(g["mag_F814W"], zeropoints["F814W"]))
        re_pix = float(g["re_arcsec"]) / pixel_scale_arcsec
        if g["kind"] == "spiral":
            bf = float(g["bulge_fraction"])
            # disc flux in F814W = (1 - bf) total; bulge = bf total; each with its own colours
            disc = spiral_stamp(px[i], py[i], re_pix / 1.678, float(g["axis_ratio"]), float(g["position_angle_deg"]),
                                shape, n_arms=int(g["n_arms"]), pitch_deg=float(g["pitch_deg"]),
                                amplitude=float(g["arm_amplitude"]), arm_phase_rad=float(g["arm_phase_rad"]))
            add_stamp(frames, disc, {b: (1 - bf) * total * 10 ** (-0.4 * (g[f"disc_colour_{b}"]
                                                                          - g["disc_colour_F814W"]))
                                     for b in bands})
            bulge = sersic_stamp(px[i], py[i], max(0.15 * re_pix, 0.5), 4.0, 0.8, float(g["position_angle_deg"]),
                                 shape)
            add_stamp(frames, bulge, {b: bf * total * 10 ** (-0.4 * (g[f"bulge_colour_{b}"]
                                                                     - g["bulge_colour_F814W"]))
                                      for b in bands})
        else:
            stamp = sersic_stamp(px[i], py[i], re_pix, float(g["sersic_n"]), float(g["axis_ratio"]),
                                 float(g["position_angle_deg"]), shape)
            add_stamp(frames, stamp, {b: total * 10 ** (-0.4 * (g[f"disc_colour_{b}"] - g["disc_colour_F814W"]))
                                      for b in bands})


def draw_stars(rng, n_side_arcsec: float, star_cfg, bands, reference_radec):
    """Stars: uniform positions, F814W magnitudes with shallow counts, main-sequence-like colours."""
    from astropy.table import Table

    from lenssearch.lensing.lenstool import xy_to_radec

    n = int(rng.poisson(star_cfg.density_per_arcmin2 * (n_side_arcsec / 60.0) ** 2))
    half = 0.5 * n_side_arcsec
    x = rng.uniform(-half, half, n)
    y = rng.uniform(-half, half, n)
    t = Table()
    t["star_id"] = np.array([f"S{i:03d}" for i in range(n)])
    t["x_arcsec"], t["y_arcsec"] = x, y
    t["ra"], t["dec"] = xy_to_radec(x, y, *reference_radec)
    m814 = rng.uniform(star_cfg.mag_bright_F814W, star_cfg.mag_limit_F814W, n)
    b_i = rng.uniform(0.5, 3.0, n)  # F435W - F814W of G-M dwarfs
    colours = {"F435W": b_i, "F606W": 0.42 * b_i, "F814W": np.zeros(n)}
    for band in bands:
        t[f"mag_{band}"] = m814 + colours.get(band, np.zeros(n))
    t["mag"] = m814
    return t


def paint_stars(frames, stars, wcs, bands, zeropoints, spike_mag_limit: float) -> None:
    """Add stars as point sources (the PSF convolution gives them their shape) with spikes when bright."""
    if len(stars) == 0:
        return
    px, py = _pixel_positions(wcs, stars["ra"], stars["dec"])
    for i, s in enumerate(stars):
        fluxes = {b: float(mag_to_flux(s[f"mag_{b}"], zeropoints[b])) for b in bands}
        add_point_source(frames, px[i], py[i], fluxes)
        if s["mag_F814W"] < spike_mag_limit:
            length = 40.0 * 10 ** (0.2 * (spike_mag_limit - s["mag_F814W"]))
            add_diffraction_spikes(frames, px[i], py[i], fluxes, length_pix=length)


def observe(frames, psfs, noise_sigma, rng, exposure_time_s=None) -> dict[str, np.ndarray]:
    """Convolve each band with its PSF, add the sources' Poisson noise (optional) and the background noise."""
    out = {}
    for band, frame in frames.items():
        img = convolve_frame(frame, psfs[band])
        if exposure_time_s is not None:
            t = float(exposure_time_s[band])
            img = img + rng.standard_normal(img.shape) * np.sqrt(np.clip(img, 0.0, None) / t)
        img = img + rng.normal(0.0, noise_sigma[band], img.shape)
        out[band] = img.astype(np.float32)
    return out


# ------------------------------------------------------------------------------------------------ the field
def noise_levels(synth, depth_key: str, bands, psfs) -> tuple[dict, dict]:
    """Per-band 5-sigma depths and background sigma (e-/s/pixel) of a depth preset."""
    if depth_key not in synth.depths:
        raise LensSearchError(f"field.synthetic.depths: no depth preset '{depth_key}' (have {list(synth.depths)})")
    depths = synth.depths[depth_key]
    missing = [b for b in bands if b not in depths]
    if missing:
        raise LensSearchError(f"field.synthetic.depths.{depth_key}: missing band(s) {missing}")
    sigma = {b: pixel_sigma_from_depth(float(depths[b]), zeropoint(b), psfs[b]) for b in bands}
    return {b: float(depths[b]) for b in bands}, sigma


def critical_line_catalogues(model, members, cfg, reference_radec, progress: bool = True):
    """Secondary critical-line catalogues per source redshift (:mod:`lenssearch.lensing.critical`)."""
    from astropy.table import Table

    from lenssearch.lensing.critical import secondary_critical_lines

    cl = cfg.field.critical_lines
    table = Table({"id": members["member_id"], "x": members["x_arcsec"], "y": members["y_arcsec"]})
    out = {}
    for z_s in cl.source_redshifts:
        out[float(z_s)] = secondary_critical_lines(
            model, table, float(z_s), resolution_arcsec=cl.resolution_arcsec,
            search_radius_arcsec=cl.search_radius_arcsec, theta_e_min_arcsec=cl.theta_e_min_arcsec,
            theta_e_max_arcsec=cl.theta_e_max_arcsec, reference_radec=reference_radec, progress=progress)
    return out


def render_field(entry, cfg, members, psfs, rng, reference_radec, wcs, shape):
    """Paint all the light of a synthetic field and observe it; returns images, stars and field galaxies."""
    synth = cfg.field.synthetic
    bands = tuple(cfg.base.bands)
    zps = {b: zeropoint(b) for b in bands}
    from lenssearch.lensing.cosmology import Cosmology

    cosmology = Cosmology.from_config(cfg.base.cosmology)
    scale = cfg.base.pixel_scale_arcsec
    frames = {b: np.zeros(shape) for b in bands}
    paint_icl(frames, members[0], synth.icl, entry.z_lens, cosmology, wcs, scale, bands, zps)
    paint_members(frames, members, wcs, scale, bands, zps)
    galaxies = draw_field_galaxies(rng, entry.size_arcsec, synth.field_galaxies, bands, reference_radec)
    paint_field_galaxies(frames, galaxies, wcs, scale, bands, zps)
    stars = draw_stars(rng, entry.size_arcsec, synth.stars, bands, reference_radec)
    paint_stars(frames, stars, wcs, bands, zps, synth.stars.spike_mag_limit)
    depths, sigma = noise_levels(synth, entry.depth, bands, psfs)
    exptime = synth.exposure_time_s if synth.source_poisson else None
    images = observe(frames, psfs, sigma, rng, exptime)
    return images, stars, galaxies, depths, sigma


def build_synthetic_field(entry, cfg, out_dir: str | Path, *, with_critical_lines: bool = True) -> Path:
    """Build one synthetic field and write its directory ``out_dir/<name>/`` (atomically, all or nothing).

    Parameters
    ----------
    entry
        A :class:`lenssearch.config.SyntheticFieldEntry`.
    cfg
        The whole configuration (``base``, ``field``).
    out_dir
        The fields root (``data/fields``).
    with_critical_lines
        Compute the secondary critical-line catalogues (the slow part; tests of the images may skip it).

    Returns
    -------
    Path
        The field directory.
    """
    from lenssearch.fields.parfile import write_parfile
    from lenssearch.fields.psf import band_psfs
    from lenssearch.io import atomic_path
    from lenssearch.lensing.cosmology import Cosmology
    from lenssearch.lensing.critical import write_secondary_catalogue
    from lenssearch.lensing.deflection_maps import compute_deflection_map, tan_wcs, write_deflection_fits
    from lenssearch.lensing.lenstool import xy_to_radec

    synth = cfg.field.synthetic
    bands = tuple(cfg.base.bands)
    scale = cfg.base.pixel_scale_arcsec
    cosmology = Cosmology.from_config(cfg.base.cosmology)
    rng = field_rng(cfg.base.seed, entry.name)
    reference = (float(entry.center_radec[0]), float(entry.center_radec[1]))
    n_pix = int(round(entry.size_arcsec / scale))
    shape = (n_pix, n_pix)
    wcs = tan_wcs(reference, shape, scale)

    members = draw_members(entry, synth, bands, cosmology, rng)
    ra, dec = xy_to_radec(members["x_arcsec"], members["y_arcsec"], *reference)
    members.add_column(ra, name="ra", index=1)
    members.add_column(dec, name="dec", index=2)
    model = build_mass_model(entry, members, cosmology)
    psfs = band_psfs(bands, scale, synth.psf_size_pixels, synth.psf_fwhm_arcsec)
    images, stars, galaxies, depths, sigma = render_field(entry, cfg, members, psfs, rng, reference, wcs, shape)

    # deflection map larger than the image: local lens grids around members near the edge (critical lines,
    # injection) and interpolation never run off its edge
    margin = max(MAP_MARGIN_ARCSEC, cfg.field.critical_lines.search_radius_arcsec + 2.0)
    n_map = int(np.ceil((entry.size_arcsec + 2.0 * margin) / synth.deflection_pixel_arcsec))
    map_wcs = tan_wcs(reference, (n_map, n_map), synth.deflection_pixel_arcsec)
    dmap = compute_deflection_map(model, map_wcs, (n_map, n_map), reference, z_lens=entry.z_lens,
                                  cosmology=cosmology)
    lines = critical_line_catalogues(model, members, cfg, reference) if with_critical_lines else {}

    mc = synth.members
    comments = (
        f"lenssearch synthetic field {entry.name} (z_lens = {entry.z_lens})",
        f"members: LensTool potfile scaling, sigma = {mc.sigma_star_kms} (L/L*)^(1/4) km/s, "
        f"r_core = {mc.core_radius_star_kpc} (L/L*)^(1/2) kpc, r_cut = {mc.cut_radius_star_kpc} (L/L*)^(1/2) kpc,",
        f"m*_F814W = {members.meta['m_star_F814W']:.3f}",
    )
    info = {
        "name": entry.name,
        "kind": "synthetic",
        "z_lens": entry.z_lens,
        "reference_radec": list(reference),
        "bands": list(bands),
        "pixel_scale_arcsec": scale,
        "shape": list(shape),
        "zeropoints_ab": {b: zeropoint(b) for b in bands},
        "noise_sigma": sigma,
        "depth_5sigma_ab": depths,
        "depth_preset": entry.depth,
        "m_star_F814W": float(members.meta["m_star_F814W"]),
        "sigma_star_kms": synth.members.sigma_star_kms,
        "model_source": "model.par (synthetic, lenssearch.fields.synthetic)",
        "n_members": len(members),
        "n_field_galaxies": len(galaxies),
        "n_stars": len(stars),
        "critical_line_source_redshifts": sorted(lines),
        "psf": {b: ("empirical ACS/WFC F814W (Anderson)" if b == "F814W" else "Airy x Gaussian x pixel")
                for b in bands},
    }
    out_dir = Path(out_dir)
    target = out_dir / entry.name
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        write_parfile(tmp / layout.MODEL_PAR, model, reference, comments=comments)
        for band in bands:
            layout.write_image(tmp / layout.image_name(band), images[band], wcs, band, zeropoint(band),
                               {"NOISESIG": (sigma[band], "[e-/s] background sigma per pixel"),
                                "DEPTH5": (depths[band], "5-sigma point-source AB depth")})
            layout.write_psf(tmp / layout.psf_name(band), psfs[band], band, scale, info["psf"][band])
        write_deflection_fits(dmap, tmp / layout.DEFLECTION)
        layout.write_table(tmp / layout.MEMBERS, members)
        layout.write_table(tmp / layout.STARS, stars)
        layout.write_table(tmp / "field_galaxies.ecsv", galaxies)
        for z_s, table in lines.items():
            write_secondary_catalogue(table, tmp / layout.critical_lines_name(z_s))
        layout.write_json(tmp / layout.FIELD_JSON, info)
    return target
