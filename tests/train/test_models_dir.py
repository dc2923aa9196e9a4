"""``train --models DIR`` never empties a folder that train did not make (issue 19: no output path deletes the
user's files)."""

import pytest

from lenssearch.errors import LensSearchError
from lenssearch.train.kfold import _prepare_models_dir


def test_a_folder_of_user_files_is_refused_and_left_untouched(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "my_weights.h5").write_bytes(b"weights")
    with pytest.raises(LensSearchError, match=r"models: the folder exists and holds files that lenssearch train"):
        _prepare_models_dir(models, "abc")
    assert (models / "my_weights.h5").read_bytes() == b"weights"


def test_a_file_is_refused(tmp_path):
    models = tmp_path / "models"
    models.write_text("mine\n")
    with pytest.raises(LensSearchError, match="is a file"):
        _prepare_models_dir(models, "abc")
    assert models.read_text() == "mine\n"


def test_train_own_folder_is_reset_when_the_fingerprint_changes(tmp_path):
    models = tmp_path / "models"
    _prepare_models_dir(models, "abc")
    (models / "split_0").mkdir()
    _prepare_models_dir(models, "abc")
    assert (models / "split_0").exists()
    _prepare_models_dir(models, "xyz")
    assert sorted(p.name for p in models.iterdir()) == ["fingerprint.json"]
