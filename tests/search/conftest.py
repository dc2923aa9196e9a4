"""Fixtures of the search tests (helpers in ``search_helpers.py``): a tiny Keras model and a tmp MLflow registry."""

from __future__ import annotations

import pytest
from .search_helpers import TinyCommittee, build_keras_model


@pytest.fixture(scope="session")
def keras_model():
    return build_keras_model()


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A tmp sqlite MLflow store: the tiny model registered as ``lenssearch`` (alias champion, threshold 0.5 in
    its tags) and a two-member committee pyfunc as ``lenssearch-committee`` (alias champion)."""
    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

    from lenssearch._runtime import apply_offline_env

    apply_offline_env()
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    previous_registry = mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # other tests may have pointed the registry elsewhere
    try:
        exp = mlflow.create_experiment("search-tests", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp):
            info = mlflow.tensorflow.log_model(build_keras_model(), name="model", registered_model_name="lenssearch")
        client = MlflowClient(uri)
        client.set_registered_model_alias("lenssearch", "champion", info.registered_model_version)
        client.set_model_version_tag("lenssearch", info.registered_model_version, "threshold", "0.5")
        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 128, 128, 3))]),
            params=ParamSchema([ParamSpec("return_members", "boolean", False)]),
        )
        with mlflow.start_run(experiment_id=exp):
            info = mlflow.pyfunc.log_model(name="committee", python_model=TinyCommittee.python_model(),
                                           signature=signature, registered_model_name="lenssearch-committee")
        client.set_registered_model_alias("lenssearch-committee", "champion", info.registered_model_version)
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri(previous_registry)
    return uri
