"""Hard negatives (simulate/confusers.py) and host matching in the negatives stage."""

import dataclasses

import numpy as np
import pytest

from lenssearch.errors import LensSearchError
from lenssearch.simulate.confusers import CONFUSER_KINDS, confuser_counts
from lenssearch.simulate.negatives import run_negatives
from lenssearch.simulate.store import read_cutout_set, write_cutout_set


def test_confuser_counts_split_and_checks():
    counts = confuser_counts(100, {"blue_companion": 0.25, "ring": 0.05, "star": 0.125})
    assert counts["blue_companion"] == 25 and counts["ring"] == 5 and counts["star"] in (12, 13)
    assert sum(counts.values()) == 100 and counts["plain"] == 100 - 25 - 5 - counts["star"]
    assert confuser_counts(7, {}) == {"plain": 7}
    with pytest.raises(LensSearchError, match="unknown kind"):
        confuser_counts(10, {"spiral_galaxy": 0.1})
    with pytest.raises(LensSearchError, match="sum to <= 1"):
        confuser_counts(10, {"ring": 0.7, "star": 0.5})


@pytest.fixture(scope="module")
def confuser_renderer(cfg, test_fields):
    from lenssearch.fields.layout import list_fields
    from lenssearch.simulate.negatives import _confuser_renderer
    from lenssearch.simulate.scene import FieldScene

    scene = FieldScene(list_fields(test_fields)[0], tuple(cfg.base.bands), with_lens=False)
    return scene, _confuser_renderer(scene, cfg, None)


@pytest.mark.parametrize("kind", CONFUSER_KINDS)
def test_each_kind_adds_its_flux_where_it_should(confuser_renderer, kind):
    scene, renderer = confuser_renderer
    host = scene.members[2]
    image, meta = renderer.render(kind, np.random.default_rng(5), host)
    assert image.shape == (128, 128, 3) and np.all(np.isfinite(image))
    # the flux of the F814W band is the drawn magnitude's (up to the PSF wings and light outside the cutout)
    expected = 10 ** (-0.4 * (meta["confuser_mag_F814W"] - scene.zeropoints[2]))
    lost = 0.7 if kind in ("spiral", "edge_on") else 0.4  # discs of R_e up to 1.5" overflow the 3.84" cutout
    assert (1 - lost) * expected < image[..., 2].sum() <= 1.01 * expected
    # the light is centred where the metadata says
    yy, xx = np.mgrid[0:128, 0:128]
    w = image[..., 2] / image[..., 2].sum()
    pix = scene.pixel_scale_arcsec
    cx, cy = (np.sum(w * xx) - 63.5) * pix, (np.sum(w * yy) - 63.5) * pix
    r = float(np.hypot(meta["confuser_x_arcsec"], meta["confuser_y_arcsec"]))
    tol = 0.25 if r < 1.5 else 0.45  # a companion near the edge loses part of its light
    assert abs(cx - meta["confuser_x_arcsec"]) < tol and abs(cy - meta["confuser_y_arcsec"]) < tol


def test_blue_confusers_are_bluer_than_the_host(confuser_renderer):
    scene, renderer = confuser_renderer
    host = scene.members[2]
    zp = np.asarray(scene.zeropoints)
    host_colour = float(host["mag_F435W"] - host["mag_F814W"])
    for kind, bluer in (("blue_companion", 0.5), ("ring", 0.5), ("spiral", 0.2)):  # a spiral keeps a red bulge
        image, _ = renderer.render(kind, np.random.default_rng(11), host)
        flux = image.sum(axis=(0, 1))
        colour = -2.5 * np.log10(flux[0] / flux[2]) + zp[0] - zp[2]
        assert colour < host_colour - bluer, kind


