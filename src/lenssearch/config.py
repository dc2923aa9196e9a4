"""Typed, frozen configuration read from ``params.yaml``.

``params.yaml`` is the demo profile; alternative profiles (``configs/paper.yaml``) are overlays whose keys
replace those of ``params.yaml`` (a deep merge). Every section of the YAML maps to one frozen dataclass below;
an unknown key or a missing key raises :class:`ConfigError` naming the dotted key and the file.

To add a section: write its dataclass here, add a field of that type to :class:`Config`, and add the section to
``params.yaml`` (and, where the paper differs, to ``configs/paper.yaml``). Derived values are properties, never
extra YAML keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """A configuration file has an unknown, missing or ill-typed key."""


# --------------------------------------------------------------------------------------------------- sections
@dataclasses.dataclass(frozen=True)
class CosmologyConfig:
    """Flat LambdaCDM cosmology (astropy)."""

    H0: float
    Om0: float


@dataclasses.dataclass(frozen=True)
class BaseConfig:
    """Settings shared by every stage."""

    seed: int
    pixel_scale_arcsec: float
    bands: tuple[str, ...]
    cosmology: CosmologyConfig


@dataclasses.dataclass(frozen=True)
class CriticalLinesConfig:
    """Secondary (galaxy-scale) tangential critical lines (Angora et al. 2023, Sect. 3.1)."""

    theta_e_min_arcsec: float
    theta_e_max_arcsec: float
    resolution_arcsec: float
    search_radius_arcsec: float
    source_redshifts: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class LensToolFieldConfig:
    """A real cluster mass model given as a LensTool parameter file."""

    name: str
    parfile: str
    members: str
    map_size_arcsec: float
    map_pixel_arcsec: float


@dataclasses.dataclass(frozen=True)
class FieldConfig:
    """The ``field`` stage: cluster fields, their deflection maps and critical lines."""

    critical_lines: CriticalLinesConfig
    lenstool: tuple[LensToolFieldConfig, ...]


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole configuration: one attribute per section of ``params.yaml``."""

    base: BaseConfig
    field: FieldConfig


# --------------------------------------------------------------------------------------------------- loading
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Convert a YAML value to the annotated type ``tp``, raising ConfigError naming ``key``."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' must be a mapping (section {tp.__name__}), got {value!r}")
        return _build(tp, value, key, source)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{source}: key '{key}' has value {value!r}, expected {_type_name(tp)}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{source}: key '{key}' must be one of {list(get_args(tp))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: key '{key}' must be a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_convert(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{source}: key '{key}' must have {len(args)} items, got {len(value)}")
            items = [_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args))]
        else:
            inner = args[0] if args else Any
            items = [_convert(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' must be a mapping, got {value!r}")
        _, vt = get_args(tp) or (Any, Any)
        return types.MappingProxyType({k: _convert(v, vt, f"{key}.{k}", source) for k, v in value.items()})
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: key '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: key '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: key '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: key '{key}' must be a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: key '{key}': unsupported annotation {_type_name(tp)}")  # pragma: no cover


def _build(cls: type, data: dict, prefix: str, source: str) -> Any:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        names = ", ".join(f"'{prefix + '.' if prefix else ''}{k}'" for k in unknown)
        raise ConfigError(f"{source}: unknown key {names} (section {cls.__name__} accepts {sorted(fields)})")
    kwargs = {}
    for name, field in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if field.default is not dataclasses.MISSING:
                kwargs[name] = field.default
                continue
            if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                kwargs[name] = field.default_factory()  # type: ignore[misc]
                continue
            raise ConfigError(f"{source}: missing key '{key}'")
        kwargs[name] = _convert(data[name], hints[name], key, source)
    return cls(**kwargs)


def deep_merge(base: dict, overlay: dict) -> dict:
    """Return ``base`` with ``overlay``'s keys replacing its own, recursively for mappings."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, raising ConfigError (not a traceback) for a missing or malformed file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at top level")
    return data


def config_from_dict(data: dict, source: str = "<dict>") -> Config:
    """Build the typed configuration from an already-parsed mapping."""
    return _build(Config, data, "", source)


def load_config(path: str | Path = "params.yaml", profile: str | Path | None = None) -> Config:
    """Read ``params.yaml`` (and optionally a profile overlay such as ``configs/paper.yaml``).

    Parameters
    ----------
    path
        The demo profile, ``params.yaml``.
    profile
        An overlay whose keys replace those of ``path``; its unknown keys are reported against its own name.
    """
    data = read_yaml(path)
    source = str(path)
    if profile is not None:
        overlay = read_yaml(profile)
        data = deep_merge(data, overlay)
        source = f"{path} + {profile}"
    return config_from_dict(data, source)


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """Flatten a nested mapping into dotted keys (for MLflow params and ``dvc exp run -S``)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def as_dict(cfg: Any) -> dict:
    """A frozen config section as a plain nested dict (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, typing.Mapping):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(cfg)
