"""Reading a model's or a committee's output, tuned thresholds from version tags, loading registered models."""

import numpy as np
import pandas as pd
import pytest

from lenssearch.errors import LensSearchError
from lenssearch.search.scoring import ModelOutputError, Scorer, load_scorer, model_label, parse_scores, threshold_from_tags


def test_single_model_outputs():
    for out in (np.array([0.1, 0.9]), np.array([[0.1], [0.9]]), pd.Series([0.1, 0.9]), pd.DataFrame({"p": [0.1, 0.9]})):
        s = parse_scores(out, 2)
        np.testing.assert_allclose(s.main, [0.1, 0.9])
        assert s.members == {}


def test_committee_outputs():
    df = pd.DataFrame({"vgg": [0.2, 0.8], "sc_vgg": [0.4, 1.0], "committee": [0.3, 0.9]})
    s = parse_scores(df, 2)
    np.testing.assert_allclose(s.main, [0.3, 0.9])
    assert list(s.members) == ["vgg", "sc_vgg"]
    # without a committee column the committee is the members' mean (HOLISMOKES XVI, Sect. 2)
    s = parse_scores({"a": [0.2, 0.8], "b": [0.4, 0.6]}, 2)
    np.testing.assert_allclose(s.main, [0.3, 0.7])
    s = parse_scores(np.array([[0.2, 0.4], [0.8, 0.6]]), 2)
    np.testing.assert_allclose(s.main, [0.3, 0.7])
    assert list(s.members) == ["member0", "member1"]


@pytest.mark.parametrize(
    "out, match",
    [(np.array([0.1]), "1 values"), (np.array([0.1, 1.5]), "not a probability"), (np.array([np.nan, 0.2]), "not a probability"),
     (np.array(["a", "b"]), "non-numeric")],
)
def test_bad_outputs(out, match):
    with pytest.raises(ModelOutputError, match=match):
        parse_scores(out, 2)


def test_member_columns_must_not_change():
    outs = iter([{"a": [0.1], "b": [0.2]}, {"a": [0.1], "c": [0.2]}])
    scorer = Scorer(lambda x: next(outs), "models:/lenssearch-committee@champion")
    assert scorer.label == "committee"
    scorer.score(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(ModelOutputError, match="member columns changed"):
        scorer.score(np.zeros((1, 4, 4, 3), np.float32))


def test_labels_and_thresholds():
    assert model_label("models:/lenssearch-sc_vgg/3") == "sc_vgg"
    assert model_label("models:/lenssearch@champion") == "lenssearch"
    assert threshold_from_tags({"threshold": "0.37"}) == 0.37
    assert threshold_from_tags({"other": "1"}) is None
    with pytest.raises(LensSearchError, match="not a probability threshold"):
        threshold_from_tags({"threshold": "7"})


def test_registered_model_and_its_threshold(registry, keras_model):
    scorer = load_scorer("models:/lenssearch@champion", tracking_uri=registry)
    assert scorer.threshold == 0.5
    x = np.random.default_rng(0).normal(0, 0.01, (5, 128, 128, 3)).astype(np.float32)
    np.testing.assert_allclose(scorer.score(x).main, keras_model.predict_on_batch(x).ravel(), rtol=1e-5)
    assert load_scorer("models:/lenssearch/1", tracking_uri=registry).threshold == 0.5
    with pytest.raises(LensSearchError, match="model URI 'models:/lenssearch@nope' cannot be loaded"):
        load_scorer("models:/lenssearch@nope", tracking_uri=registry)
