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

# A tiny real model: lens probability = sigmoid(scale * (mean pixel - 0.5)), any number of bands.
MEMBER_CODE = '''
import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class MeanPixelModel(PythonModel):
    def load_context(self, context):
        self.scale = float(context.model_config["scale"])

    def predict(self, context, model_input, params=None):
        x = np.asarray(model_input, dtype=np.float64)
        m = x.reshape(len(x), -1).mean(axis=1)
        return 1.0 / (1.0 + np.exp(-self.scale * (m - 0.5)))


mlflow.models.set_model(MeanPixelModel())
'''


@pytest.fixture(scope="session")
def cfg():
    return load_config(REPO / "params.yaml")


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """``(predictions_dir, kb_path)`` with 600 cutouts, five networks, three folds."""
    root = tmp_path_factory.mktemp("synthetic")
    return write_synthetic(root, np.random.default_rng(7), n=600)


def replace(cfg, section: str, **changes):
    """A copy of ``cfg`` with keys of one section changed."""
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **changes)})


def log_member(name: str, n_bands: int, scale: float) -> str:
    """Log and register a tiny pyfunc model as ``name``; return ``models:/name/version``."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    code = Path(mlflow.get_tracking_uri()[len("sqlite:///"):]).parent / "member_model.py"
    if not code.exists():
        code.write_text(MEMBER_CODE)
    sig = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, n_bands))]),
        outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,))]),
    )
    with mlflow.start_run(run_name=f"train {name}"):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(code), model_config={"scale": scale}, signature=sig,
            pip_requirements=["mlflow", "numpy"], registered_model_name=name,
        )
    return f"models:/{name}/{info.registered_model_version}"


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory):
    """A tmp sqlite MLflow store holding registered ``lenssearch-<network>`` models; returns its URI."""
    from lenssearch.evaluate import registry

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    registry.setup(uri)
    import mlflow

    # artifacts beside the tmp store, never in the working directory
    mlflow.set_experiment(experiment_id=registry.experiment_id("train-fixtures", uri))
    for i, net in enumerate(NETWORKS):
        log_member(f"lenssearch-{net}", 3 if net in ("vgg", "sc_vgg") else 1, 2.0 + i)
    return uri
