"""Network builders: shapes, SC-VGG's average of branch probabilities, input preparation inside the model."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from numpy.testing import assert_allclose

from lenssearch.config import NetworkConfig
from lenssearch.models import CLASSIFIERS, RobustNormalization, build_model, network_bands
from lenssearch.models.layers import MAD_TO_SIGMA

CFG = NetworkConfig(
    input_pixels=32, binning=2, filters=(4, 8), sc_vgg_filters=(2, 4), convs_per_block=2, dense_units=(8, 4),
    dropout=0.2, leaky_relu_slope=0.1, normalisation_softening=1.0, resnet_filters=(4, 8), resnet_blocks_per_stage=1,
)


def raw_cutouts(n: int, bands: int, seed: int = 0) -> np.ndarray:
    """Noise plus a bright central blob, in e-/s-like units."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:32, :32] - 15.5
    blob = np.exp(-np.hypot(x, y) / 3.0)[None, :, :, None]
    return (0.01 * rng.normal(size=(n, 32, 32, bands)) + 2.0 * blob * rng.uniform(0.5, 2, (n, 1, 1, bands))).astype(
        np.float32
    )


@pytest.mark.parametrize("network", sorted(CLASSIFIERS))
def test_builders_take_raw_cutouts_and_return_one_probability(network):
    model = build_model(network, CFG)
    bands = 1 if network.startswith("f") else 3
    assert model.input_shape == (None, 32, 32, bands)
    assert model.output_shape == (None, 1)
    out = model.predict(raw_cutouts(5, bands), verbose=0)
    assert out.shape == (5, 1)
    assert np.all((out > 0) & (out < 1))
    assert model.name == network


def test_vgg_layers_follow_the_configuration():
    model = build_model("vgg", CFG)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [4, 4, 8, 8]  # two convolutions per block
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [8, 4, 1]
    assert dense[-1].activation is keras.activations.sigmoid
    assert sum(isinstance(layer, keras.layers.LeakyReLU) for layer in model.layers) == len(convs) + 2
    assert any(isinstance(layer, keras.layers.AveragePooling2D) for layer in model.layers)  # the 2x2 binning


def test_sc_vgg_output_is_the_mean_of_three_single_band_branches():
    model = build_model("sc_vgg", CFG)
    branch_names = ["F435W_probability", "F606W_probability", "F814W_probability"]
    branches = keras.Model(model.input, [model.get_layer(n).output for n in branch_names])
    x = raw_cutouts(6, 3, seed=1)
    p_branches = np.concatenate(branches.predict(x, verbose=0), axis=1)
    assert not np.allclose(p_branches[:, 0], p_branches[:, 1])  # three different networks
    assert_allclose(model.predict(x, verbose=0)[:, 0], p_branches.mean(axis=1), rtol=1e-6, atol=1e-7)
    # each branch sees one band only: changing F814W leaves the F435W branch untouched
    x2 = x.copy()
    x2[..., 2] *= 3.0
    x2[..., 2] += np.random.default_rng(2).normal(size=x2[..., 2].shape)
    p2 = np.concatenate(branches.predict(x2, verbose=0), axis=1)
    assert_allclose(p2[:, 0], p_branches[:, 0], rtol=1e-6)
    assert not np.allclose(p2[:, 2], p_branches[:, 2])


@pytest.mark.parametrize("network", ["vgg", "sc_vgg", "f606w"])
def test_normalisation_inside_the_model_makes_it_scale_and_offset_free(network):
    model = build_model(network, CFG)
    bands = 1 if network.startswith("f") else 3
    x = raw_cutouts(4, bands, seed=3)
    p = model.predict(x, verbose=0)
    assert_allclose(model.predict(1e3 * x, verbose=0), p, rtol=1e-4, atol=1e-6)
    assert_allclose(model.predict(x + 5.0, verbose=0), p, rtol=1e-3, atol=1e-5)


def test_robust_normalisation_matches_numpy():
    x = raw_cutouts(3, 3, seed=4) * np.array([1.0, 10.0, 100.0], dtype=np.float32)
    layer = RobustNormalization(softening=2.0, sample_grid=8)
    out = np.asarray(layer(x))
    sample = x[:, 2::4, 2::4, :]  # step 32 // 8 = 4, starting at step // 2
    median = np.median(sample, axis=(1, 2), keepdims=True)
    sigma = MAD_TO_SIGMA * np.median(np.abs(sample - median), axis=(1, 2), keepdims=True)
    assert_allclose(out, np.arcsinh((x - median) / (2.0 * sigma)), rtol=2e-5, atol=2e-5)


