"""MLflow "models from code" definition of a committee of networks (HOLISMOKES XVI, Sect. 2).

Not imported by lenssearch: ``tracking.log_committee_model`` passes this file's path to
``mlflow.pyfunc.log_model(python_model=...)``; MLflow copies it into the model and executes it when the model is
loaded, so a committee loads with mlflow and numpy alone (no lenssearch needed).

``model_config``: ``members`` (names), ``band_index`` (``{name: channel or null}``; a single-band member reads
that channel of the cutout), ``rule`` (``mean`` or ``product`` of the member probabilities). ``artifacts``: one
MLflow model directory per member, loaded with ``mlflow.pyfunc.load_model``.

Input: raw cutouts N x H x W x B float32, as every network. Output: the committee score (float32, length N);
with ``params={"return_members": True}``, a pandas DataFrame with one column per member and ``probability``.
"""

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


#: Cutouts per call of a member's Keras model (``predict_on_batch``).
BATCH = 256


def _scorer(pyfunc):
    """A member as a function of cutouts: its Keras model's ``predict_on_batch``, ``BATCH`` cutouts at a time (the
    Keras flavor's pyfunc ``predict`` would build a data pipeline and print a progress bar on every call), or the
    pyfunc's ``predict`` for another flavor."""
    try:
        raw = pyfunc.get_raw_model()
    except Exception:
        raw = None
    if raw is None or not callable(getattr(raw, "predict_on_batch", None)):
        return pyfunc.predict

    def predict(x):
        if len(x) == 0:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([np.asarray(raw.predict_on_batch(x[i:i + BATCH])).reshape(-1)
                               for i in range(0, len(x), BATCH)])

    return predict


class CommitteeModel(PythonModel):
    """Combine member probabilities by their mean or their product."""

    def load_context(self, context):
        config = context.model_config
        self.members = list(config["members"])
        self.band_index = dict(config.get("band_index") or {})
        self.rule = config["rule"]
        if self.rule not in ("mean", "product"):
            raise ValueError(f"committee rule must be 'mean' or 'product', got {self.rule!r}")
        self.models = {m: _scorer(mlflow.pyfunc.load_model(context.artifacts[m])) for m in self.members}

    def member_scores(self, cutouts):
        """Probability of each member, shape (n_members, N)."""
        if isinstance(cutouts, dict) and len(cutouts) == 1:  # a named tensor input
            cutouts = next(iter(cutouts.values()))
        x = np.asarray(cutouts, dtype=np.float32)
        if x.ndim != 4:
            raise ValueError(f"committee input must be N x H x W x B cutouts, got shape {x.shape}")
        scores = []
        for m in self.members:
            b = self.band_index.get(m)
            xi = x if b is None else x[..., int(b) : int(b) + 1]
            out = self.models[m](xi)
            out = out.to_numpy() if hasattr(out, "to_numpy") else out
            scores.append(np.asarray(out, dtype=np.float64).reshape(len(x)))
        return np.stack(scores)

    def predict(self, context, model_input, params=None):
        scores = self.member_scores(model_input)
        combined = scores.mean(axis=0) if self.rule == "mean" else scores.prod(axis=0)
        if params and params.get("return_members"):
            import pandas as pd

            frame = pd.DataFrame({m: s for m, s in zip(self.members, scores)})
            frame["probability"] = combined
            return frame
        return combined.astype(np.float32)


mlflow.models.set_model(CommitteeModel())
