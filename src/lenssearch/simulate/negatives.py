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


def _confuser_renderer(scene, cfg, mocks):
    """The field's :class:`~lenssearch.simulate.confusers.ConfuserRenderer` (the mocks' renderer and PSFs)."""
    from lenssearch.lensing.cosmology import Cosmology
    from lenssearch.simulate.colours import ColourModel
    from lenssearch.simulate.confusers import ConfuserRenderer
    from lenssearch.simulate.render import Renderer
    from lenssearch.simulate.sources import SourcePopulation

    sim = cfg.simulate
    renderer = Renderer(int(cfg.negatives.cutout_pixels), scene.pixel_scale_arcsec, sim.supersampling, scene.psfs(),
                        sim.psf_pad_pixels)
    colours = ColourModel.for_sources(scene.bands, sim.sources)
    arc_mags = None
    if mocks is not None and len(mocks):
        mu = np.asarray(mocks["magnification_in_cutout"], float)
        mag = np.asarray(mocks["source_mag_F814W"], float)
        ok = np.isfinite(mu) & (mu > 0) & np.isfinite(mag)
        arc_mags = mag[ok] - 2.5 * np.log10(mu[ok])
    return ConfuserRenderer(renderer, scene.bands, scene.zeropoints, colours, SourcePopulation.from_config(sim.sources),
                            cfg.negatives.confusers, float(scene.field.z_lens),
                            Cosmology.from_config(cfg.base.cosmology).kpc_per_arcsec_array, arc_mags)


def sky_window(scene, rng, n: int, margin: int, max_bad_fraction: float, tries: int = 1000) -> tuple[int, int]:
    """``(row0, col0)`` of a random complete cutout of the field (for the disc galaxies of :data:`SKY_KINDS`)."""
    ny, nx = scene.shape
    for _ in range(tries):
        r0 = int(rng.integers(margin, max(margin + 1, ny - n - margin)))
        c0 = int(rng.integers(margin, max(margin + 1, nx - n - margin)))
        if scene.window_problem(r0, c0, n, margin, max_bad_fraction) is None:
            return r0, c0
    raise LensSearchError(f"field '{scene.name}': no complete {n}x{n} cutout found in {tries} random positions")


def magnitude_matched(mags: np.ndarray, target_mags: np.ndarray, n: int, rng) -> np.ndarray:
    """Indices of up to ``n`` distinct members whose magnitudes follow ``target_mags`` (the mock hosts').

    Matched sampling without replacement: a target magnitude is drawn from the mocks' hosts, and the unused
    member nearest to it in magnitude is taken, until ``n`` are taken or the members run out. The members keep
    their own cutouts (no member twice), and their magnitude distribution is the hosts' wherever members exist.
    """
    targets = np.asarray(target_mags, float)
    targets = targets[np.isfinite(targets)]
    if targets.size == 0:
        raise LensSearchError("negatives.plain_matching 'magnitude': the mocks have no finite lens_mag_F814W")
    free = np.isfinite(mags)
    taken: list[int] = []
    for target in rng.choice(targets, size=min(n, int(free.sum())), replace=True):
        candidates = np.flatnonzero(free)
        best = candidates[np.argmin(np.abs(mags[candidates] - target))]
        free[best] = False
        taken.append(int(best))
    return np.array(sorted(taken), dtype=int)


def _host_weights(eligible_ids: list[str], mocks, match_hosts: bool) -> np.ndarray:
    """Probability of each eligible member to host a non-lens: the mocks' own host frequencies when
    ``match_hosts`` (no host-brightness shortcut), else uniform."""
    if not match_hosts:
        return np.full(len(eligible_ids), 1.0 / max(len(eligible_ids), 1))
    if mocks is None:
        raise LensSearchError("negatives.match_hosts needs the variant's mocks (--mocks DIR)")
    counts: dict[str, int] = {}
    for m in mocks["member_id"]:
        counts[str(m)] = counts.get(str(m), 0) + 1
    w = np.array([counts.get(m, 0) for m in eligible_ids], dtype=float)
    if not w.sum() > 0:
        raise LensSearchError("negatives.match_hosts: no eligible member of this field hosts a mock")
    return w / w.sum()


