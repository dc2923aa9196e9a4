"""Fixtures of the independent-stage tests: a small simulated set and a tmp MLflow registry of tiny real models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
N_LENSES = 6
N_NONLENSES = 14  # two of each confuser kind


def with_independent(cfg, **changes):
    """A copy of ``cfg`` with keys of the ``independent`` section changed."""
    return dataclasses.replace(cfg, independent=dataclasses.replace(cfg.independent, **changes))


@pytest.fixture(scope="session")
def cfg():
    from lenssearch.config import load_config

    return with_independent(load_config(PARAMS), n_lenses=N_LENSES, n_nonlenses=N_NONLENSES)


@pytest.fixture(scope="session")
def small_set(cfg, tmp_path_factory):
    """The first cutouts of the independent set, written as a cutout set; returns its directory."""
    from lenssearch.independent.simulate import run_independent_simulate

    out = tmp_path_factory.mktemp("independent") / "set"
    run_independent_simulate(cfg, out)
    return out


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A tmp sqlite store: a 3-band stand-in registered as ``lenssearch`` (alias champion, tuned threshold tag
    0.3) and a 1-band one as ``lenssearch-f814w``; returns ``(store uri, {label: (model uri, scale, threshold)})``."""
    import mlflow
    from mlflow import MlflowClient

    from lenssearch import tracking as reg

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    previous, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    reg.setup(uri)
    try:
        mlflow.set_experiment(experiment_id=reg.experiment_id("independent-fixtures", uri))
        champion = reg.log_stand_in_model("lenssearch", 3, 40.0, root)
        f814w = reg.log_stand_in_model("lenssearch-f814w", 1, 60.0, root)
        client = MlflowClient(uri)
        version = champion.rsplit("/", 1)[1]
        client.set_registered_model_alias("lenssearch", "champion", version)
        client.set_model_version_tag("lenssearch", version, "threshold", "0.3")
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri(previous_registry)
    return uri, {"champion": ("models:/lenssearch@champion", 40.0, 0.3),
                 "f814w": ("models:/lenssearch-f814w/latest", 60.0, 0.5)}
