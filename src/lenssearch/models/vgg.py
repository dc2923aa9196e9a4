"""VGG-like classifiers of Angora et al. (2023, Sect. 2): VGG, SC-VGG and the single-band VGGs.

- **VGG**: blocks of 3x3 convolutions (LeakyReLU) each closed by a 2x2 max pooling; the feature maps feed two
  dense layers (LeakyReLU, dropout) and a sigmoid output, the probability that the cutout is a galaxy-galaxy
  strong lens (Simonyan & Zisserman 2014; Angora et al. 2020).
- **SC-VGG** (single-channel VGG): three parallel VGGs, one per band; their three probabilities are averaged and
  the loss is computed on the average.
- **single band** (F435W, F606W, F814W): the VGG fed one band (Angora et al. 2023, Table A.3).

Every network starts with the input preparation (2x2 binning if ``cfg.binning == 2``, then the per-band robust
normalisation of :mod:`lenssearch.models.layers`), so it takes raw calibrated cutouts,
N x ``cfg.input_pixels`` x ``cfg.input_pixels`` x n_bands float32 in electrons/s.

For training, :func:`split_model` cuts a built network at the end of its preparation into two models that
share its layers and weights: the parameter-free *preparation* (raw cutouts -> binned, normalised ones), run once
over the knowledge base, and the trainable *classifier* (prepared cutouts -> probability), which the training
fits. Training the classifier trains the whole network, which is what is saved and registered.

Builders share one signature, ``build(input_shape, cfg, name) -> keras.Model``, with ``cfg`` the
``train.network`` section of the configuration (:class:`lenssearch.config.NetworkConfig`).
"""

from __future__ import annotations

from typing import Any, Callable

import keras

from lenssearch.models.layers import TEST_TIME_SYMMETRIES, BandSelect, DihedralTransform, RobustNormalization

#: Band order of every cutout (docs/architecture.md).
BANDS: tuple[str, ...] = ("F435W", "F606W", "F814W")


#: The last layer of every network's input preparation (see :func:`split_model`).
PREPARATION_LAYER = "normalisation"


def _prepare(inputs, cfg: Any, prefix: str):
    """Binning then robust normalisation: the layers that make a network accept raw cutouts."""
    x = inputs
    if cfg.binning > 1:
        x = keras.layers.AveragePooling2D(cfg.binning, dtype="float32", name=f"{prefix}binning")(x)
    # float32 whatever the precision policy: medians and MADs of raw e-/s need it (bfloat16 keeps 8 bits)
    return RobustNormalization(cfg.normalisation_softening, dtype="float32", name=f"{prefix}{PREPARATION_LAYER}")(x)


