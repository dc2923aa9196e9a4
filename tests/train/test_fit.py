"""One split's training: seeded repeatability, and resuming from the epoch checkpoint after a kill."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from numpy.testing import assert_allclose, assert_array_equal

from lenssearch.models import build_model, network_bands, split_model
from lenssearch.train.data import CutoutPipelines, prepare_cutouts, read_knowledge_base
from lenssearch.train.fit import fit_split, native_bfloat16, precision_policy, predict_rows, resolve_precision


class Killed(Exception):
    pass


class KillAfter(keras.callbacks.Callback):
    """Raise at the end of an epoch (after the checkpoint): what a kill between two epochs leaves behind."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Killed(f"killed after epoch {epoch}")


@pytest.fixture(scope="module")
def setup(toy_kb_path, tiny_config):
    tf.config.experimental.enable_op_determinism()
    kb = read_knowledge_base(toy_kb_path)
    cfg = tiny_config(max_epochs=5, warmup_epochs=2, early_stopping_patience=10, reduce_lr_patience=1)
    preparation, _ = split_model(build_model("vgg", cfg.train.network, kb.bands))
    prepared = prepare_cutouts(preparation, kb.cutouts.copy(), (0, 1, 2))
    return kb, CutoutPipelines(prepared, kb.labels, (0, 1, 2)), cfg.train


def _fit(setup, folder, **kwargs):
    kb, pipes, cfg = setup
    train, _ = kb.fold_indices(1)
    return fit_split("vgg", cfg, kb.bands, pipes, train, kb.validation_indices, folder, seed=11, progress=False,
                     **kwargs)


