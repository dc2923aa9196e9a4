"""The hyper-parameter search draws valid overlays of params.yaml (the training itself is the train verb's)."""

import optuna
import yaml

from lenssearch.config import deep_merge, load_config, read_yaml
from lenssearch.evaluate.hpsearch import overlay_for, suggest

from .conftest import REPO


def test_overlay_from_dotted_keys():
    assert overlay_for({"train.learning_rate": 0.5, "train.batch_size.sc_vgg": 16}) == {
        "train": {"learning_rate": 0.5, "batch_size": {"sc_vgg": 16}}
    }


def test_every_trial_gives_a_valid_configuration(cfg, tmp_path):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), direction="maximize")
    for _ in range(5):
        trial = study.ask()
        values = {d.key: suggest(trial, d) for d in cfg.hpsearch.space}
        path = tmp_path / "overlay.yaml"
        path.write_text(yaml.safe_dump(deep_merge({}, overlay_for(values))))
        trial_cfg = load_config(REPO / "params.yaml", path)  # unknown keys would raise ConfigError
        assert 0.1 <= trial_cfg.train.learning_rate <= 2.0
        assert trial_cfg.train.batch_size["sc_vgg"] in (16, 32, 64)
        assert list(trial_cfg.train.network.sc_vgg_filters) in ([8, 16, 32, 32], [16, 32, 64, 64])
        assert trial_cfg.train.batch_size["vgg"] == cfg.train.batch_size["vgg"]  # the rest is untouched
        study.tell(trial, 0.0)
    assert read_yaml(path)["train"]
