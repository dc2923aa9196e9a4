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


def test_mixed_precision_takes_true_false_or_auto_only(repo_root):
    data = _params(repo_root)
    for value in (True, False, "auto"):
        data["train"]["mixed_precision"] = value
        assert config_from_dict(data, "params.yaml").train.mixed_precision == value
    data["train"]["mixed_precision"] = "maybe"
    with pytest.raises(ConfigError, match=r"'train\.mixed_precision' has value 'maybe'"):
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


# ------------------------------------------------------------------ ranges (issue 19, case 2)
def _numeric(tp) -> bool:
    import types
    import typing

    origin = typing.get_origin(tp)
    if tp in (int, float):
        return True
    if origin in (typing.Union, types.UnionType, tuple, list, dict):
        return any(_numeric(a) for a in typing.get_args(tp) if a is not Ellipsis)
    return False


def _sections():
    import typing

    import lenssearch.config as config_module

    for obj in vars(config_module).values():
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == config_module.__name__:
            yield obj, typing.get_type_hints(obj)


def test_every_numeric_parameter_has_a_range():
    from lenssearch.config_ranges import RANGES, _parse

    missing = [f"{cls.__name__}.{f.name}" for cls, hints in _sections() for f in dataclasses.fields(cls)
               if _numeric(hints[f.name]) and f.name not in RANGES.get(cls.__name__, {})]
    assert missing == [], f"numeric parameters without a range in lenssearch/config_ranges.py: {missing}"
    fields = {cls.__name__: {f.name for f in dataclasses.fields(cls)} for cls, _ in _sections()}
    for section, ranges in RANGES.items():
        assert section in fields, section
        for name, spec in ranges.items():
            assert name in fields[section], f"{section}.{name}"
            for s in spec if isinstance(spec, tuple) else (spec,):
                _parse(s)


@pytest.mark.parametrize("key, value, message", [
    ("search.batch_size", 0, r"search\.batch_size must be >= 1, got 0"),  # was: an endless loop at 100% CPU
    ("search.batch_size", -5, r"search\.batch_size must be >= 1, got -5"),  # was: a traceback
    ("search.threshold", 1.7, r"search\.threshold must be in \[0, 1\], got 1\.7"),  # was: silently 0 candidates
    ("search.threshold", float("nan"), r"search\.threshold must be in \[0, 1\], got nan"),
    ("search.qtp_min", 0.7, r"search\.qtp_min \(0\.7\) must not exceed search\.tp_min \(0\.5\)"),
    ("search.cleaning.crowded_max_fraction", 1.5, r"search\.cleaning\.crowded_max_fraction must be in \[0, 1\]"),
    ("kb.n_folds", 1, r"kb\.n_folds must be >= 2, got 1"),
    ("train.batch_size.vgg", 0, r"train\.batch_size\.vgg must be >= 1, got 0"),
    ("train.network.dropout", 1.0, r"train\.network\.dropout must be in \[0, 1\), got 1\.0"),
    ("train.network.resnet_dropout", -0.1, r"train\.network\.resnet_dropout must be in \[0, 1\), got -0\.1"),
    ("train.sc_vgg_branch_loss_weight", -1.0, r"train\.sc_vgg_branch_loss_weight must be in \[0, 10\], got -1\.0"),
    ("base.cosmology.Om0", -0.1, r"base\.cosmology\.Om0 must be in \[0, 1\], got -0\.1"),
    ("field.synthetic.fields.0.center_radec", [150.0, 95.0], r"field\.synthetic\.fields\[0\]\.center_radec\[1\] must be in \[-90, 90\]"),
    ("validate.noise_ratio_range", [1.5, 0.75], r"validate\.noise_ratio_range must be \[low, high\] with low <= high"),
])
def test_out_of_range_parameter_is_named(repo_root, key, value, message):
    data = _params(repo_root)
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    node[parts[-1]] = value
    with pytest.raises(ConfigError, match=rf"^params\.yaml: {message}"):
        config_from_dict(data, "params.yaml")


@pytest.mark.parametrize("value", [3, 0, 16, "4", True, 4.0])  # YAML true == 1 and 4.0 == 4 in Python: refused
def test_test_time_symmetries_are_one_of_the_symmetry_groups(repo_root, value):
    data = _params(repo_root)
    data["train"]["test_time_symmetries"] = value
    with pytest.raises(ConfigError, match=r"^params\.yaml: key 'train\.test_time_symmetries' must be one of \[1, 2, 4, 8\]"):
        config_from_dict(data, "params.yaml")


def test_cli_search_refuses_batch_size_zero_at_once(repo_root, tmp_path):
    """search.batch_size: 0 made the search spin forever; now the configuration is refused before any input is read."""
    data = _params(repo_root)
    data["search"]["batch_size"] = 0
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(data))
    proc = subprocess.run(
        [sys.executable, "-m", "lenssearch", "search", "--params", str(bad), "--field", str(tmp_path / "nofield"),
         "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{bad}: search.batch_size must be >= 1, got 0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
