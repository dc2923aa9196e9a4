"""The modeling network: lens parameters with a 1-sigma uncertainty each (Schuldt et al. 2023a, HOLISMOKES IX).

A ResNet (the classifier's body, :func:`lenssearch.models.resnet.resnet_features`) on the same raw cutouts as the
classifiers (binning and robust normalisation inside the model) ends in a dense layer of ``2 P`` numbers, the
standardised mean and log-sigma of each of the ``P`` parameters (:data:`lenssearch.simulate.truth.PARAMETERS`),
and :class:`LensParameterHead` turns them into physical units:

    mean_p = offset_p + scale_p z_p,      log sigma_p = log scale_p + clip(s_p, lo, hi)

``offset`` and ``scale`` are the training set's mean and standard deviation of each parameter (set before
training) and ``[lo, hi]`` (``modeling.network.log_sigma_range``) keeps the loss finite early in training. The
calibration of the sigmas is applied to the prediction over a cutout's eight symmetries, outside the network
(:func:`lenssearch.modeling.fit.predict`, the registered pyfunc). The output is
``N x 2P``: the means, then the log-sigmas. The loss is the Gaussian negative log-likelihood
(:func:`gaussian_nll`), so a network that cannot tell a parameter answers the prior's mean and width.

On a non-lens the network still answers; its uncertainties are then what :mod:`lenssearch.modeling.reject` cuts on
(HOLISMOKES XVI, Sect. 3.2).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="lenssearch")
class LensParameterHead(keras.layers.Layer):
    """Standardised ``(z, s)`` pairs to physical means and log-sigmas (see the module docstring)."""

    def __init__(self, n_parameters: int, log_sigma_range=(-7.0, 3.0), **kwargs):
        super().__init__(**kwargs)
        self.n_parameters = int(n_parameters)
        self.log_sigma_range = (float(log_sigma_range[0]), float(log_sigma_range[1]))

    def build(self, input_shape):
        p = self.n_parameters
        self.offset = self.add_weight(name="offset", shape=(p,), initializer="zeros", trainable=False)
        self.scale = self.add_weight(name="scale", shape=(p,), initializer="ones", trainable=False)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        p = self.n_parameters
        z, s = x[:, :p], x[:, p:]
        lo, hi = self.log_sigma_range
        mean = self.offset + self.scale * z
        log_sigma = ops.log(self.scale) + ops.clip(s, lo, hi)
        return ops.concatenate([mean, log_sigma], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * self.n_parameters)

    def get_config(self):
        return {**super().get_config(), "n_parameters": self.n_parameters,
                "log_sigma_range": list(self.log_sigma_range)}


def gaussian_nll(y_true, y_pred):
    """Mean over parameters of ``0.5 ((y - mean) / sigma)^2 + log sigma`` (the constant dropped)."""
    y_true = ops.cast(y_true, "float32")
    p = y_true.shape[-1]
    mean, log_sigma = y_pred[:, :p], y_pred[:, p:]
    z = (y_true - mean) * ops.exp(-log_sigma)
    return ops.mean(0.5 * z * z + log_sigma, axis=-1)


def head(model: keras.Model) -> LensParameterHead:
    """The :class:`LensParameterHead` of a modeling network."""
    return model.get_layer("lens_parameters")


def set_standardisation(model: keras.Model, offset, scale) -> None:
    """Set the training set's mean and standard deviation of each parameter (before training)."""
    layer = head(model)
    layer.offset.assign(np.asarray(offset, np.float32))
    layer.scale.assign(np.asarray(scale, np.float32))


def build_modeling(input_shape: tuple[int, int, int], cfg: Any, name: str = "modeling",
                   n_parameters: int = 7) -> keras.Model:
    """The modeling network: raw cutouts in, ``N x 2 n_parameters`` (means, log-sigmas) out.

    ``cfg``: the ``modeling.network`` section (``binning``, ``normalisation_softening``, ``filters``,
    ``blocks_per_stage``, ``dense_units``, ``dropout``, ``leaky_relu_slope``, ``log_sigma_range``).
    """
    from lenssearch.models.resnet import resnet_features
    from lenssearch.models.vgg import _prepare

    height, width, _ = input_shape
    if height != width or height % cfg.binning:
        raise ValueError(f"{name}: input {input_shape} must be square and divisible by binning {cfg.binning}")
    if cfg.blocks_per_stage < 1:
        raise ValueError(f"{name}: modeling.network.blocks_per_stage must be >= 1")
    inputs = keras.Input(shape=input_shape, name="cutouts")
    x = _prepare(inputs, cfg, "")
    x = resnet_features(x, cfg.filters, cfg.blocks_per_stage, cfg.leaky_relu_slope, stem_stride=cfg.stem_stride)
    x = keras.layers.Dense(cfg.dense_units, name="dense1")(x)
    x = keras.layers.LeakyReLU(cfg.leaky_relu_slope, name="dense1_act")(x)
    if cfg.dropout > 0:
        x = keras.layers.Dropout(cfg.dropout, name="dense1_dropout")(x)
    x = keras.layers.Dense(2 * n_parameters, dtype="float32", name="standardised")(x)
    outputs = LensParameterHead(n_parameters, cfg.log_sigma_range, dtype="float32", name="lens_parameters")(x)
    return keras.Model(inputs, outputs, name=name)