def _vgg_head(x, cfg: Any, prefix: str, filter_counts: tuple[int, ...]):
    """Convolution/pooling blocks, two dense layers and the sigmoid output, on prepared inputs."""
    for block, filters in enumerate(filter_counts, start=1):
        for conv in range(1, cfg.convs_per_block + 1):
            x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{prefix}block{block}_conv{conv}")(x)
            x = keras.layers.LeakyReLU(cfg.leaky_relu_slope, name=f"{prefix}block{block}_act{conv}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"{prefix}block{block}_pool")(x)
    x = keras.layers.Flatten(name=f"{prefix}flatten")(x)
    for layer, units in enumerate(cfg.dense_units, start=1):
        x = keras.layers.Dense(units, name=f"{prefix}dense{layer}")(x)
        x = keras.layers.LeakyReLU(cfg.leaky_relu_slope, name=f"{prefix}dense{layer}_act")(x)
        if cfg.dropout > 0:
            x = keras.layers.Dropout(cfg.dropout, name=f"{prefix}dense{layer}_dropout")(x)
    return keras.layers.Dense(1, activation="sigmoid", dtype="float32", name=f"{prefix}probability")(x)


def _check_shape(input_shape: tuple[int, ...], cfg: Any, name: str) -> None:
    height, width, _ = input_shape
    if height != width or height % cfg.binning:
        raise ValueError(f"{name}: input {input_shape} must be square and divisible by binning {cfg.binning}")
    side = height // cfg.binning
    if len(cfg.sc_vgg_filters) != len(cfg.filters):
        raise ValueError(f"{name}: train.network.sc_vgg_filters must have as many blocks as filters")
    if side % 2 ** len(cfg.filters):
        raise ValueError(
            f"{name}: a {side}x{side} binned input cannot go through {len(cfg.filters)} 2x2 poolings; "
            "change train.network.filters or train.network.binning"
        )


def build_vgg(input_shape: tuple[int, int, int], cfg: Any, name: str = "vgg") -> keras.Model:
    """The VGG: all bands enter the first convolution together.

    Parameters
    ----------
    input_shape
        ``(pixels, pixels, n_bands)`` of the raw cutouts.
    cfg
        The ``train.network`` configuration (filters, convolutions per block, dense units, dropout, LeakyReLU
        slope, binning, normalisation softening).
    name
        The model's name.
    """
    _check_shape(input_shape, cfg, name)
    inputs = keras.Input(shape=input_shape, name="cutouts")
    outputs = _vgg_head(_prepare(inputs, cfg, ""), cfg, "", cfg.filters)
    return keras.Model(inputs, outputs, name=name)


def build_sc_vgg(input_shape: tuple[int, int, int], cfg: Any, name: str = "sc_vgg") -> keras.Model:
    """SC-VGG: one VGG per band, the output is the mean of their probabilities (the loss acts on the mean).

    Each branch has ``cfg.sc_vgg_filters`` filters per block (the paper profile uses the VGG's own; the demo
    halves them to fit its time, docs/architecture.md). The training may add each branch's own loss to the loss on the mean
    (``train.sc_vgg_branch_loss_weight``, :func:`lenssearch.train.fit.branch_supervised`).

    The branch outputs are the layers named ``<band>_probability`` (``band_<i>_probability`` beyond the known
    bands), so that their average can be checked.
    """
    _check_shape(input_shape, cfg, name)
    inputs = keras.Input(shape=input_shape, name="cutouts")
    prepared = _prepare(inputs, cfg, "")
    branches = []
    for index in range(input_shape[-1]):
        band = BANDS[index] if input_shape[-1] == len(BANDS) else f"band_{index}"
        band_input = BandSelect(index, name=f"{band}_select")(prepared)
        branches.append(_vgg_head(band_input, cfg, f"{band}_", cfg.sc_vgg_filters))
    outputs = keras.layers.Average(dtype="float32", name="probability")(branches)
    return keras.Model(inputs, outputs, name=name)


def _single_band(band: str) -> Callable[..., keras.Model]:
    def build(input_shape: tuple[int, int, int], cfg: Any, name: str = band.lower()) -> keras.Model:
        if input_shape[-1] != 1:
            raise ValueError(f"{name}: a single-band network takes one band, got input shape {input_shape}")
        return build_vgg(input_shape, cfg, name=name)

    build.__name__ = f"build_{band.lower()}"
    build.__doc__ = f"The VGG fed the {band} band alone (Angora et al. 2023, Table A.3)."
    return build


#: Network name -> builder ``(input_shape, cfg, name) -> keras.Model``.
def _build_resnet(input_shape: tuple[int, int, int], cfg: Any, name: str = "resnet") -> keras.Model:
    """The ResNet of the HOLISMOKES committees (:mod:`lenssearch.models.resnet`)."""
    from lenssearch.models.resnet import build_resnet

    return build_resnet(input_shape, cfg, name)


def _build_modeling(input_shape: tuple[int, int, int], cfg: Any, name: str = "modeling") -> keras.Model:
    """The modeling network: lens parameters and their uncertainties (:mod:`lenssearch.models.modeling`)."""
    from lenssearch.models.modeling import build_modeling

    return build_modeling(input_shape, cfg, name)


MODELS: dict[str, Callable[..., keras.Model]] = {
    "vgg": build_vgg,
    "sc_vgg": build_sc_vgg,
    "resnet": _build_resnet,
    **{band.lower(): _single_band(band) for band in BANDS},
    "modeling": _build_modeling,  # configured by the modeling section, trained by `lenssearch modeling`
}
#: The lens classifiers (trained by `lenssearch train`, configured by train.network).
CLASSIFIERS: tuple[str, ...] = tuple(k for k in MODELS if k != "modeling")


def network_bands(network: str, bands: tuple[str, ...] = BANDS) -> tuple[int, ...]:
    """Indices, in the knowledge base's band order ``bands``, of the bands that ``network`` takes."""
    if network not in MODELS:
        raise KeyError(f"unknown network '{network}' (known: {sorted(MODELS)})")
    upper = [b.upper() for b in bands]
    if network.upper() in upper:
        return (upper.index(network.upper()),)
    return tuple(range(len(bands)))


def split_model(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """``(preparation, classifier)``: ``model`` cut after its input preparation (binning and normalisation).

    ``preparation`` maps raw cutouts to the prepared ones (it has no weights); ``classifier`` maps prepared
    cutouts to the probability and shares every layer and weight with ``model``, so that
    ``classifier(preparation(x)) == model(x)`` and fitting ``classifier`` trains ``model``. The training prepares
    the knowledge base once and fits the classifier on it: the per-cutout median/MAD and binning are not
    recomputed every epoch, and the augmentation re-indexes the binned pixels (4x fewer in the demo).
    """
    prepared = model.get_layer(PREPARATION_LAYER).output
    return (keras.Model(model.input, prepared, name=f"{model.name}_preparation"),
            keras.Model(prepared, model.output, name=f"{model.name}_classifier"))


def symmetric_classifier(classifier: keras.Model, symmetries: int) -> keras.Model:
    """``classifier`` (prepared cutouts in) averaged over ``symmetries`` symmetries of its input: 1 (``classifier``
    itself), 2, 4 or 8 (:data:`lenssearch.models.layers.TEST_TIME_SYMMETRIES`). Shares ``classifier``'s layers.

    Test-time augmentation: the networks learn from the eight symmetries of every cutout (the training's
    augmentation), and a lens is one whatever its orientation; averaging the probabilities of a cutout's rotations
    removes the part of a score that depends on it (docs/architecture.md, "Test-time symmetries").
    """
    if symmetries not in TEST_TIME_SYMMETRIES:
        raise ValueError(f"test-time symmetries must be one of {sorted(TEST_TIME_SYMMETRIES)}, got {symmetries}")
    if symmetries == 1:
        return classifier
    inputs = keras.Input(shape=classifier.input_shape[1:], name="prepared")
    outputs = [classifier(DihedralTransform(k, name=f"symmetry_{k}")(inputs)) for k in TEST_TIME_SYMMETRIES[symmetries]]
    mean = keras.layers.Average(dtype="float32", name="symmetry_mean")(outputs)
    return keras.Model(inputs, mean, name=f"{classifier.name}_x{symmetries}")


def test_time_model(model: keras.Model, symmetries: int) -> keras.Model:
    """The network ``model`` (raw cutouts in) whose probability is the mean over ``symmetries`` symmetries of its
    prepared input (:func:`symmetric_classifier`); ``model`` itself for 1. Cut by :func:`split_model` as any
    network: its preparation is ``model``'s, its classifier the symmetric one, so the training's predictions on the
    prepared knowledge base are those of the saved model."""
    if symmetries == 1:
        return model
    preparation, classifier = split_model(model)
    inputs = keras.Input(shape=model.input_shape[1:], name="cutouts")
    prepared = keras.layers.Identity(name=PREPARATION_LAYER)(preparation(inputs))
    return keras.Model(inputs, symmetric_classifier(classifier, symmetries)(prepared), name=model.name)


def build_model(network: str, cfg: Any, bands: tuple[str, ...] = BANDS) -> keras.Model:
    """Build ``network`` for raw cutouts of ``cfg.input_pixels`` pixels a side in the given band order."""
    n_bands = len(network_bands(network, bands))
    return MODELS[network]((cfg.input_pixels, cfg.input_pixels, n_bands), cfg, name=network)
