"""A committee wraps real Keras members logged as the train stage logs them (TensorFlow flavour)."""

import numpy as np
import pytest


@pytest.mark.slow
def test_committee_of_keras_members(tmp_path):
    keras = pytest.importorskip("keras")
    import mlflow
    import mlflow.tensorflow
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from lenssearch import tracking
    from lenssearch import tracking

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = tracking.experiment_id("train", uri)
    rng = np.random.default_rng(0)

    def tiny(n_bands):
        inp = keras.Input((128, 128, n_bands))
        out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(inp))
        return keras.Model(inp, out)

    for name, n_bands in (("lenssearch-vgg", 3), ("lenssearch-f814w", 1)):
        # the TensorFlow flavour, as tracking.log_registered_keras_model logs the run models (without its input
        # example, whose serving check costs most of this test's time)
        sig = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 128, 128, n_bands))]),
                             outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1))]))
        with mlflow.start_run(experiment_id=exp):
            mlflow.tensorflow.log_model(tiny(n_bands), name="model", signature=sig, registered_model_name=name,
                                        pip_requirements=["mlflow", "tensorflow-cpu"])  # no inference subprocess
    with mlflow.start_run(experiment_id=exp) as run:
        pass
    members = {"vgg": "models:/lenssearch-vgg/1", "f814w": "models:/lenssearch-f814w/1"}
    model_uri = tracking.log_committee_model(run.info.run_id, members, {"vgg": None, "f814w": 2}, "product", 3)
    x = rng.random((4, 128, 128, 3), np.float32)
    vgg = np.asarray(mlflow.pyfunc.load_model(members["vgg"]).predict(x)).reshape(-1)
    f814w = np.asarray(mlflow.pyfunc.load_model(members["f814w"]).predict(x[..., 2:3])).reshape(-1)
    committee = mlflow.pyfunc.load_model(model_uri)
    np.testing.assert_allclose(committee.predict(x), vgg * f814w, rtol=1e-5)