def test_blue_companions_come_in_groups(cfg, test_fields):
    """``companions`` [n, n] adds n - 1 sources to the first one, drawn with the same generator after it; the
    default [1, 1] draws no count, so the KBs made before the option stay byte for byte."""
    from lenssearch.fields.layout import list_fields
    from lenssearch.simulate.negatives import _confuser_renderer
    from lenssearch.simulate.scene import FieldScene

    assert cfg.negatives.confusers.companions == (1, 1)
    scene = FieldScene(list_fields(test_fields)[0], tuple(cfg.base.bands), with_lens=False)
    host = scene.members[2]
    images, renderers = {}, {}
    for count in (1, 3):
        confusers = dataclasses.replace(cfg.negatives.confusers, companions=(count, count))
        renderers[count] = _confuser_renderer(scene, dataclasses.replace(
            cfg, negatives=dataclasses.replace(cfg.negatives, confusers=confusers)), None)
        images[count], _ = renderers[count].render("blue_companion", np.random.default_rng(7), host)
    one, three = images[1][..., 2], images[3][..., 2]
    assert three.sum() > 1.5 * one.sum()  # two more sources of the arcs' magnitudes (some light may fall outside)
    assert np.all(three >= one - 1e-6 * one.max())  # the first companion is the same: the others only add light
    # one companion consumes exactly the draws of one source (no count drawn)
    rng_render, rng_one = np.random.default_rng(7), np.random.default_rng(7)
    renderers[1].render("blue_companion", rng_render, host)
    renderers[1]._one_companion(rng_one)
    assert rng_render.uniform() == rng_one.uniform()


def _fake_mocks(path, members, counts, field="TEST"):
    from astropy.table import Table

    ids = [f"mock-{k}" for k in range(sum(counts))]
    member_id = [m for m, c in zip(members, counts) for _ in range(c)]
    table = Table({"id": ids, "field": [field] * len(ids), "member_id": member_id,
                   "magnification_in_cutout": np.full(len(ids), 8.0),
                   "source_mag_F814W": np.full(len(ids), 26.0)})
    write_cutout_set(path, np.zeros((len(ids), 2, 2, 3), np.float32), table, bands=("F435W", "F606W", "F814W"),
                     pixel_scale_arcsec=0.03, kind="mock", seed=0, zeropoints_ab={})
    return path


def test_matched_hosts_follow_the_mocks_and_confusers_are_counted(cfg, test_fields, tmp_path):
    mocks = _fake_mocks(tmp_path / "mocks", ["TEST-M0000", "TEST-M0002"], [30, 10])
    neg = dataclasses.replace(cfg.negatives, n_negatives=40, match_hosts=True, plain_matching="members",
                              hard_negatives={"blue_companion": 0.5, "star": 0.25})
    c = dataclasses.replace(cfg, negatives=neg)
    metrics = run_negatives(c, test_fields, tmp_path / "neg", None, progress=False, mocks_dir=mocks,
                            variant="visible")
    cut, meta, _ = read_cutout_set(tmp_path / "neg")
    assert len(meta) == 40 and cut.shape == (40, 128, 128, 3)
    assert all(str(i).startswith("visible-neg-") for i in meta["id"])
    hosts = np.asarray(meta["member_id"]).astype(str)
    assert set(hosts) <= {"TEST-M0000", "TEST-M0002"}  # never a member that hosts no mock
    kinds = np.asarray(meta["confuser"]).astype(str)
    # two hosts: at most two plain cutouts (each member once); the rest went to the confusers
    assert (kinds == "plain").sum() == 2 and metrics["kinds"]["plain"] == 2
    assert (kinds == "blue_companion").sum() >= 20 and (kinds == "star").sum() >= 10
    hard = kinds != "plain"
    assert np.mean(hosts[hard] == "TEST-M0000") > 0.55  # 3:1 in the mocks
    # a confuser changes the pixels of the host's plain cutout
    plain = cut[np.flatnonzero((kinds == "plain") & (hosts == "TEST-M0000"))[0]]
    other = cut[np.flatnonzero(hard & (hosts == "TEST-M0000"))[0]]
    assert np.abs(other - plain).max() > 0


def test_match_hosts_needs_the_mocks(cfg, test_fields, tmp_path):
    c = dataclasses.replace(cfg, negatives=dataclasses.replace(cfg.negatives, match_hosts=True))
    with pytest.raises(LensSearchError, match="needs the variant's mocks"):
        run_negatives(c, test_fields, tmp_path / "neg", None, progress=False)