def test_robust_normalisation_of_a_constant_image_is_zero():
    out = np.asarray(RobustNormalization()(np.full((1, 32, 32, 3), 7.0, dtype=np.float32)))
    assert np.all(np.isfinite(out)) and np.all(out == 0)


def test_saved_model_round_trip_keeps_custom_layers(tmp_path):
    model = build_model("sc_vgg", CFG)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = raw_cutouts(3, 3)
    assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_network_bands_and_unknown_network():
    assert network_bands("vgg") == (0, 1, 2)
    assert network_bands("sc_vgg") == (0, 1, 2)
    assert [network_bands(b)[0] for b in ("f435w", "f606w", "f814w")] == [0, 1, 2]
    assert network_bands("resnet") == (0, 1, 2)
    with pytest.raises(KeyError, match="unknown network"):
        network_bands("densenet")


def test_too_many_poolings_for_the_input_raise():
    deep = dataclasses.replace(CFG, filters=(4, 4, 4, 4, 4), sc_vgg_filters=(2, 2, 2, 2, 2))
    with pytest.raises(ValueError, match="poolings"):
        build_model("vgg", deep)


@pytest.mark.parametrize("network", ["vgg", "sc_vgg"])
def test_predict_in_batches_is_keras_predict_bit_for_bit_and_silent(network, tmp_path, capsys):
    """The caller's batches through predict_on_batch (no data pipeline, no progress bar per call): the same
    probabilities as Keras' predict with that batch size, for a count that is not a multiple of it, also for a
    saved and loaded network (a plain functional Keras model: nothing of lenssearch overrides predict)."""
    from lenssearch.models import predict_in_batches

    model = build_model(network, CFG)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded).predict is keras.Model.predict
    x = raw_cutouts(75, 3, seed=4)
    reference = model.predict(x, batch_size=16, verbose=0)
    capsys.readouterr()
    got = predict_in_batches(loaded, x, batch_size=16)
    assert capsys.readouterr().out == ""
    np.testing.assert_array_equal(got, reference)
    assert predict_in_batches(loaded, x[:0]).shape == (0, 1)  # (Keras' own predict fails on an empty array)


def test_resnet_has_residual_stages_that_halve_the_resolution():
    cfg = dataclasses.replace(CFG, resnet_filters=(4, 8, 8), resnet_blocks_per_stage=2)
    model = build_model("resnet", cfg)
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 6  # 3 stages x 2 blocks, each adds its input back
    # the stem halves the 16x16 binned input, stage 1 keeps it, stages 2 and 3 halve it
    assert [model.get_layer(f"stage{s}_block1_add").output.shape[1] for s in (1, 2, 3)] == [8, 4, 2]
    # a projection where the width or the resolution changes, identities elsewhere
    assert {layer.name for layer in model.layers if layer.name.endswith("_proj")} == {
        "stage2_block1_proj", "stage3_block1_proj"}
    assert any(isinstance(layer, keras.layers.GlobalAveragePooling2D) for layer in model.layers)


def test_resnet_dropout_is_its_own_or_the_vggs():
    def rates(model):
        return [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]

    assert rates(build_model("resnet", dataclasses.replace(CFG, dropout=0.2, resnet_dropout=0.5))) == [0.5]
    assert rates(build_model("resnet", dataclasses.replace(CFG, dropout=0.2, resnet_dropout=None))) == [0.2]
    assert rates(build_model("resnet", dataclasses.replace(CFG, dropout=0.2, resnet_dropout=0.0))) == []
    assert rates(build_model("vgg", dataclasses.replace(CFG, dropout=0.2, resnet_dropout=0.5))) == [0.2, 0.2]


def test_mixed_precision_keeps_the_preparation_and_the_output_in_float32():
    from lenssearch.train.fit import set_precision

    try:
        set_precision(True)
        model = build_model("resnet", CFG)
        assert model.get_layer("normalisation").compute_dtype == "float32"
        assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
        assert model.get_layer("probability").compute_dtype == "float32"
        out = model.predict(raw_cutouts(3, 3), verbose=0)
        assert out.dtype == np.float32 and np.all((out > 0) & (out < 1))
    finally:
        set_precision(False)


