"""Fixtures of the training tests: a tiny configuration and a small toy knowledge base with a learnable signal."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lenssearch.config import load_config

REPO = Path(__file__).resolve().parents[2]


def make_tiny_config(**train_overrides):
    """The repository's configuration with a tiny network and short trainings (64-pixel toy cutouts)."""
    cfg = load_config(REPO / "params.yaml")
    network = dataclasses.replace(
        cfg.train.network, input_pixels=64, binning=2, filters=(8, 16, 16), sc_vgg_filters=(4, 8, 8),
        dense_units=(16, 8), dropout=0.1,
    )
    train = dataclasses.replace(
        cfg.train, network=network, max_epochs=30, max_epochs_by_network={}, warmup_epochs=12,
        early_stopping_patience=4, reduce_lr_patience=2, examples_per_class=0,
        batch_size={k: 16 for k in cfg.train.batch_size},
    )
    train = dataclasses.replace(train, **train_overrides)
    return dataclasses.replace(cfg, train=train)


@pytest.fixture(scope="session")
def toy_kb_path(tmp_path_factory) -> Path:
    """A 3-fold toy KB: 160 lenses (rings/arcs at 3-30 sigma), 80 non-lenses, 64x64 pixels, 15% validation."""
    from lenssearch.train.toy_kb import write_toy_kb

    path = tmp_path_factory.mktemp("kb") / "kb.h5"
    return write_toy_kb(path, n_lenses=160, n_nonlenses=80, n_folds=3, validation_fraction=0.15, seed=3,
                        size=64, arc_snr_range=(3.0, 30.0))


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(**train_overrides)``: the configuration of the training tests."""
    return make_tiny_config