def negatives_field(scene, cfg, n_wanted: int, field_index: int, mocks=None, id_prefix: str = ""):
    """Negatives of one field: ``(cutouts, metadata rows, exclusion counts, n_eligible, z_used, kinds)``.

    ``mocks`` (the variant's mock metadata of this field) sets the hosts' distribution when
    ``negatives.match_hosts`` and the brightness of blue companions and rings (:mod:`lenssearch.simulate.confusers`).
    """
    from lenssearch.simulate.confusers import SKY_KINDS, confuser_counts

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
    kinds = confuser_counts(n_wanted, dict(neg.hard_negatives))
    weights = _host_weights([str(members[k]["member_id"]) for k, _, _ in eligible], mocks, neg.match_hosts)
    # plain cutouts: each member at most once (an identical cutout twice would sit in two folds)
    if neg.match_hosts and neg.plain_matching == "magnitude":
        mags = np.array([float(members[k]["mag_F814W"]) for k, _, _ in eligible])
        plain = magnitude_matched(mags, np.asarray(mocks["lens_mag_F814W"], float), kinds["plain"], rng)
        n_plain = plain.size
    else:
        hosts = np.flatnonzero(weights > 0)
        n_plain = min(kinds["plain"], hosts.size)
        plain = (rng.choice(hosts, size=n_plain, replace=False, p=weights[hosts] / weights[hosts].sum())
                 if n_plain else np.zeros(0, int))
    # hard negatives: a host per confuser drawn with replacement (each cutout differs by its confuser); what the
    # plain kind could not take goes to the confusers in their proportions
    shortfall = kinds["plain"] - n_plain
    hard = [k for k in sorted(kinds) if k != "plain" for _ in range(kinds[k])]
    if shortfall and hard:
        hard += list(rng.choice(hard, size=shortfall, replace=True))
    hard = sorted(hard)
    order = [(int(i), "plain") for i in sorted(plain)]
    if hard:
        hard_hosts = rng.choice(len(eligible), size=len(hard), replace=True, p=weights)
        order += [(int(i), kind) for i, kind in zip(hard_hosts, hard)]
    confusers = _confuser_renderer(scene, cfg, mocks) if hard else None
    made = {"plain": 0}
    cutouts, rows = [], []
    for j, (idx, kind) in enumerate(order):
        k, r0, c0 = eligible[idx]
        member = members[k]
        member_id = str(member["member_id"])
        if kind in SKY_KINDS:  # a disc galaxy of its own, as bright as this host, at an empty position
            r0, c0 = sky_window(scene, rng, n, neg.edge_margin_pixels, neg.max_bad_pixel_fraction)
            member_id = "sky"  # no member at the centre
        cutout = scene.cutout(r0, c0, n)
        extra = {}
        if kind != "plain":
            image, extra = confusers.render(kind, rng, member)
            cutout = cutout + image
        made[kind] = made.get(kind, 0) + 1
        cutouts.append(cutout)
        _, radec = scene.window_centre(r0, c0, n)
        lens_mag = float(member["mag_F814W"]) if "mag_F814W" in members.colnames else np.nan
        lens_col = (float(member["mag_F606W"]) - lens_mag) if "mag_F606W" in members.colnames else np.nan
        if kind in SKY_KINDS:  # the central galaxy is the disc galaxy
            lens_mag, lens_col = float(extra["confuser_mag_F814W"]), np.nan
        rows.append({"id": f"{id_prefix}neg-{scene.name}-{j:05d}", "label": 0, "field": scene.name,
                     "member_id": member_id, "z_lens": float(scene.field.z_lens),
                     "lens_mag_F814W": lens_mag, "lens_color_F606W_F814W": lens_col, "cutout_ra": radec[0],
                     "cutout_dec": radec[1], "cutout_row0": r0, "cutout_col0": c0, "confuser": kind, **extra})
    stack = np.stack(cutouts) if cutouts else np.zeros((0, n, n, len(scene.bands)), np.float32)
    return stack, rows, counts, len(eligible), z_used, made


def run_negatives(cfg, fields_dir: str | Path, out_dir: str | Path, reports_dir: str | Path | None = None,
                  progress: bool = True, mocks_dir: str | Path | None = None, variant: str = "") -> dict:
    """The ``negatives`` stage: write the cutout set ``out_dir`` and ``reports_dir/metrics.json``.

    ``mocks_dir``: the variant's mocks (a cutout set), whose hosts the non-lenses follow when
    ``negatives.match_hosts`` and whose arcs set the confusers' brightness.
    """
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
    mocks = None
    if mocks_dir is not None:
        from lenssearch.simulate.store import read_cutout_set

        _, mocks, attrs = read_cutout_set(mocks_dir, load_cutouts=False)
        if attrs.get("kind") not in (None, "mock"):
            raise LensSearchError(f"{mocks_dir}: a cutout set of kind '{attrs.get('kind')}', expected mocks")
    metrics = {"per_field": {}, "excluded": {r: 0 for r in EXCLUSION_REASONS}, "kinds": {}}
    for i, (field, n) in enumerate(tqdm(list(zip(fields, wanted)), desc="negatives", unit="field",
                                        disable=not progress, leave=False)):
        scene = FieldScene(field, bands, with_lens=False)
        zeropoints[scene.name] = dict(zip(bands, scene.zeropoints))
        field_mocks = None if mocks is None else mocks[np.asarray(mocks["field"]) == scene.name]
        cut, rows, excl, n_eligible, z_used, made = negatives_field(scene, cfg, n, i, field_mocks,
                                                                    f"{variant}-" if variant else "")
        for kind, c in made.items():
            metrics["kinds"][kind] = metrics["kinds"].get(kind, 0) + c
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
