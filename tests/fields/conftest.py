"""A small synthetic field built once per session (20" across, 40 members, critical lines at z_s = 2)."""

from __future__ import annotations

import dataclasses

import pytest

from lenssearch.config import load_config


@pytest.fixture(scope="session")
def cfg():
    base = load_config("params.yaml")
    field = dataclasses.replace(
        base.field, critical_lines=dataclasses.replace(base.field.critical_lines, source_redshifts=(2.0,)))
    return dataclasses.replace(base, field=field)


@pytest.fixture(scope="session")
def entry(cfg):
    return dataclasses.replace(cfg.field.synthetic.fields[0], name="TEST-A", size_arcsec=24.0, n_members=40)


@pytest.fixture(scope="session")
def field_dir(cfg, entry, tmp_path_factory):
    from lenssearch.fields.synthetic import build_synthetic_field

    return build_synthetic_field(entry, cfg, tmp_path_factory.mktemp("fields"))


@pytest.fixture(scope="session")
def field(field_dir):
    from lenssearch.fields.layout import read_field

    return read_field(field_dir)
