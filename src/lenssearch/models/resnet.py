"""A residual network (He et al. 2016) for lens classification, as in the HOLISMOKES committees.

Cañameras et al. (2021, A&A 653, L6) and HOLISMOKES XVI (Schuldt et al. 2025, Sect. 2) classify cutouts with
ResNets: residual blocks of two 3x3 convolutions with batch normalisation whose input is added back to their
output (a 1x1 projection where the shape changes), stages that halve the resolution, global average pooling and a
small dense head with dropout before the sigmoid. A strided stem halves the resolution before the first stage. The demo sizes (``train.network.resnet_filters``,
``resnet_blocks_per_stage``) keep it at the cost of a few demo VGGs on a CPU; the input preparation (binning, robust
normalisation) is the same layers as every other network's, so the registered model takes raw cutouts.

Builder signature as every network's: ``build(input_shape, cfg, name) -> keras.Model``.
"""

from __future__ import annotations

from typing import Any

import keras


def _residual_block(x, filters: int, stride: int, slope: float, name: str):
    shortcut = x
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = keras.layers.LeakyReLU(slope, name=f"{name}_act1")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(shortcut)
        shortcut = keras.layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.LeakyReLU(slope, name=f"{name}_out")(y)


def resnet_features(x, filters: tuple[int, ...], blocks_per_stage: int, slope: float, prefix: str = "",
                    stem_stride: int = 2):
    """Stem, residual stages and global average pooling, on prepared inputs (the classifier's and the modeling
    network's common body)."""
    filters = tuple(filters)
    if not filters:
        raise ValueError("resnet: the filters must have at least one stage")
    # the stem halves the resolution at once, as ResNets do (He et al. 2016: a strided 7x7 convolution)
    x = keras.layers.Conv2D(filters[0], 5, strides=stem_stride, padding="same", use_bias=False,
                            name=f"{prefix}stem_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{prefix}stem_bn")(x)
    x = keras.layers.LeakyReLU(slope, name=f"{prefix}stem_act")(x)
    for stage, width in enumerate(filters, start=1):
        for block in range(1, blocks_per_stage + 1):
            stride = 2 if (stage > 1 and block == 1) else 1
            x = _residual_block(x, width, stride, slope, f"{prefix}stage{stage}_block{block}")
    return keras.layers.GlobalAveragePooling2D(name=f"{prefix}pool")(x)


def resnet_head(x, cfg: Any, prefix: str = ""):
    """Stem, residual stages, global average pooling, dense head and sigmoid, on prepared inputs."""
    x = resnet_features(x, cfg.resnet_filters, cfg.resnet_blocks_per_stage, cfg.leaky_relu_slope, prefix)
    x = keras.layers.Dense(cfg.dense_units[0], name=f"{prefix}dense1")(x)
    x = keras.layers.LeakyReLU(cfg.leaky_relu_slope, name=f"{prefix}dense1_act")(x)
    dropout = cfg.dropout if cfg.resnet_dropout is None else cfg.resnet_dropout
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name=f"{prefix}dense1_dropout")(x)
    return keras.layers.Dense(1, activation="sigmoid", dtype="float32", name=f"{prefix}probability")(x)


def build_resnet(input_shape: tuple[int, int, int], cfg: Any, name: str = "resnet") -> keras.Model:
    """The ResNet: all bands enter the stem together (raw cutouts in, lens probability out)."""
    from lenssearch.models.vgg import _prepare

    height, width, _ = input_shape
    if height != width or height % cfg.binning:
        raise ValueError(f"{name}: input {input_shape} must be square and divisible by binning {cfg.binning}")
    if cfg.resnet_blocks_per_stage < 1:
        raise ValueError(f"{name}: train.network.resnet_blocks_per_stage must be >= 1")
    inputs = keras.Input(shape=input_shape, name="cutouts")
    outputs = resnet_head(_prepare(inputs, cfg, ""), cfg)
    return keras.Model(inputs, outputs, name=name)
