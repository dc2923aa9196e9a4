"""The held-out search field: its configuration is checked before anything is built."""

import dataclasses

import pytest
from .search_helpers import PARAMS

from lenssearch.config import load_config
from lenssearch.errors import LensSearchError
from lenssearch.search.demo import build_search_field


def with_demo(**changes):
    cfg = load_config(PARAMS)
    return dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, demo=dataclasses.replace(cfg.search.demo, **changes)))


def test_unknown_template(tmp_path):
    with pytest.raises(LensSearchError, match="search.demo.template 'NOPE' is not a field"):
        build_search_field(with_demo(template="NOPE"), tmp_path / "sf")
    assert not (tmp_path / "sf").exists()


def test_search_field_must_not_be_a_training_field(tmp_path):
    cfg = load_config(PARAMS)
    name = cfg.field.synthetic.fields[0].name
    with pytest.raises(LensSearchError, match="is a training field"):
        build_search_field(with_demo(name=name), tmp_path / "sf")


def test_unknown_planting_variant(tmp_path):
    with pytest.raises(LensSearchError, match="search.demo.variant 'NOPE' is not a KB variant"):
        build_search_field(with_demo(variant="NOPE"), tmp_path / "sf")
    assert not (tmp_path / "sf").exists()


def test_planting_config_is_the_variants_with_cluster_lenses():
    """Planted lenses take the variant's visibility cuts and sources but stay in the cluster (no isolated SIE)."""
    from lenssearch.config import with_variant
    from lenssearch.search.demo import planting_config

    cfg = with_demo(variant="visible")
    planted = planting_config(cfg)
    visible = with_variant(cfg, "visible").simulate
    assert planted.simulate.visibility == visible.visibility and visible.visibility.peak_sigma_min > 0
    assert planted.simulate.sources == visible.sources
    assert visible.isolated_fraction > 0 and planted.simulate.isolated_fraction == 0.0
    assert planting_config(with_demo(variant=None)).simulate == cfg.simulate
