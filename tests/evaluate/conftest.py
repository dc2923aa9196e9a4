"""Fixtures of the evaluation tests: synthetic predictions and KB metadata in the train/kb layouts, and a real
MLflow sqlite store (in a temporary folder) with tiny registered pyfunc models ``lenssearch-<network>``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lenssearch.config import load_config
from lenssearch.evaluate.synthetic import NETWORKS, write_synthetic

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cfg():
    """The demo profile, every network on one KB variant: the synthetic predictions score one KB (committees across
    variants: tests/evaluate/test_variants.py)."""
    demo = load_config(REPO / "params.yaml")
    return replace(demo, "train", kb_variant={n: "visible" for n in demo.train.kb_variant})


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """``(predictions_dir, kb_path)`` with 600 cutouts, five networks, three folds."""
    root = tmp_path_factory.mktemp("synthetic")
    return write_synthetic(root, np.random.default_rng(7), n=600)


def replace(cfg, section: str, **changes):
    """A copy of ``cfg`` with keys of one section changed."""
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **changes)})


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory):
    """A tmp sqlite MLflow store holding registered ``lenssearch-<network>`` models; returns its URI."""
    from lenssearch import tracking

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    tracking.setup(uri)
    import mlflow

    # artifacts beside the tmp store, never in the working directory
    mlflow.set_experiment(experiment_id=tracking.experiment_id("train-fixtures", uri))
    for i, net in enumerate(NETWORKS):  # tiny real pyfunc models with the networks' input contract
        tracking.log_stand_in_model(f"lenssearch-{net}", 3 if net in ("vgg", "sc_vgg", "resnet") else 1, 2.0 + i, root)
    return uri
