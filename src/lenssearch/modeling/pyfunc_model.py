"""MLflow "models from code" definition of the modeling network (registered as ``lenssearch-modeling``).

Not imported by lenssearch: :func:`lenssearch.modeling.stage.log_modeling_model` passes this file's path to
``mlflow.pyfunc.log_model(python_model=...)``. Its artifact ``keras_model`` is the trained network (``.keras``;
its custom layers need ``lenssearch`` importable, as the classifiers' do); ``model_config`` holds the parameter
names in output order and ``calibration``, the factor of each parameter's sigma (measured on the validation lenses
after the symmetrised prediction).

Input: raw cutouts N x H x W x B float32 (e-/s, band order F435W, F606W, F814W), like every network. Output: a
pandas DataFrame, one row per cutout, columns ``pred_<parameter>`` (the predicted mean) then ``sigma_<parameter>``
(its calibrated 1-sigma uncertainty) for each parameter (see ``lenssearch.simulate.truth``), both over the
cutout's eight symmetries (``lenssearch.modeling.data.predict_symmetrised``), as the modeling stage validated it.
"""

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class LensModelingModel(PythonModel):
    """The lens parameters and their uncertainties as a table."""

    def load_context(self, context):
        import keras

        import lenssearch.models.modeling  # noqa: F401  (registers the custom layers)

        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        self.parameters = list(context.model_config["parameters"])
        self.batch_size = int(context.model_config.get("batch_size", 128))
        factors = context.model_config.get("calibration") or [1.0] * len(self.parameters)
        self.calibration = np.asarray(factors, dtype=float)

    def predict(self, context, model_input, params=None):
        import pandas as pd

        if isinstance(model_input, dict) and len(model_input) == 1:  # a named tensor input
            model_input = next(iter(model_input.values()))
        x = np.asarray(model_input, dtype=np.float32)
        if x.ndim != 4:
            raise ValueError(f"lenssearch-modeling: input must be N x H x W x B cutouts, got shape {x.shape}")
        from lenssearch.modeling.data import predict_symmetrised

        p = len(self.parameters)

        from lenssearch.models import predict_in_batches

        def one_view(view):
            out = np.asarray(predict_in_batches(self.model, view, self.batch_size), dtype=np.float64)
            return out[:, :p], np.exp(out[:, p:])

        if len(x):
            mean, sigma = predict_symmetrised(one_view, x)
            sigma = sigma * self.calibration
        else:
            mean, sigma = np.zeros((0, p)), np.zeros((0, p))
        columns = {f"pred_{name}": mean[:, k] for k, name in enumerate(self.parameters)}
        columns.update({f"sigma_{name}": sigma[:, k] for k, name in enumerate(self.parameters)})
        return pd.DataFrame(columns)


mlflow.models.set_model(LensModelingModel())
