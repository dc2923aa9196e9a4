"""Network builders (VGG, SC-VGG, single-band VGGs) and the layers that keep input preparation inside them."""

from lenssearch.models.layers import BandSelect, QuietModel, RobustNormalization
from lenssearch.models.vgg import BANDS, MODELS, build_model, build_sc_vgg, build_vgg, network_bands, split_model

__all__ = [
    "BANDS",
    "MODELS",
    "BandSelect",
    "QuietModel",
    "RobustNormalization",
    "build_model",
    "build_sc_vgg",
    "build_vgg",
    "network_bands",
    "split_model",
]