def test_disc_galaxies_sit_on_empty_positions_as_bright_as_the_hosts(cfg, test_fields, tmp_path):
    mocks = _fake_mocks(tmp_path / "mocks", ["TEST-M0000", "TEST-M0002"], [20, 20])
    neg = dataclasses.replace(cfg.negatives, n_negatives=6, match_hosts=True, plain_matching="members",
                              hard_negatives={"spiral": 0.5, "edge_on": 0.5})
    run_negatives(dataclasses.replace(cfg, negatives=neg), test_fields, tmp_path / "neg", None, progress=False,
                  mocks_dir=mocks)
    _, meta, _ = read_cutout_set(tmp_path / "neg")
    assert set(np.asarray(meta["confuser"]).astype(str)) == {"spiral", "edge_on"}
    assert np.all(np.asarray(meta["member_id"]).astype(str) == "sky")  # not on a member
    # the central galaxy's magnitude is the disc galaxy's, within disc_mag_offset of a host's
    offset = cfg.negatives.confusers.disc_mag_offset
    mags = np.asarray(meta["lens_mag_F814W"], float)
    assert np.array_equal(mags, np.asarray(meta["confuser_mag_F814W"], float))
    from astropy.table import Table

    members = Table.read(test_fields / "TEST" / "members.ecsv", format="ascii.ecsv")
    host_mags = {str(m): float(v) for m, v in zip(members["member_id"], members["mag_F814W"])}
    lo = min(host_mags["TEST-M0000"], host_mags["TEST-M0002"]) + offset[0]
    hi = max(host_mags["TEST-M0000"], host_mags["TEST-M0002"]) + offset[1]
    assert np.all((mags >= lo - 1e-9) & (mags <= hi + 1e-9))


def test_magnitude_matched_plain_negatives_follow_the_hosts():
    from lenssearch.simulate.negatives import magnitude_matched

    rng = np.random.default_rng(2)
    members = rng.uniform(18.0, 25.0, 600)  # a member population, faint ones as common as bright ones
    hosts = rng.normal(20.0, 0.5, 2000)  # the mocks' hosts: bright
    taken = magnitude_matched(members, hosts, 150, rng)
    assert taken.size == 150 and np.unique(taken).size == 150  # distinct members
    assert abs(np.median(members[taken]) - 20.0) < 0.15 and np.std(members[taken]) < 0.8
    # the members run out: every one is taken once, none twice
    assert np.unique(magnitude_matched(members[:50], hosts, 80, rng)).size == 50


def test_rings_and_discs_take_star_forming_colours_from_the_template_to_a_young_burst(confuser_renderer, cfg):
    """A ring's colour: the star-forming template's at the cluster redshift with young_fraction 0, AB 0 (flat f_nu)
    with 1, and in between otherwise; drawn over [0, 1] they span the range instead of one colour per field."""
    import dataclasses

    from lenssearch.simulate.negatives import _confuser_renderer

    scene, renderer = confuser_renderer
    host = scene.members[2]
    zp = np.asarray(scene.zeropoints)

    def ring_colour(young, seed):
        r = _confuser_renderer(scene, dataclasses.replace(cfg, negatives=dataclasses.replace(
            cfg.negatives, confusers=dataclasses.replace(cfg.negatives.confusers, young_fraction=young))), None)
        image, _ = r.render("ring", np.random.default_rng(seed), host)
        flux = image.sum(axis=(0, 1))
        return -2.5 * np.log10(flux[0] / flux[2]) + zp[0] - zp[2]

    template = renderer.colours.magnitudes(22.0, renderer.z_lens)
    expected = template["F435W"] - template["F814W"]
    assert expected > 0.8  # a star-forming population at z ~ 0.3: F435W - F814W ~ 1
    assert ring_colour((0.0, 0.0), 1) == pytest.approx(expected, abs=1e-3)
    assert ring_colour((1.0, 1.0), 1) == pytest.approx(0.0, abs=1e-3)
    half = ring_colour((0.5, 0.5), 1)
    assert half == pytest.approx(-2.5 * np.log10(0.5 * 10 ** (-0.4 * expected) + 0.5), abs=1e-3)
    colours = np.array([ring_colour(tuple(cfg.negatives.confusers.young_fraction), s) for s in range(12)])
    assert colours.min() < 0.5 * expected and colours.max() > 0.6 * expected
