"""Score cutouts with a registered model or committee (``models:/lenssearch@champion`` by default).

Registered models are MLflow pyfuncs that take raw cutouts N x 128 x 128 x B (float32, electrons/s) and return
the lens probability (docs/architecture.md). A committee (HOLISMOKES XVI, Sect. 2: the average of its members'
scores) may return each member's score too, as a DataFrame or a mapping with one column per member and a
``committee`` (or ``score``/``probability``) column; :func:`parse_scores` accepts every such form.

MLflow is reached only through :mod:`lenssearch.tracking`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

import numpy as np

from lenssearch.errors import LensSearchError

#: Column names that hold the committee's (or single model's) score, in order of preference.
MAIN_SCORE_NAMES = ("committee", "score", "probability", "prob", "p")

#: Inference parameter of a committee pyfunc that makes it return each member's score (evaluate.committee_model).
MEMBERS_PARAM = "return_members"

#: Tag names of a registered model version that may hold its tuned threshold (promotion stage).
THRESHOLD_TAGS = ("threshold", "tuned_threshold", "probability_threshold", "decision_threshold")


class ModelOutputError(LensSearchError):
    """A model returned something that is not one probability per cutout."""


@dataclasses.dataclass
class Scores:
    """Scores of one batch: the main (committee) score and each member's, one value per cutout."""

    main: np.ndarray
    members: dict[str, np.ndarray]


def _as_columns(output: Any) -> dict[str, np.ndarray] | np.ndarray:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas ships with mlflow
        pd = None
    if pd is not None and isinstance(output, pd.Series):
        return np.asarray(output)
    if pd is not None and isinstance(output, pd.DataFrame):
        return {str(c): np.asarray(output[c]) for c in output.columns}
    if isinstance(output, dict):
        return {str(k): np.asarray(v) for k, v in output.items()}
    return np.asarray(output)


def parse_scores(output: Any, n: int) -> Scores:
    """Turn a model's output for ``n`` cutouts into :class:`Scores`.

    Accepted: an array of n (or n x 1) probabilities; an array n x k (k members, the committee is their mean,
    as HOLISMOKES XVI's committee); a DataFrame or mapping of columns, one of which may be named ``committee``,
    ``score`` or ``probability`` (otherwise the mean of the columns is the committee score).

    Raises
    ------
    ModelOutputError
        Wrong length, non-numeric output, or probabilities outside [0, 1] / not finite.
    """
    cols = _as_columns(output)
    members: dict[str, np.ndarray] = {}
    if isinstance(cols, dict):
        if not cols:
            raise ModelOutputError("the model returned no columns")
        arrays = {k: np.asarray(v, dtype=float).reshape(-1) for k, v in cols.items()}
        main_name = next((name for name in MAIN_SCORE_NAMES for k in arrays if k.lower() == name), None)
        if main_name is not None:
            key = next(k for k in arrays if k.lower() == main_name)
            main = arrays.pop(key)
            members = arrays
        elif len(arrays) == 1:
            main = next(iter(arrays.values()))
        else:
            members = arrays
            main = np.mean(np.column_stack(list(arrays.values())), axis=1)
    else:
        try:
            arr = np.asarray(cols, dtype=float)
        except (TypeError, ValueError):
            raise ModelOutputError(f"the model returned a non-numeric output of type {type(output).__name__}") from None
        if arr.ndim == 2 and arr.shape[1] > 1:
            members = {f"member{j}": arr[:, j] for j in range(arr.shape[1])}
            main = arr.mean(axis=1)
        else:
            main = arr.reshape(-1)
    for name, values in {"score": main, **members}.items():
        if values.shape != (n,):
            raise ModelOutputError(f"the model returned {values.size} values for column '{name}' for {n} cutouts")
        if not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > 1.0:
            raise ModelOutputError(f"the model's '{name}' output is not a probability in [0, 1] for every cutout")
    return Scores(main=main, members=members)


def model_label(uri: str) -> str:
    """A short column label for a model URI: ``models:/lenssearch-vgg@champion`` -> ``vgg``."""
    m = re.match(r"models:/([^/@]+)", uri)
    if not m:
        return "model"
    name = m.group(1)
    return name[len("lenssearch-") :] if name.startswith("lenssearch-") else name


