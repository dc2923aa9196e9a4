"""Keras layers that put the input preparation inside the network.

A registered model takes raw calibrated cutouts (electrons/s, band order F435W, F606W, F814W) and returns the lens
probability; the binning and the normalisation that the networks were trained with are therefore layers of the
network itself, saved and loaded with it:

- :class:`RobustNormalization`: per cutout and per band, ``asinh((x - median) / (softening * sigma))`` with
  ``sigma = 1.4826 * MAD`` (the median absolute deviation, a noise estimate insensitive to the central galaxy and
  the arcs). The result is in units of the background noise, compressed logarithmically above ``softening``
  sigma (the arcsinh stretch of Lupton et al. 1999), so faint arcs and a bright lens galaxy share one dynamic
  range. It is scale-free: multiplying a cutout by any positive constant leaves the output unchanged. The median
  and the MAD are measured on a regular ``sample_grid`` x ``sample_grid`` subgrid of the pixels (256 of the
  4096 of a binned demo cutout): sorting 4096 values per band and cutout would cost more than the network itself
  on a CPU, while the median of 256 noise pixels is within ~0.08 sigma of the full one.
- :class:`BandSelect`: one band of a multi-band input (the branches of SC-VGG).
- :class:`DihedralTransform`: one of the eight symmetries of the square (the test-time averaging of
  :func:`lenssearch.models.vgg.test_time_model`).

:func:`predict_in_batches` scores an array with ``predict_on_batch``, the caller's batches (the search, the
committee and the modeling pyfuncs call the Keras models so, never Keras' per-call ``predict`` pipeline).

Binning uses Keras' own ``AveragePooling2D`` (a 2x2 mean keeps the 3.84" field at half the resolution).
The layers are registered under the package name ``lenssearch`` so that ``keras.models.load_model`` and MLflow
find them once :mod:`lenssearch.models` is imported.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

#: Converts a median absolute deviation into the standard deviation of a Gaussian (1 / Phi^-1(3/4)).
MAD_TO_SIGMA = 1.482602218505602


def _median_last_axis(values):
    """Median along the last axis (the mean of the two central order statistics when the length is even)."""
    n = values.shape[-1]
    ordered = ops.sort(values, axis=-1)
    if n % 2:
        return ordered[..., n // 2]
    return 0.5 * (ordered[..., n // 2 - 1] + ordered[..., n // 2])


def _arcsinh(z):
    """``asinh(z) = sign(z) log(|z| + sqrt(z^2 + 1))``: several times faster on a CPU than TensorFlow's Asinh.

    ``|z|`` is capped at 1e18 (a float32 ``z^2`` stays finite); cutouts never come near it in noise units.
    """
    magnitude = ops.minimum(ops.abs(z), 1e18)
    return ops.sign(z) * ops.log(magnitude + ops.sqrt(magnitude * magnitude + 1.0))


@keras.saving.register_keras_serializable(package="lenssearch")
class RobustNormalization(keras.layers.Layer):
    """Per-cutout, per-band robust arcsinh stretch in units of the background noise.

    For each cutout and band, ``y = asinh((x - m) / (softening * s))`` where ``m`` is the median of the pixels
    and ``s = 1.4826 MAD`` (falling back to the standard deviation where the MAD vanishes, and to 1 for a constant
    image). Lupton, Gunn & Szalay (1999, AJ 118, 1406) for the arcsinh stretch; Hampel (1974) for the MAD.

    Parameters
    ----------
    softening
        Where the stretch turns from linear to logarithmic, in units of the noise sigma.
    sample_grid
        The statistics use every ``side // sample_grid``-th pixel along each axis (all pixels if the side is
        not larger than ``sample_grid``).
    """

    def __init__(self, softening: float = 1.0, sample_grid: int = 16, **kwargs):
        super().__init__(**kwargs)
        if not softening > 0:
            raise ValueError(f"RobustNormalization: softening must be positive, got {softening}")
        if sample_grid < 1:
            raise ValueError(f"RobustNormalization: sample_grid must be >= 1, got {sample_grid}")
        self.softening = float(softening)
        self.sample_grid = int(sample_grid)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        step_y = max(1, x.shape[1] // self.sample_grid)
        step_x = max(1, x.shape[2] // self.sample_grid)
        sample = x[:, step_y // 2 :: step_y, step_x // 2 :: step_x, :]
        height, width, channels = sample.shape[1], sample.shape[2], sample.shape[3]
        # (batch, channels, pixels): one row of sampled pixels per cutout and band
        rows = ops.transpose(ops.reshape(sample, (-1, height * width, channels)), (0, 2, 1))
        median = _median_last_axis(rows)
        mad = _median_last_axis(ops.abs(rows - median[..., None]))
        std = ops.std(rows, axis=-1)
        sigma = ops.where(mad > 0, MAD_TO_SIGMA * mad, std)
        sigma = ops.where(sigma > 0, sigma, ops.ones_like(sigma))
        median = median[:, None, None, :]
        sigma = sigma[:, None, None, :]
        return _arcsinh((x - median) / (self.softening * sigma))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "softening": self.softening, "sample_grid": self.sample_grid}


@keras.saving.register_keras_serializable(package="lenssearch")
class BandSelect(keras.layers.Layer):
    """Keep one band (channel) of a multi-band input, as an N x H x W x 1 tensor.

    Parameters
    ----------
    index
        The channel to keep (0 = F435W, 1 = F606W, 2 = F814W in the knowledge base's band order).
    """

    def __init__(self, index: int, **kwargs):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, inputs):
        return inputs[..., self.index : self.index + 1]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)

    def get_config(self):
        return {**super().get_config(), "index": self.index}


#: The symmetries averaged at test time (``train.test_time_symmetries``), as :class:`DihedralTransform` numbers:
#: the identity, the 180-degree rotation, the four 90-degree rotations, or all eight symmetries of the square.
TEST_TIME_SYMMETRIES: dict[int, tuple[int, ...]] = {1: (0,), 2: (0, 6), 4: (0, 3, 5, 6), 8: tuple(range(8))}


@keras.saving.register_keras_serializable(package="lenssearch")
class DihedralTransform(keras.layers.Layer):
    """One of the eight symmetries of the square applied to N x H x H x C images.

    Numbered as the training's augmentation (:func:`lenssearch.train.data.dihedral_permutations`): bit 0 of
    ``symmetry`` transposes, bit 1 then flips the rows, bit 2 the columns (3 and 5: the two 90-degree rotations,
    6: the 180-degree rotation).
    """

    def __init__(self, symmetry: int, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= int(symmetry) < 8:
            raise ValueError(f"DihedralTransform: symmetry must be in 0..7, got {symmetry}")
        self.symmetry = int(symmetry)

    def call(self, inputs):
        x = inputs
        if self.symmetry & 1:
            x = ops.transpose(x, (0, 2, 1, 3))
        if self.symmetry & 2:
            x = ops.flip(x, axis=1)
        if self.symmetry & 4:
            x = ops.flip(x, axis=2)
        return x

    def compute_output_shape(self, input_shape):
        if self.symmetry & 1:
            return (input_shape[0], input_shape[2], input_shape[1], input_shape[3])
        return input_shape

    def get_config(self):
        return {**super().get_config(), "symmetry": self.symmetry}


def predict_in_batches(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``model``'s output for the array ``x``, ``batch_size`` rows at a time with ``predict_on_batch``: no data
    pipeline and no progress bar per call (Keras' ``predict`` builds both on every call; called once per batch of
    a field search that cost ~0.85 ms per cutout more for the committee on this CPU). The caller batches; an
    empty ``x`` gives an empty result (Keras' ``predict`` fails on one)."""
    x = np.asarray(x)
    if len(x) == 0:
        return np.zeros((0, *model.outputs[0].shape[1:]), dtype=np.float32)
    return np.concatenate([np.asarray(model.predict_on_batch(x[i : i + batch_size]))
                           for i in range(0, len(x), batch_size)])
