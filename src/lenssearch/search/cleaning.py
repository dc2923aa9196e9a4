"""Removal of false positives among the network's candidates, after HOLISMOKES XVI (Schuldt et al. 2025).

Schuldt et al. (2025, Sect. 3.1) clean the committee's candidates before visual inspection: cutouts with residual
background emission in one or more bands (found with SExtractor's source masking and sky estimate), cutouts near
bright stars (>90% of pixels flagged as near a bright object), crowded cutouts (>99% of pixels flagged as
detected), and cutouts at edges or masked; then (Sect. 4) duplicates within 2" are removed, keeping the entry with
the largest Kron radius so that the most extended, most likely deflector stays at the centre. As they argue,
cleaning only the candidates (after ranking) is far cheaper than cleaning every cutout, and that is what
:func:`lenssearch.search.pipeline.run_search` does.

Here ``sep`` plays SExtractor: for each band of a cutout, sources are detected above ``detect_thresh_sigma`` times
the band's pixel noise (the images are background-subtracted, so a residual pedestal is detected too), and the
background is estimated with those sources masked. Measurements (:func:`measure_cutouts`) are then turned into
flags by the rules of :data:`RULES`, each counted separately. Thresholds come from the ``search.cleaning``
section of params.yaml (:class:`lenssearch.config.SearchCleaningConfig`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from lenssearch.config import SearchCleaningConfig as CleaningParams

#: Pixels of a cutout that hold exactly zero in a band are "no data" (drizzle convention outside coverage).
NO_DATA_VALUE = 0.0


#: Names of the measurements returned by :func:`measure_cutouts`.
MEASUREMENTS = ("background_sigma", "detected_fraction", "masked_fraction", "kron_radius_arcsec")


def _measure_band(data: np.ndarray, sigma: float, params: CleaningParams, deblend: bool = True):
    """Detected fraction, |background|/sigma and detections of one band of one cutout.

    Deblending (the costly part of sep) only matters for the Kron radius of the central source, so it is
    switched off in the other bands: the detected pixels are the same.
    """
    import sep

    no_data = data == NO_DATA_VALUE
    try:
        objects, seg = sep.extract(
            data, params.detect_thresh_sigma, err=sigma, mask=no_data, minarea=params.detect_minarea_pix,
            segmentation_map=True, deblend_cont=0.005 if deblend else 1.0, clean=deblend,
        )
        detected = seg > 0
    except Exception:  # sep overflows its object or pixel stack on very crowded cutouts
        objects = None
        detected = data > params.detect_thresh_sigma * sigma
    detected_fraction = float(detected.mean())
    masked = detected | no_data
    if no_data.all():
        background = 0.0
    elif masked.mean() > 0.9:
        # Almost everything is "detected": a pedestal (residual emission) or a crowded field. The median of the
        # data pixels measures the pedestal; a crowded field is caught by the crowding rule anyway.
        background = abs(float(np.median(data[~no_data]))) / sigma
    else:
        box = params.background_box_pix
        bkg = sep.Background(data, mask=masked, bw=box, bh=box, fw=3, fh=3)
        background = abs(float(bkg.globalback)) / sigma
    return detected_fraction, background, objects


def _kron_radius_pix(data: np.ndarray, objects, center_radius_pix: float) -> float:
    """Kron radius (pixels, ``kronrad * sqrt(a b)`` as SExtractor) of the detection nearest to the centre."""
    import sep

    if objects is None or len(objects) == 0:
        return 0.0
    centre = (data.shape[1] // 2, data.shape[0] // 2)
    dist = np.hypot(objects["x"] - centre[0], objects["y"] - centre[1])
    i = int(np.argmin(dist))
    if dist[i] > center_radius_pix:
        return 0.0
    obj = objects[i : i + 1]
    kron, _ = sep.kron_radius(data, obj["x"], obj["y"], obj["a"], obj["b"], obj["theta"], 6.0)
    return float(kron[0] * np.sqrt(obj["a"][0] * obj["b"][0]))


def measure_cutouts(
    cutouts: np.ndarray,
    noise_sigma: np.ndarray,
    bands: tuple[str, ...],
    pixel_scale_arcsec: float,
    params: CleaningParams,
) -> dict[str, np.ndarray]:
    """Measurements of each cutout that the cleaning rules use.

    Parameters
    ----------
    cutouts
        n x S x S x B, electrons/s, background-subtracted.
    noise_sigma
        Pixel noise of each band (e-/s).
    bands
        Band names in the order of the last axis (to find ``params.kron_band``).

    Returns
    -------
    dict
        ``background_sigma`` (largest |sep background| over bands, in units of the band's noise),
        ``detected_fraction`` (largest fraction of detected pixels over bands), ``masked_fraction`` (fraction of
        pixels with no data in some band) and ``kron_radius_arcsec`` of the central source in ``kron_band``.
    """
    n = len(cutouts)
    out = {name: np.zeros(n) for name in MEASUREMENTS}
    kron_b = bands.index(params.kron_band) if params.kron_band in bands else len(bands) - 1
    center_radius_pix = params.center_radius_arcsec / pixel_scale_arcsec
    for i in range(n):
        cutout = cutouts[i]
        out["masked_fraction"][i] = float((cutout == NO_DATA_VALUE).any(axis=-1).mean())
        for b in range(cutout.shape[-1]):
            data = np.ascontiguousarray(cutout[..., b], dtype=np.float32)
            detected, background, objects = _measure_band(data, float(noise_sigma[b]), params, deblend=b == kron_b)
            out["detected_fraction"][i] = max(out["detected_fraction"][i], detected)
            out["background_sigma"][i] = max(out["background_sigma"][i], background)
            if b == kron_b:
                out["kron_radius_arcsec"][i] = _kron_radius_pix(data, objects, center_radius_pix) * pixel_scale_arcsec
    return out


# ----------------------------------------------------------------------------------------------- rules
def rule_edge(m: dict[str, np.ndarray], params: CleaningParams) -> np.ndarray:
    """Cutouts that run off the image."""
    return m["inside_fraction"] < 1.0


def rule_masked(m: dict[str, np.ndarray], params: CleaningParams) -> np.ndarray:
    """Cutouts with more than ``masked_max_fraction`` of no-data pixels."""
    return m["masked_fraction"] > params.masked_max_fraction


def rule_bright_star(m: dict[str, np.ndarray], params: CleaningParams) -> np.ndarray:
    """Cutouts centred within ``star_radius_arcsec`` of a star brighter than ``star_mag_max``."""
    return m["star_distance_arcsec"] < params.star_radius_arcsec


def rule_background(m: dict[str, np.ndarray], params: CleaningParams) -> np.ndarray:
    """Cutouts with residual background emission above ``background_max_sigma`` in some band."""
    return m["background_sigma"] > params.background_max_sigma


def rule_crowded(m: dict[str, np.ndarray], params: CleaningParams) -> np.ndarray:
    """Crowded cutouts: more than ``crowded_max_fraction`` of the pixels detected in some band."""
    return m["detected_fraction"] > params.crowded_max_fraction


#: Rule name -> function(measurements, params) -> rejected; applied and counted in this order.
RULES: dict[str, Callable[[dict[str, np.ndarray], CleaningParams], np.ndarray]] = {
    "edge": rule_edge,
    "masked": rule_masked,
    "bright_star": rule_bright_star,
    "background": rule_background,
    "crowded": rule_crowded,
}


def apply_rules(measurements: dict[str, np.ndarray], params: CleaningParams) -> dict[str, np.ndarray]:
    """Flags of every rule of :data:`RULES` (True = rejected), each evaluated independently."""
    return {name: np.asarray(rule(measurements, params), dtype=bool) for name, rule in RULES.items()}


# ----------------------------------------------------------------------------------------------- geometry
def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _chord(radius_arcsec: float) -> float:
    return 2.0 * np.sin(np.radians(radius_arcsec / 3600.0) / 2.0)


def nearest_neighbour(
    ra_deg: np.ndarray, dec_deg: np.ndarray, ref_ra: np.ndarray, ref_dec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Angular distance (arcsec) from each position to the nearest reference position, and its index.

    Positions without finite coordinates, or an empty reference list, give distance inf and index -1.
    """
    from scipy.spatial import cKDTree

    ra_deg = np.asarray(ra_deg, float)
    dec_deg = np.asarray(dec_deg, float)
    ref_ra = np.asarray(ref_ra, float)
    ref_dec = np.asarray(ref_dec, float)
    dist = np.full(ra_deg.shape, np.inf)
    index = np.full(ra_deg.shape, -1, dtype=np.int64)
    finite = np.isfinite(ra_deg) & np.isfinite(dec_deg)
    ref_ok = np.flatnonzero(np.isfinite(ref_ra) & np.isfinite(ref_dec))
    if ref_ok.size == 0 or not finite.any():
        return dist, index
    tree = cKDTree(_unit_vectors(ref_ra[ref_ok], ref_dec[ref_ok]))
    chord, j = tree.query(_unit_vectors(ra_deg[finite], dec_deg[finite]))
    dist[finite] = np.degrees(2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))) * 3600.0
    index[finite] = ref_ok[j]
    return dist, index


