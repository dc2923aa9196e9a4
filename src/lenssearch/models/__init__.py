"""Network builders (VGG, SC-VGG, single-band VGGs, ResNet, the modeling network) and the layers that keep input preparation inside them."""

from lenssearch.models.layers import TEST_TIME_SYMMETRIES, BandSelect, DihedralTransform, RobustNormalization, predict_in_batches
from lenssearch.models.modeling import LensParameterHead
from lenssearch.models.vgg import (BANDS, CLASSIFIERS, MODELS, build_model, build_sc_vgg, build_vgg, network_bands, split_model,
                                   symmetric_classifier, test_time_model)

__all__ = [
    "BANDS",
    "CLASSIFIERS",
    "MODELS",
    "TEST_TIME_SYMMETRIES",
    "BandSelect",
    "DihedralTransform",
    "LensParameterHead",
    "RobustNormalization",
    "build_model",
    "build_sc_vgg",
    "build_vgg",
    "network_bands",
    "predict_in_batches",
    "split_model",
    "symmetric_classifier",
    "test_time_model",
]