class Scorer:
    """A model (or committee) that scores batches of cutouts.

    Parameters
    ----------
    predict
        Function cutouts (n x S x S x B float32) -> model output (see :func:`parse_scores`).
    uri
        The model URI, recorded in the outputs.
    threshold
        The tuned threshold tagged on the registered version, or None.
    """

    def __init__(self, predict: Callable[[np.ndarray], Any], uri: str, threshold: float | None = None,
                 input_shape: tuple[int, int, int] | None = None):
        self._predict = predict
        self.uri = uri
        self.label = model_label(uri)
        self.threshold = threshold
        self.input_shape = input_shape  # S x S x B of one cutout, from the model's signature (None: unknown)
        self.member_names: tuple[str, ...] | None = None

    def check_cutouts(self, shape: tuple[int, int, int], source: str) -> None:
        """Refuse cutouts of ``shape`` (S x S x B) that the model does not take, naming ``source`` (the stack file
        or the parameter that sets the cutout size) and the size expected; nothing is scored."""
        if self.input_shape is None:
            return
        want = tuple(self.input_shape)
        got = tuple(int(v) for v in shape)
        if len(want) != len(got) or any(w not in (-1, None) and w != g for w, g in zip(want, got)):
            fmt = lambda s: "x".join("?" if v in (-1, None) else str(v) for v in s[:2]) + f" pixels x {s[2]} bands"
            raise LensSearchError(
                f"{source}: cutouts of {fmt(got)}, but the model {self.uri} takes cutouts of {fmt(want)} (its "
                "MLflow signature); give cutouts of that size"
            )

    def score(self, cutouts: np.ndarray) -> Scores:
        """Score one batch (an empty batch gives empty scores)."""
        n = len(cutouts)
        if n == 0:
            return Scores(np.zeros(0), {name: np.zeros(0) for name in self.member_names or ()})
        scores = parse_scores(self._predict(np.ascontiguousarray(cutouts, dtype=np.float32)), n)
        names = tuple(scores.members)
        if self.member_names is None:
            self.member_names = names
        elif names != self.member_names:
            raise ModelOutputError(f"{self.uri}: the model's member columns changed between batches ({names})")
        return scores

    def members(self, cutout_shape: tuple[int, int, int]) -> tuple[str, ...]:
        """The member columns of the model's output (known after the first batch).

        Before any batch has been scored (e.g. a search whose first chunk of positions is all off the image, whose
        per-position file must name its columns), one blank cutout of ``cutout_shape`` (S x S x B) is scored to
        learn them.
        """
        if self.member_names is None:
            self.score(np.zeros((1, *cutout_shape), dtype=np.float32))
        return self.member_names or ()


def threshold_from_tags(tags: dict[str, str]) -> float | None:
    """The tuned threshold among a model version's tags (:data:`THRESHOLD_TAGS`), or None."""
    for name in THRESHOLD_TAGS:
        if name in tags:
            try:
                value = float(tags[name])
            except ValueError:
                raise LensSearchError(f"model version tag '{name}' = {tags[name]!r} is not a number") from None
            if not 0.0 <= value <= 1.0:
                raise LensSearchError(f"model version tag '{name}' = {value} is not a probability threshold")
            return value
    return None


def load_scorer(uri: str, tracking_uri: str | None = None) -> Scorer:
    """Load a registered model or committee as a :class:`Scorer`.

    A committee whose signature declares the ``return_members`` parameter is asked for its members' scores too;
    the tuned threshold is read from the version's ``threshold`` tag (promote stage).

    Raises
    ------
    LensSearchError
        The URI does not resolve to a model (unknown name, version or alias).
    """
    from lenssearch import tracking

    tracking_uri = tracking.resolve_tracking_uri(tracking_uri)
    model = tracking.load_pyfunc(uri, tracking_uri=tracking_uri)
    tags = tracking.model_version_tags(uri, tracking_uri=tracking_uri)
    signature = getattr(model.metadata, "signature", None)
    param_names = {p.name for p in signature.params.params} if signature is not None and signature.params else set()
    predict = batch_predictor(model, members=MEMBERS_PARAM in param_names)
    return Scorer(predict, uri, threshold_from_tags(tags), input_shape=signature_cutout_shape(model))


def batch_predictor(model, members: bool = False) -> Callable[[np.ndarray], Any]:
    """The function that scores a batch with a loaded pyfunc ``model``: a committee's ``predict`` (asked for its
    members' scores with ``members``); for one network, its Keras model's ``predict_on_batch`` on the caller's
    batch (:func:`lenssearch.models.predict_in_batches`), not the Keras flavor's pyfunc ``predict``, which builds
    a data pipeline and prints a progress bar on every call."""
    if members:
        return lambda x: model.predict(x, params={MEMBERS_PARAM: True})
    keras_model = _keras_model_of(model)
    if keras_model is None:
        return model.predict
    from lenssearch.models import predict_in_batches

    return lambda x: predict_in_batches(keras_model, x)


def _keras_model_of(model):
    """The Keras model inside a pyfunc of MLflow's Keras (tensorflow) flavor, else None: its wrapper's ``predict``
    would run Keras' per-call ``predict`` (a data pipeline and a progress bar for every batch)."""
    try:
        raw = model.get_raw_model()
    except Exception:  # a flavor without a raw model
        return None
    return raw if callable(getattr(raw, "predict_on_batch", None)) and hasattr(raw, "outputs") else None


def signature_cutout_shape(model) -> tuple[int, int, int] | None:
    """S x S x B of the cutouts a pyfunc takes, from its tensor input signature (None: no such signature)."""
    try:
        schema = model.metadata.get_input_schema()
        if schema is None or not schema.is_tensor_spec() or len(schema.inputs) != 1:
            return None
        shape = tuple(schema.inputs[0].shape)
    except Exception:  # a model without metadata or an unusual signature: not checked
        return None
    if len(shape) != 4:
        return None
    return tuple(int(v) for v in shape[1:])
