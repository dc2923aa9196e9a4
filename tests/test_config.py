"""params.yaml -> one typed, frozen config; unknown or missing keys are clear errors naming them."""

import dataclasses
import subprocess
import sys

import pytest
import yaml

from lenssearch.config import Config, ConfigError, config_from_dict, load_config, read_yaml


def test_params_yaml_loads_into_frozen_dataclasses(repo_root):
    cfg = load_config(repo_root / "params.yaml")
    assert isinstance(cfg, Config)
    assert cfg.base.bands == ("F435W", "F606W", "F814W")
    assert cfg.base.cosmology.H0 == 70.0 and cfg.base.cosmology.Om0 == 0.3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.base.seed = 1  # type: ignore[misc]


def test_paper_profile_overlays_params(repo_root):
    demo = load_config(repo_root / "params.yaml")
    paper = load_config(repo_root / "params.yaml", repo_root / "configs" / "paper.yaml")
    assert paper != demo
    # keys absent from the overlay keep the demo value
    assert paper.base == demo.base


def _params(repo_root):
    return read_yaml(repo_root / "params.yaml")


def test_unknown_key_is_named(repo_root):
    data = _params(repo_root)
    data["base"]["sede"] = 3
    with pytest.raises(ConfigError, match=r"unknown key 'base\.sede'"):
        config_from_dict(data, "params.yaml")


def test_missing_key_is_named(repo_root):
    data = _params(repo_root)
    del data["base"]["cosmology"]["Om0"]
    with pytest.raises(ConfigError, match=r"missing key 'base\.cosmology\.Om0'"):
        config_from_dict(data, "params.yaml")


def test_wrong_type_is_named(repo_root):
    data = _params(repo_root)
    data["base"]["seed"] = "forty-two"
    with pytest.raises(ConfigError, match=r"'base\.seed' must be an integer"):
        config_from_dict(data, "params.yaml")


def test_unknown_section_is_named(repo_root):
    data = _params(repo_root)
    data["trian"] = {}
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        config_from_dict(data, "params.yaml")


def test_cli_reports_config_error_without_traceback(repo_root, tmp_path):
    data = _params(repo_root)
    data["base"]["pixel_scale"] = 0.03
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(data))
    proc = subprocess.run(
        [sys.executable, "-m", "lenssearch", "config", "--params", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "unknown key 'base.pixel_scale'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_prints_merged_config(repo_root):
    proc = subprocess.run(
        [sys.executable, "-m", "lenssearch", "config", "--params", str(repo_root / "params.yaml"),
         "--profile", str(repo_root / "configs" / "paper.yaml")],
        capture_output=True, text=True, cwd=repo_root,
    )
    assert proc.returncode == 0, proc.stderr
    printed = yaml.safe_load(proc.stdout)
    assert printed["base"]["bands"] == ["F435W", "F606W", "F814W"]
