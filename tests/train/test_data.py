"""Knowledge-base reading and the tf.data pipelines: class balance, augmentation, resumable epochs."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tensorflow as tf
from numpy.testing import assert_array_equal

from lenssearch.errors import InputFileError
from lenssearch.train.data import CutoutPipelines, balanced_epoch, dihedral_augment, read_knowledge_base
from lenssearch.train.toy_kb import write_toy_kb


def test_read_toy_kb(toy_kb_path):
    kb = read_knowledge_base(toy_kb_path)
    assert kb.cutouts.shape == (240, 64, 64, 3) and kb.cutouts.dtype == np.float32
    assert kb.bands == ("F435W", "F606W", "F814W")
    assert kb.n_folds == 3
    assert set(kb.fold.tolist()) == {-1, 0, 1, 2}
    assert len(kb.cv_indices) + len(kb.validation_indices) == 240
    for k in range(3):
        train, test = kb.fold_indices(k)
        assert np.intersect1d(train, test).size == 0
        assert len(train) + len(test) == len(kb.cv_indices)
        assert 0.55 < kb.labels[test].mean() < 0.78  # stratified: two lenses per non-lens


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda f: f.__delitem__("fold"), "dataset 'fold' missing"),
        (lambda f: f["labels"].__setitem__(4, 3), "'labels' row 4 is 3"),
        (lambda f: f["fold"].__setitem__(slice(None), np.maximum(f["fold"][()], 0)), "no validation rows"),
        (lambda f: f["fold"].__setitem__(0, 7), "'fold' row 0 is 7"),
        (lambda f: f["ids"].__setitem__(1, f["ids"][0]), "not unique"),
    ],
)
def test_malformed_kb_raises_naming_the_key(tmp_path, edit, message):
    path = write_toy_kb(tmp_path / "kb.h5", n_lenses=12, n_nonlenses=9, size=16)
    with h5py.File(path, "r+") as handle:
        edit(handle)
    with pytest.raises(InputFileError, match=message):
        read_knowledge_base(path)


def test_missing_kb_raises(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_knowledge_base(tmp_path / "nope.h5")


def test_balanced_epoch_oversamples_the_minority_evenly():
    labels = np.array([1] * 30 + [0] * 12)
    rows = np.arange(42)
    order = balanced_epoch(labels, rows, 0, seed=5, epoch=0)
    assert len(order) == 60 and labels[order].sum() == 30
    counts = np.bincount(order[labels[order] == 0], minlength=42)[30:]
    assert counts.min() >= 2 and counts.max() <= 3  # 30 draws over 12 non-lenses: each 2 or 3 times
    assert_array_equal(np.sort(order[labels[order] == 1]), np.arange(30))  # majority: each once
    assert_array_equal(order, balanced_epoch(labels, rows, 0, seed=5, epoch=0))
    assert not np.array_equal(order, balanced_epoch(labels, rows, 0, seed=5, epoch=1))
    assert len(balanced_epoch(labels, rows, 50, seed=5, epoch=0)) == 100


def test_dihedral_augment_draws_all_eight_symmetries():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    batch = np.repeat(image, 400, axis=0)
    out = dihedral_augment(tf.constant(batch), tf.constant([3, 9], tf.int64)).numpy()
    square = image[0, :, :, 0]
    symmetries = [np.rot90(square, k) for k in range(4)] + [np.rot90(square.T, k) for k in range(4)]
    keys = {s.tobytes() for s in symmetries}
    seen = [o[:, :, 0].tobytes() for o in out]
    assert set(seen) == keys  # every output is a symmetry, and all 8 occur
    again = dihedral_augment(tf.constant(batch), tf.constant([3, 9], tf.int64)).numpy()
    assert_array_equal(out, again)


def test_training_pipeline_batches_labels_bands_and_resume(toy_kb_path):
    kb = read_knowledge_base(toy_kb_path)
    pipes = CutoutPipelines(kb.cutouts, kb.labels, (2,))
    train, _ = kb.fold_indices(0)
    dataset, steps = pipes.training(train, 16, 0, seed=1, start_epoch=0, epochs=3)
    batches = list(dataset.as_numpy_iterator())
    n_major = max(np.sum(kb.labels[train] == 1), np.sum(kb.labels[train] == 0))
    assert steps == (2 * n_major) // 16 and len(batches) == 3 * steps
    images, labels = batches[0]
    assert images.shape == (16, 64, 64, 1) and labels.shape == (16,)
    # every image is a symmetry of the F814W band of a training cutout with that label
    order = balanced_epoch(kb.labels, train, 0, seed=1, epoch=0)[:16]
    assert_array_equal(labels, kb.labels[order])
    for img, row in zip(images[:4, :, :, 0], order[:4]):
        source = kb.cutouts[row, :, :, 2]
        variants = [np.rot90(source, k) for k in range(4)] + [np.rot90(source.T, k) for k in range(4)]
        assert any(np.array_equal(img, v) for v in variants)
    # a training resumed at epoch 2 sees the same batches as an uninterrupted one
    resumed, _ = pipes.training(train, 16, 0, seed=1, start_epoch=2, epochs=3)
    for (a, la), (b, lb) in zip(resumed.as_numpy_iterator(), batches[2 * steps :]):
        assert_array_equal(a, b)
        assert_array_equal(la, lb)


def test_evaluation_pipeline_keeps_order(toy_kb_path):
    kb = read_knowledge_base(toy_kb_path)
    pipes = CutoutPipelines(kb.cutouts, kb.labels, (0, 1, 2))
    rows = kb.validation_indices
    images = np.concatenate([b for b in pipes.evaluation(rows, 7, with_labels=False).as_numpy_iterator()])
    assert_array_equal(images, kb.cutouts[rows])


def test_bad_train_values_raise_naming_the_key(tiny_config):
    import dataclasses

    from lenssearch.errors import LensSearchError
    from lenssearch.train.kfold import check_train_config

    train = tiny_config().train
    check_train_config(train, "sc_vgg")
    with pytest.raises(LensSearchError, match="train.warmup_epochs"):
        check_train_config(dataclasses.replace(train, warmup_epochs=train.max_epochs), "vgg")
    with pytest.raises(LensSearchError, match="train.batch_size.vgg"):
        check_train_config(dataclasses.replace(train, batch_size={"sc_vgg": 16}), "vgg")