def remove_duplicates(
    ra_deg: np.ndarray,
    dec_deg: np.ndarray,
    kron_radius_arcsec: np.ndarray,
    radius_arcsec: float,
    score: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Remove duplicates within ``radius_arcsec``, keeping the entry with the largest Kron radius.

    HOLISMOKES XVI, Sect. 4: entries are ranked by decreasing Kron radius and every entry within the radius of a
    higher-ranked kept entry is removed. Ties in Kron radius are broken by the higher score, then by row order.
    Entries with unknown positions (NaN) are always kept.

    Returns
    -------
    keep, duplicate_of
        Boolean mask of kept entries, and for each removed entry the row of the kept entry that removed it
        (-1 for kept entries).
    """
    from scipy.spatial import cKDTree

    ra_deg = np.asarray(ra_deg, float)
    dec_deg = np.asarray(dec_deg, float)
    n = ra_deg.size
    keep = np.ones(n, dtype=bool)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    finite = np.flatnonzero(np.isfinite(ra_deg) & np.isfinite(dec_deg))
    if finite.size < 2:
        return keep, duplicate_of
    tree = cKDTree(_unit_vectors(ra_deg[finite], dec_deg[finite]))
    neighbours = tree.query_ball_point(tree.data, _chord(radius_arcsec))
    kron = np.nan_to_num(np.asarray(kron_radius_arcsec, float)[finite], nan=-np.inf)
    sc = np.zeros(finite.size) if score is None else np.nan_to_num(np.asarray(score, float)[finite], nan=-np.inf)
    order = np.lexsort((np.arange(finite.size), -sc, -kron))
    removed = np.zeros(finite.size, dtype=bool)
    for i in order:
        if removed[i]:
            continue
        for j in neighbours[i]:
            if j != i and not removed[j]:
                removed[j] = True
                duplicate_of[finite[j]] = finite[i]
    keep[finite[removed]] = False
    return keep, duplicate_of