def test_same_seed_same_model_and_resume_after_kill(setup, tmp_path):
    kb, pipes, cfg = setup
    model_a, history_a = _fit(setup, tmp_path / "a")
    model_b, history_b = _fit(setup, tmp_path / "b")
    for wa, wb in zip(model_a.model.get_weights(), model_b.model.get_weights()):
        assert_array_equal(wa, wb)
    assert history_a == history_b
    assert len(history_a["loss"]) == 5 and len(history_a["val_loss"]) == 5
    # the learning-rate schedule ran (patience 1 after a 2-epoch warm-up) and was recorded
    assert len(set(history_a["learning_rate"])) >= 1

    with pytest.raises(Killed):
        _fit(setup, tmp_path / "c", extra_callbacks=(KillAfter(2),))
    state = json.loads((tmp_path / "c" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 3 and len(state["history"]["loss"]) == 3
    model_c, history_c = _fit(setup, tmp_path / "c")
    assert len(history_c["loss"]) == 5
    assert_allclose(history_c["loss"], history_a["loss"], rtol=1e-5)
    assert_allclose(history_c["learning_rate"], history_a["learning_rate"])
    rows = kb.validation_indices
    assert_allclose(predict_rows(model_c.classifier, pipes, rows), predict_rows(model_a.classifier, pipes, rows),
                    rtol=1e-4, atol=1e-6)
    # the whole network (what is saved and registered) on raw cutouts == the classifier on prepared ones
    raw = model_a.model.predict(kb.cutouts[rows], verbose=0).ravel()
    assert_allclose(raw, predict_rows(model_a.classifier, pipes, rows), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("network", ["sc_vgg", "f814w"])
def test_split_model_parts_compose_to_the_network(toy_kb_path, tiny_config, network):
    kb = read_knowledge_base(toy_kb_path)
    cfg = tiny_config().train.network
    bands = network_bands(network, kb.bands)
    model = build_model(network, cfg, kb.bands)
    preparation, classifier = split_model(model)
    assert classifier.count_params() == model.count_params() and preparation.count_params() == 0
    raw = kb.cutouts[:9][..., list(bands)]
    prepared = prepare_cutouts(preparation, kb.cutouts[:9], bands, batch_size=4)
    assert prepared.shape == (9, 32, 32, len(bands)) and prepared.ctypes.data % 64 == 0
    assert_allclose(classifier.predict(prepared, verbose=0), model.predict(raw, verbose=0), rtol=1e-5, atol=1e-7)
    # weights are shared: changing the classifier's changes the network's
    assert {id(v) for v in classifier.trainable_variables} == {id(v) for v in model.trainable_variables}
    before = model.predict(raw, verbose=0)
    dense = [layer for layer in classifier.layers if isinstance(layer, keras.layers.Dense)][-1]
    dense.bias.assign(dense.bias + 3.0)
    after = model.predict(raw, verbose=0)
    assert np.all(after > before)
    assert_allclose(after, classifier.predict(prepared, verbose=0), rtol=1e-5, atol=1e-7)


def test_prepare_cutouts_in_place_when_the_shape_is_kept(toy_kb_path, tiny_config):
    import dataclasses

    kb = read_knowledge_base(toy_kb_path)
    cfg = dataclasses.replace(tiny_config().train.network, binning=1, filters=(8, 16), sc_vgg_filters=(4, 8))
    preparation, _ = split_model(build_model("vgg", cfg, kb.bands))
    cutouts = kb.cutouts[:10].copy()
    expected = preparation.predict(cutouts, verbose=0)
    out = prepare_cutouts(preparation, cutouts, (0, 1, 2), batch_size=3)
    assert out is cutouts  # no second copy of a paper-size KB
    assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_smoothed_validation_loss_is_the_running_mean_and_resumes():
    from lenssearch.train.fit import MONITOR, _callbacks_module

    _, smoothing_class = _callbacks_module()
    losses = [0.7, 0.5, 0.9, 0.4, 0.6]
    straight = smoothing_class(3)
    smoothed = []
    for epoch, value in enumerate(losses):
        logs = {"val_loss": value}
        straight.on_epoch_end(epoch, logs)
        smoothed.append(logs[MONITOR])
    assert_allclose(smoothed, [0.7, 0.6, 0.7, 0.6, 0.6333333333], rtol=1e-6)
    resumed = smoothing_class(3, previous=losses[:3])  # a training resumed after epoch 3
    logs = {"val_loss": losses[3]}
    resumed.on_epoch_end(3, logs)
    assert_allclose(logs[MONITOR], smoothed[3])


def test_sc_vgg_branch_supervision_trains_the_same_network(toy_kb_path, tiny_config, tmp_path):
    """train.sc_vgg_branch_loss_weight: the fitted model adds the branch probabilities as outputs and their own
    losses; the network saved (one probability, the mean of the branches) and its weights are the SC-VGG's."""
    import dataclasses

    from lenssearch.train.fit import branch_supervised, branch_supervised_loss

    kb = read_knowledge_base(toy_kb_path)
    cfg = tiny_config(max_epochs=2, warmup_epochs=1).train
    model = build_model("sc_vgg", cfg.network, kb.bands)
    preparation, classifier = split_model(model)
    trainer = branch_supervised(model)
    assert {id(v) for v in trainer.trainable_variables} == {id(v) for v in model.trainable_variables}
    prepared = prepare_cutouts(preparation, kb.cutouts.copy(), (0, 1, 2))
    out = trainer.predict(prepared[:8], verbose=0)
    assert out.shape == (8, 4)
    assert_allclose(out[:, 0], classifier.predict(prepared[:8], verbose=0).ravel(), rtol=1e-5, atol=1e-7)
    assert_allclose(out[:, 0], out[:, 1:].mean(axis=1), rtol=1e-5, atol=1e-7)  # the paper's mean of probabilities

    # the loss, against numpy: BCE of the mean + weight x the mean of the branches' BCEs
    y = np.array([1.0, 0.0, 1.0, 0.0], dtype=np.float32)
    p = np.array([[0.7, 0.9, 0.6, 0.6], [0.2, 0.1, 0.3, 0.2], [0.5, 0.2, 0.5, 0.8], [0.4, 0.6, 0.3, 0.3]],
                 dtype=np.float32)
    bce = -(y[:, None] * np.log(p) + (1 - y[:, None]) * np.log(1 - p))
    got = np.asarray(branch_supervised_loss(0.5)(y[:, None], p))
    assert_allclose(got, bce[:, 0] + 0.5 * bce[:, 1:].mean(axis=1), rtol=1e-5)
    assert_allclose(np.asarray(branch_supervised_loss(0.0)(y[:, None], p)),
                    np.asarray(keras.losses.binary_crossentropy(y[:, None], p[:, :1])), rtol=1e-5)

    # a training with branch supervision: the fitted model is the supervised one, the network keeps one output
    supervised = dataclasses.replace(cfg, sc_vgg_branch_loss_weight=1.0)
    pipes = CutoutPipelines(prepared, kb.labels, (0, 1, 2))
    train, _ = kb.fold_indices(1)
    net, history = fit_split("sc_vgg", supervised, kb.bands, pipes, train, kb.validation_indices, tmp_path / "a",
                             seed=3, progress=False)
    assert net.trainer is not net.classifier and net.trainer.output.shape[-1] == 4
    assert net.model.output.shape[-1] == 1 and len(history["loss"]) == 2
    rows = kb.validation_indices
    assert_allclose(net.model.predict(kb.cutouts[rows], verbose=0).ravel(), predict_rows(net.classifier, pipes, rows),
                    rtol=1e-5, atol=1e-6)
    # the weight changes the training (not only the reported loss)
    paper = dataclasses.replace(cfg, sc_vgg_branch_loss_weight=0.0)
    plain, _ = fit_split("sc_vgg", paper, kb.bands, pipes, train, kb.validation_indices, tmp_path / "b", seed=3,
                         progress=False)
    assert plain.trainer is plain.classifier
    assert not np.allclose(predict_rows(plain.classifier, pipes, rows), predict_rows(net.classifier, pipes, rows))


# /proc/cpuinfo lines as Linux prints them (flags shortened)
AMD_EPYC_AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse sse2 avx f16c avx2 fma bmi2 sha_ni vaes\n"
INTEL_AMX = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: fpu avx2 avx512f avx512bw "
             "avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8\n")
COOPER_LAKE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n"


def test_native_bfloat16_reads_the_cpu_flags_and_a_gpu():
    assert native_bfloat16(AMD_EPYC_AVX2, gpu=False) is None  # emulated there: ~5x slower than float32
    assert native_bfloat16(INTEL_AMX, gpu=False) == "amx_bf16"
    assert native_bfloat16(COOPER_LAKE, gpu=False) == "avx512_bf16"
    assert native_bfloat16("", gpu=False) is None
    assert native_bfloat16(AMD_EPYC_AVX2, gpu=True) == "GPU"


def test_auto_precision_is_bfloat16_only_where_native():
    assert resolve_precision(True) is True and resolve_precision(False) is False
    assert precision_policy(False) == "float32" and precision_policy(True) == "mixed_bfloat16"
    native = native_bfloat16()
    assert resolve_precision("auto") is (native is not None)
    assert precision_policy("auto") == ("mixed_bfloat16" if native else "float32")