def test_fold_mean_model_averages_the_fold_models():
    from lenssearch.train.kfold import fold_mean_model

    folds = []
    for seed in (1, 2, 3):
        keras.utils.set_random_seed(seed)
        folds.append(build_model("vgg", CFG))
    mean = fold_mean_model(folds, "vgg")
    x = raw_cutouts(4, 3, seed=2)
    expected = np.mean([m.predict(x, verbose=0) for m in folds], axis=0)
    assert_allclose(mean.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def lopsided_cutouts(n: int, bands: int, seed: int = 0) -> np.ndarray:
    """:func:`raw_cutouts` plus an arc-like blob off the centre: no symmetry of the square maps a cutout onto itself."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:32, :32] - 15.5
    arc = np.exp(-0.5 * (np.hypot(x - 6.0, y + 3.0) / 1.5) ** 2)[None, :, :, None]
    return raw_cutouts(n, bands, seed) + (arc * rng.uniform(0.5, 1.5, (n, 1, 1, bands))).astype(np.float32)


def test_dihedral_transform_numbers_the_symmetries_as_the_training_augmentation():
    from lenssearch.models import DihedralTransform
    from lenssearch.train.data import dihedral_permutations

    images = np.random.default_rng(5).normal(size=(2, 6, 6, 3)).astype(np.float32)
    flat = images.reshape(2, 36, 3)
    for k, permutation in enumerate(dihedral_permutations(6)):
        expected = flat[:, permutation].reshape(images.shape)
        np.testing.assert_array_equal(np.asarray(DihedralTransform(k)(images)), expected)
    with pytest.raises(ValueError, match="0..7"):
        DihedralTransform(8)


def test_symmetric_classifier_is_the_mean_over_rotations_and_rotation_invariant():
    """Four symmetries: the mean of the classifier over the 90-degree rotations of the prepared cutout (numpy's
    rot90 as the reference), so a rotated cutout gets the same probability; the plain classifier does not."""
    from lenssearch.models import split_model, symmetric_classifier

    keras.utils.set_random_seed(7)
    preparation, classifier = split_model(build_model("vgg", CFG))
    prepared = np.asarray(preparation(lopsided_cutouts(5, 3, seed=1)))
    rotations = [np.ascontiguousarray(np.rot90(prepared, k, axes=(1, 2))) for k in range(4)]
    four = symmetric_classifier(classifier, 4)
    expected = np.mean([classifier.predict(r, verbose=0) for r in rotations], axis=0)
    assert_allclose(four.predict(prepared, verbose=0), expected, rtol=1e-5, atol=1e-7)
    assert_allclose(four.predict(rotations[1], verbose=0), expected, rtol=1e-5, atol=1e-7)
    plain = classifier.predict(prepared, verbose=0)
    assert np.max(np.abs(classifier.predict(rotations[1], verbose=0) - plain)) > 1e-4
    assert symmetric_classifier(classifier, 1) is classifier
    eight = symmetric_classifier(classifier, 8)
    flips = rotations + [np.ascontiguousarray(r[:, :, ::-1]) for r in rotations]
    assert_allclose(eight.predict(prepared, verbose=0),
                    np.mean([classifier.predict(f, verbose=0) for f in flips], axis=0), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="one of"):
        symmetric_classifier(classifier, 3)


@pytest.mark.parametrize("network", ["sc_vgg", "f814w"])
def test_test_time_model_is_saved_and_cut_like_any_network(network, tmp_path):
    """The served network (raw cutouts in) is the symmetric classifier after the network's own preparation; saved
    and loaded it gives the same probabilities, and split_model cuts it into that preparation and classifier (the
    training's out-of-fold predictions on the prepared KB are therefore those of the saved file)."""
    from lenssearch.models import split_model, symmetric_classifier, test_time_model

    keras.utils.set_random_seed(3)
    model = build_model(network, CFG)
    x = lopsided_cutouts(6, len(network_bands(network)), seed=2)
    preparation, classifier = split_model(model)
    expected = symmetric_classifier(classifier, 4).predict(np.asarray(preparation(x)), verbose=0)
    served = test_time_model(model, 4)
    served.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-7)
    cut_preparation, cut_classifier = split_model(loaded)
    assert_allclose(cut_classifier.predict(np.asarray(cut_preparation(x)), verbose=0), expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-6)
    assert test_time_model(model, 1) is model
