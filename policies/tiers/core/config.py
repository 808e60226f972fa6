"""Typed configs: dataclasses in code, YAML on disk, ``key=value`` overrides on the command line.

There is one parse path, :func:`load_config`: YAML file -> dict -> overrides applied to the dict ->
validated into the dataclass. Validation is pydantic's (lax mode, so ``1e-3`` written in YAML still
reads as a float) with unknown keys forbidden; every failure becomes a :class:`ConfigError` that names
the file, the dotted key and the offending value.

Writing a config class::

    @dataclass
    class TrainConfig(Config):
        steps: int = 1000          # optimiser steps
        lr: float = 1e-4           # AdamW learning rate

    cfg = load_config(TrainConfig, "configs/train/beso.yaml", overrides=["lr=3e-4"])
    cfg.to_yaml("run/config.yaml")

Checks that need more than a type (ranges, cross-field rules) go in ``__post_init__`` and raise
``ValueError`` with a message naming the field; they surface as a ``ConfigError`` like the rest.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import pydantic
import yaml

from tiers.core.errors import ConfigError


class Config:
    """Mixin for config dataclasses: strict loading, YAML round trip, overrides.

    Subclasses must also be decorated with ``@dataclass``. Unknown keys are rejected at every nesting
    level, provided the nested dataclasses also derive from :class:`Config`.
    """

    # Read by pydantic when it validates a stdlib dataclass: reject keys the dataclass does not declare.
    __pydantic_config__: ClassVar[pydantic.ConfigDict] = pydantic.ConfigDict(extra="forbid")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> Self:
        """Validate a plain mapping (as read from YAML/JSON) into this config class."""
        return validate_config(cls, data, source=source)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Iterable[str] = ()) -> Self:
        """Read a YAML file, apply ``key=value`` overrides, validate. See :func:`load_config`."""
        return load_config(cls, path, overrides=overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (tuples -> lists, enums -> values, paths -> str)."""
        dumped: dict[str, Any] = _adapter(type(self)).dump_python(self, mode="json")
        return dumped

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Serialise to YAML text (field order kept); also write it to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
        return text


def load_config[T](cls: type[T], path: str | Path | None = None, *, overrides: Iterable[str] = ()) -> T:
    """The one way configs are parsed: YAML file (optional) + dotted overrides -> validated dataclass.

    Args:
        cls: a dataclass deriving from :class:`Config`.
        path: YAML file with a mapping at top level; ``None`` starts from the dataclass defaults.
        overrides: ``"a.b.c=value"`` strings; values are parsed as YAML (``3``, ``1e-3``, ``[1, 2]``,
            ``true``, ``null``); a list element is addressed by its index (``joints.0.name=j1``).

    Raises:
        ConfigError: the file is missing or is not a YAML mapping, an override is malformed, or the
            result does not validate (unknown key, wrong type, failed check); the message names the
            source, the dotted key and the value.
    """
    source = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml_mapping(path)
    for override in overrides:
        apply_override(data, override)
    if overrides:
        source += " with overrides " + " ".join(overrides)
    return validate_config(cls, data, source=source)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(loaded).__name__}")
    return loaded


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` inside nested dicts/lists, creating missing mappings on the way."""
    key, sep, raw_value = override.partition("=")
    key = key.strip().removeprefix("--")
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not of the form key=value")
    try:
        value = _parse_scalar(raw_value)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {override!r}: value is not valid YAML: {error}") from error
    parts = key.split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {override!r}: {where} is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"override {override!r}: {'.'.join(parts[:depth])} is a value, not a mapping")


def _parse_scalar(raw: str) -> Any:
    # PyYAML follows YAML 1.1, where "1e-3" is a string; a float is what anyone typing it means.
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lower() not in {"nan", "inf", "-inf", "infinity"} else value
        except ValueError:
            return value
    return value


def validate_config[T](cls: type[T], data: Mapping[str, Any], *, source: str = "<dict>") -> T:
    """Validate ``data`` into ``cls``; every problem is reported in one :class:`ConfigError`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    try:
        validated: T = _adapter(cls).validate_python(dict(data))
    except pydantic.ValidationError as error:
        problems = [_describe(cls, problem) for problem in error.errors()]
        raise ConfigError(f"{source}: invalid {cls.__name__}:\n  " + "\n  ".join(problems)) from None
    return validated


_ADAPTERS: dict[type[Any], pydantic.TypeAdapter[Any]] = {}


def _adapter(cls: type[Any]) -> pydantic.TypeAdapter[Any]:
    """Building a TypeAdapter compiles a validator; do it once per config class."""
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = pydantic.TypeAdapter(cls)
    return _ADAPTERS[cls]


def _describe(cls: type[Any], problem: Any) -> str:
    loc = [str(part) for part in problem["loc"]]
    key = ".".join(loc) or "<top level>"
    # dataclasses report an unknown key as an unexpected __init__ argument, models as a forbidden extra
    if problem["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        known = _known_keys(cls, loc[:-1])
        hint = f" (known keys: {', '.join(known)})" if known else ""
        return f"{key}: unknown key{hint}"
    if problem["type"] == "missing":
        return f"{key}: required key is missing"
    message = str(problem["msg"]).removeprefix("Value error, ")
    return f"{key}: {message}; got {problem['input']!r}"


def _known_keys(cls: type[Any], loc: list[str]) -> list[str]:
    """Field names of the dataclass reached by following ``loc`` from ``cls`` (best effort)."""
    current: Any = cls
    for part in loc:
        current = _unwrap_optional(current)
        if dataclasses.is_dataclass(current):
            hints = typing.get_type_hints(current)
            if part not in hints:
                return []
            current = hints[part]
        elif typing.get_origin(current) in (list, tuple, dict):
            args = typing.get_args(current)
            current = args[-1] if args else Any
        else:
            return []
    current = _unwrap_optional(current)
    if dataclasses.is_dataclass(current):
        return [field.name for field in dataclasses.fields(current)]
    return []


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp
