"""The negatives stage: exclusions (edge, coverage, bright star, known strong lens) and outputs."""

import dataclasses
import json

import numpy as np

from lenssearch.simulate.negatives import run_negatives
from lenssearch.simulate.store import read_cutout_set

from .conftest import build_field


def test_exclusions_and_outputs(cfg, test_fields, tmp_path):
    c = dataclasses.replace(cfg, negatives=dataclasses.replace(cfg.negatives, n_negatives=5,
                                                                strong_lens_theta_e_min_arcsec=0.2))
    metrics = run_negatives(c, test_fields, tmp_path / "neg", tmp_path / "reports", progress=False)
    # TEST-M0000: strong lens; TEST-M0001: bright star; TEST-M0003: frame edge; TEST-M0002: kept
    assert metrics["excluded"] == {"edge": 1, "coverage": 0, "bright_star": 1, "strong_lens": 1}
    on_disk = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert on_disk["excluded"] == metrics["excluded"]
    cutouts, meta, attrs = read_cutout_set(tmp_path / "neg")
    assert list(meta["member_id"]) == ["TEST-M0002"]
    assert cutouts.shape == (1, 128, 128, 3) and attrs["kind"] == "negative"
    assert np.all(meta["label"] == 0) and np.all(np.isnan(meta["z_s"])) and np.all(meta["n_images"] == -1)
    # centred on the member: its light peaks at the cutout centre
    peak = np.unravel_index(np.argmax(cutouts[0, ..., 2]), (128, 128))
    assert abs(peak[0] - 64) <= 1 and abs(peak[1] - 64) <= 1


def test_members_with_critical_lines_stay_eligible_by_default(cfg, test_fields, tmp_path):
    # the paper's non-lenses are members without a *visible* lensing feature; a member with a critical line
    # may be a mock lens and a non-lens (Angora et al. 2023, Sect. 3.2)
    c = dataclasses.replace(cfg, negatives=dataclasses.replace(cfg.negatives, n_negatives=5,
                                                                strong_lens_theta_e_min_arcsec=None))
    metrics = run_negatives(c, test_fields, tmp_path / "neg", tmp_path / "reports", progress=False)
    assert metrics["excluded"] == {"edge": 1, "coverage": 0, "bright_star": 1, "strong_lens": 0}
    _, meta, _ = read_cutout_set(tmp_path / "neg")
    assert list(meta["member_id"]) == ["TEST-M0000", "TEST-M0002"]


def test_incomplete_coverage_is_excluded(cfg, tmp_path):
    from astropy.io import fits

    path = build_field(tmp_path / "fields")
    with fits.open(path / "image_F435W.fits", mode="update") as hdul:
        hdul[0].data[:, : hdul[0].data.shape[1] // 2 - 40] = 0.0  # no F435W data on the East half
    metrics = run_negatives(cfg, tmp_path / "fields", tmp_path / "neg", None, progress=False)
    assert metrics["excluded"]["coverage"] >= 1
    assert metrics["n_negatives"] == 0


def test_negatives_are_repeatable(cfg, test_fields, tmp_path):
    run_negatives(cfg, test_fields, tmp_path / "a", None, progress=False)
    run_negatives(cfg, test_fields, tmp_path / "b", None, progress=False)
    for name in ("cutouts.h5", "metadata.ecsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
