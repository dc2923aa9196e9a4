"""The held-out field of the demo search: a fresh synthetic cluster field with planted lenses.

The demo's networks are trained on mocks cut from the fields of the ``field`` stage. To measure how a search
generalises, the ``search-field`` stage builds one more synthetic field that training never saw: the cluster of
a template entry of ``field.synthetic.fields`` under a new name, which gives it its own random stream
(:func:`lenssearch.fields.synthetic.field_rng` is seeded by ``base.seed`` and the field's name), hence new members,
field galaxies, stars and noise. Lenses are then planted with the ``simulate`` stage's own machinery
(:class:`lenssearch.simulate.inject.MockFactory`: a source drawn from the population and placed inside a member's
secondary caustic, ray-traced, convolved with the PSF), each added to the full band images in the member's
128 x 128 window; windows of different plants do not overlap.

Output: ``<out>/<name>/`` in the field directory layout (docs/architecture.md) plus ``planted.ecsv`` (one row per
planted lens: ``id``, ``member_id``, ``ra``, ``dec`` of the lens member, ``theta_e_arcsec``, ``z_s``, source
magnitudes, number of images, ...), the truth of the ``search`` and ``known-lenses`` verbs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from lenssearch.errors import LensSearchError

#: Stream offset of the planted lenses in the seed sequence ``[base.seed, stream]``.
PLANT_STREAM = 606

PLANTED = "planted.ecsv"


def plant_lenses(field_dir: Path, cfg, n_planted: int, rng: np.random.Generator, max_draws: int, progress: bool = True):
    """Plant ``n_planted`` lenses into the band images of ``field_dir`` (in place) and return their table."""
    from astropy.io import fits
    from tqdm import tqdm

    from lenssearch.fields.layout import read_field
    from lenssearch.simulate.colours import ColourModel
    from lenssearch.simulate.inject import MockFactory, metadata_table
    from lenssearch.simulate.scene import FieldScene

    bands = tuple(cfg.base.bands)
    scene = FieldScene(read_field(field_dir), bands, with_lens=True)
    colours = ColourModel.for_sources(bands, cfg.simulate.sources)
    factory = MockFactory(scene, cfg, colours)
    n = factory.n
    plants: list[tuple[int, int, np.ndarray]] = []
    rows: list[dict] = []
    used: set[str] = set()
    draws = 0
    bar = tqdm(total=n_planted, desc=f"plant {scene.name}", unit="lens", disable=not progress, leave=False)
    while len(rows) < n_planted and draws < max_draws:
        for cand in factory.draw_candidates(rng, 1, draws):
            draws += 1
            if cand.member_id in used:
                continue
            ml = factory.member_lens(cand.member_id)
            if any(abs(ml.row0 - r) < n and abs(ml.col0 - c) < n for r, c, _ in plants):
                continue
            cutout, meta = factory.make(cand, ml)
            if cutout is None:
                continue
            plants.append((ml.row0, ml.col0, cutout - scene.cutout(ml.row0, ml.col0, n)))
            used.add(cand.member_id)
            member = scene.member_row(cand.member_id)
            meta.update({"id": f"planted-{len(rows):03d}", "field": scene.name, "label": 1,
                         "ra": float(member["ra"]), "dec": float(member["dec"])})
            rows.append(meta)
            bar.update(1)
    bar.close()
    if len(rows) < n_planted:
        raise LensSearchError(
            f"search field '{scene.name}': planted only {len(rows)} of {n_planted} lenses in {draws} draws"
        )
    del scene, factory
    for b, band in enumerate(bands):
        with fits.open(field_dir / f"image_{band}.fits", mode="update", memmap=False) as hdul:
            data = hdul[0].data
            for row0, col0, injected in plants:
                data[row0 : row0 + n, col0 : col0 + n] += injected[..., b].astype(data.dtype)
            hdul.flush()
    table = metadata_table(rows)
    table.add_column([r["ra"] for r in rows], name="ra", index=1)
    table.add_column([r["dec"] for r in rows], name="dec", index=2)
    return table


def planting_config(cfg):
    """The configuration the planted lenses are drawn with: ``search.demo.variant``'s simulate section (its
    visibility cuts, source sizes and theta_E weighting) if set, else ``simulate``'s. Planted lenses are members of
    the cluster lensed with the cluster's deflection (``isolated_fraction`` 0): the search field is one cluster, and
    its planted truth is what the field's lens model gives."""
    from lenssearch.config import with_variant

    variant = cfg.search.demo.variant
    if variant is None:
        return cfg
    if variant not in cfg.variants:
        raise LensSearchError(f"search.demo.variant '{variant}' is not a KB variant (variants: {sorted(cfg.variants)})")
    planted = with_variant(cfg, variant)
    return dataclasses.replace(planted, simulate=dataclasses.replace(planted.simulate, isolated_fraction=0.0))


def build_search_field(cfg, out_root: str | Path, progress: bool = True) -> Path:
    """Build the held-out search field ``out_root/<search.demo.name>/`` with planted lenses (all or nothing).

    Returns the field directory.
    """
    from lenssearch.fields.synthetic import build_synthetic_field
    from lenssearch.io import atomic_path, describe_columns

    demo = cfg.search.demo
    entries = {e.name: e for e in cfg.field.synthetic.fields}
    if demo.template not in entries:
        raise LensSearchError(
            f"search.demo.template '{demo.template}' is not a field of field.synthetic.fields {sorted(entries)}"
        )
    if demo.name in entries:
        raise LensSearchError(f"search.demo.name '{demo.name}' is a training field; the search field must be new")
    plant_cfg = planting_config(cfg)
    entry = dataclasses.replace(entries[demo.template], name=demo.name)
    out_root = Path(out_root)
    with atomic_path(out_root) as tmp:
        tmp.mkdir(parents=True)
        field_dir = Path(build_synthetic_field(entry, cfg, tmp))
        rng = np.random.default_rng([cfg.base.seed, PLANT_STREAM])
        table = plant_lenses(field_dir, plant_cfg, demo.n_planted, rng, demo.max_draws, progress)
        drawn = f"KB variant '{demo.variant}' (cluster lenses)" if demo.variant else "the simulate section"
        table.meta["description"] = (f"lenses planted in field {demo.name} (template {demo.template}) with the "
                                     f"simulate stage's injection, drawn as {drawn}; ra/dec are the lens members'")
        describe_columns(table).write(field_dir / PLANTED, format="ascii.ecsv")
    return out_root / demo.name
