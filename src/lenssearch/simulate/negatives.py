"""The ``negatives`` stage: 128 x 128 cutouts centred on cluster members, without injection.

Angora et al. (2023), Sect. 3.2 select non-lenses among the members by visual inspection and exclude cutouts
with bright stars, at the edge of the field of view or with incomplete multi-band coverage. Here the fields are
known, so the exclusions are explicit; each member is tested in this order and the first failing test is its
reason (counted in ``reports/negatives/metrics.json``):

1. ``edge``: the cutout is not ``edge_margin_pixels`` inside the frame;
2. ``coverage``: some band has more than ``max_bad_pixel_fraction`` of NaN or exactly-zero pixels;
3. ``bright_star``: a star of ``stars.ecsv`` brighter than ``star_mag_limit`` (F814W) lies within
   ``star_exclusion_radius_arcsec`` of the member;
4. ``strong_lens`` (only when ``strong_lens_theta_e_min_arcsec`` is set): the member could be a strong lens,
   i.e. it owns a secondary critical line with ``theta_E > strong_lens_theta_e_min_arcsec`` in the field's
   catalogue at the source redshift nearest to ``strong_lens_source_redshift`` (``critical_lines_zs<z>.ecsv``).

The paper's non-lenses are members that *show* no lensing feature on visual inspection, not members without a
critical line: "the same CLM cutout can be used in the training set as a mock GGSL or a non-GGSL" (Sect. 3.2).
In the synthetic and painted fields no background galaxy is lensed by a member, so every member passes that
inspection and the default (``null``) excludes none for its mass. Excluding every member with a critical line
would make the non-lenses systematically less massive and fainter than the mock lenses' hosts, a shortcut
(lens galaxy brightness, member identity) that the networks learn instead of the arcs. For real images, which
may hold real galaxy-galaxy lenses, ``0.2`` is a conservative stand-in for visual vetting.

Of the members left, ``n_negatives`` (split evenly over the fields; all of them when a field has fewer) are drawn
without replacement with ``default_rng([base.seed, NEGATIVES_STREAM, field index])`` and kept in catalogue order.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lenssearch.errors import LensSearchError

#: Stream offset of the ``negatives`` stage in the seed sequence ``[base.seed, stream, ...]``.
NEGATIVES_STREAM = 202
EXCLUSION_REASONS = ("edge", "coverage", "bright_star", "strong_lens")


def strong_lens_members(field, z_s: float, theta_min: float) -> tuple[set[str], float | None]:
    """Members owning a secondary critical line with ``theta_E > theta_min`` in the catalogue nearest ``z_s``."""
    from astropy.table import Table

    paths = field.critical_line_paths
    if not paths:
        return set(), None
    z_near = min(paths, key=lambda z: (abs(z - z_s), z))
    try:
        table = Table.read(paths[z_near], format="ascii.ecsv")
    except Exception as exc:  # astropy raises many types for malformed ECSV
        raise LensSearchError(f"{paths[z_near]}: not a readable critical-line catalogue ({exc})") from None
    for col in ("member_id", "theta_e_arcsec"):
        if col not in table.colnames:
            raise LensSearchError(f"{paths[z_near]}: missing column '{col}'")
    theta = np.asarray(table["theta_e_arcsec"], float)
    return {str(m) for m, t in zip(table["member_id"], theta) if t > theta_min}, float(z_near)


def bright_star_near(scene, stars, ra, dec, radius_arcsec: float, mag_limit: float) -> np.ndarray:
    """Boolean per member: a star brighter than ``mag_limit`` within ``radius_arcsec``."""
    if stars is None or len(stars) == 0:
        return np.zeros(len(ra), dtype=bool)
    for col in ("ra", "dec"):
        if col not in stars.colnames:
            raise LensSearchError(f"{scene.field.path / 'stars.ecsv'}: missing column '{col}'")
    mag_col = "mag_F814W" if "mag_F814W" in stars.colnames else ("mag" if "mag" in stars.colnames else None)
    bright = np.ones(len(stars), bool) if mag_col is None else np.asarray(stars[mag_col], float) < mag_limit
    if not bright.any():
        return np.zeros(len(ra), dtype=bool)
    sx, sy = scene.radec_to_xy(np.asarray(stars["ra"], float)[bright], np.asarray(stars["dec"], float)[bright])
    mx, my = scene.radec_to_xy(np.asarray(ra, float), np.asarray(dec, float))
    d2 = (np.asarray(mx)[:, None] - sx[None, :]) ** 2 + (np.asarray(my)[:, None] - sy[None, :]) ** 2
    return (d2 < radius_arcsec**2).any(axis=1)


def negatives_field(scene, cfg, n_wanted: int, field_index: int):
    """Negatives of one field: ``(cutouts, metadata rows, exclusion counts, n_eligible)``."""
    neg = cfg.negatives
    n = int(neg.cutout_pixels)
    members = scene.members
    counts = {r: 0 for r in EXCLUSION_REASONS}
    if neg.strong_lens_theta_e_min_arcsec is None:
        lenses, z_used = set(), None
    else:
        lenses, z_used = strong_lens_members(scene.field, neg.strong_lens_source_redshift,
                                             neg.strong_lens_theta_e_min_arcsec)
    near_star = bright_star_near(scene, scene.field.stars, members["ra"], members["dec"],
                                 neg.star_exclusion_radius_arcsec, neg.star_mag_limit)
    eligible = []
    for k, row in enumerate(members):
        r0, c0 = scene.window(row["pix_col"], row["pix_row"], n)
        reason = scene.window_problem(r0, c0, n, neg.edge_margin_pixels, neg.max_bad_pixel_fraction)
        if reason is None and near_star[k]:
            reason = "bright_star"
        if reason is None and str(row["member_id"]) in lenses:
            reason = "strong_lens"
        if reason is not None:
            counts[reason] += 1
            continue
        eligible.append((k, r0, c0))
    rng = np.random.default_rng([int(cfg.base.seed), NEGATIVES_STREAM, int(field_index)])
    take = min(n_wanted, len(eligible))
    chosen = sorted(rng.choice(len(eligible), size=take, replace=False)) if take else []
    cutouts, rows = [], []
    for j, idx in enumerate(chosen):
        k, r0, c0 = eligible[int(idx)]
        member = members[k]
        cutouts.append(scene.cutout(r0, c0, n))
        _, radec = scene.window_centre(r0, c0, n)
        lens_mag = float(member["mag_F814W"]) if "mag_F814W" in members.colnames else np.nan
        lens_col = (float(member["mag_F606W"]) - lens_mag) if "mag_F606W" in members.colnames else np.nan
        rows.append({"id": f"neg-{scene.name}-{j:05d}", "label": 0, "field": scene.name,
                     "member_id": str(member["member_id"]), "z_lens": float(scene.field.z_lens),
                     "lens_mag_F814W": lens_mag, "lens_color_F606W_F814W": lens_col, "cutout_ra": radec[0],
                     "cutout_dec": radec[1], "cutout_row0": r0, "cutout_col0": c0})
    stack = np.stack(cutouts) if cutouts else np.zeros((0, n, n, len(scene.bands)), np.float32)
    return stack, rows, counts, len(eligible), z_used


def run_negatives(cfg, fields_dir: str | Path, out_dir: str | Path, reports_dir: str | Path | None = None,
                  progress: bool = True) -> dict:
    """The ``negatives`` stage: write the cutout set ``out_dir`` and ``reports_dir/metrics.json``."""
    from tqdm import tqdm

    from lenssearch.fields.layout import list_fields
    from lenssearch.simulate.inject import metadata_table, split_counts, write_metrics
    from lenssearch.simulate.scene import FieldScene, check_fields
    from lenssearch.simulate.store import write_cutout_set

    t0 = time.perf_counter()
    fields = list_fields(fields_dir)
    check_fields(fields, str(fields_dir))
    bands = tuple(cfg.base.bands)
    wanted = split_counts(cfg.negatives.n_negatives, len(fields))
    all_cut, all_rows, zeropoints = [], [], {}
    metrics = {"per_field": {}, "excluded": {r: 0 for r in EXCLUSION_REASONS}}
    for i, (field, n) in enumerate(tqdm(list(zip(fields, wanted)), desc="negatives", unit="field",
                                        disable=not progress, leave=False)):
        scene = FieldScene(field, bands, with_lens=False)
        zeropoints[scene.name] = dict(zip(bands, scene.zeropoints))
        cut, rows, excl, n_eligible, z_used = negatives_field(scene, cfg, n, i)
        all_cut.append(cut)
        all_rows.extend(rows)
        for r, c in excl.items():
            metrics["excluded"][r] += c
        metrics["per_field"][scene.name] = {"n_members": len(scene.members), "excluded": excl,
                                            "n_eligible": n_eligible, "n_negatives": len(rows),
                                            "strong_lens_catalogue_z_s": z_used}
    cutouts = np.concatenate(all_cut) if all_cut else np.zeros((0, 1, 1, len(bands)), np.float32)
    table = metadata_table(all_rows)
    table.meta["stage"] = "negatives"
    table.meta["seed"] = int(cfg.base.seed)
    metrics["n_negatives"] = len(table)
    metrics["n_requested"] = int(cfg.negatives.n_negatives)
    write_cutout_set(out_dir, cutouts, table, bands=bands, pixel_scale_arcsec=cfg.base.pixel_scale_arcsec,
                     kind="negative", seed=cfg.base.seed, zeropoints_ab=zeropoints)
    if reports_dir is not None:
        write_metrics(Path(reports_dir) / "metrics.json", metrics)
    if progress:
        print(f"negatives: {len(table)} cutouts from {len(fields)} fields in {time.perf_counter() - t0:.1f} s "
              f"(excluded: {metrics['excluded']})")
    return metrics
