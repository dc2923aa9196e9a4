"""One split's training: seeded repeatability, and resuming from the epoch checkpoint after a kill."""

from __future__ import annotations

import json

import keras
import pytest
import tensorflow as tf
from numpy.testing import assert_allclose, assert_array_equal

from lenssearch.train.data import CutoutPipelines, read_knowledge_base
from lenssearch.train.fit import fit_split, predict_rows


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
    return kb, CutoutPipelines(kb.cutouts, kb.labels, (0, 1, 2)), cfg.train


def _fit(setup, folder, **kwargs):
    kb, pipes, cfg = setup
    train, _ = kb.fold_indices(1)
    return fit_split("vgg", cfg, kb.bands, pipes, train, kb.validation_indices, folder, seed=11, progress=False,
                     **kwargs)


def test_same_seed_same_model_and_resume_after_kill(setup, tmp_path):
    kb, pipes, cfg = setup
    model_a, history_a = _fit(setup, tmp_path / "a")
    model_b, history_b = _fit(setup, tmp_path / "b")
    for wa, wb in zip(model_a.get_weights(), model_b.get_weights()):
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
    assert_allclose(predict_rows(model_c, pipes, rows), predict_rows(model_a, pipes, rows), rtol=1e-4, atol=1e-6)


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
