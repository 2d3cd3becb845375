"""A config section (an ml_collections ConfigDict, a mapping or an attribute object) read into a typed dataclass.

The dataclass is the one place a section's fields and defaults are written (DataSettings, TrainSettings,
DecodeSettings); a field the section lacks (a config.json of an older version) keeps its default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from t2t_jax.errors import UserError

Settings = TypeVar("Settings")


def read_section(cls: type[Settings], section: Any, prefix: str) -> Settings:
    """cls(**values of `section`), each checked against the type of its default; errors name `prefix.FIELD`."""
    if isinstance(section, cls):
        return section
    values = {}
    for field in dataclasses.fields(cls):
        if isinstance(section, Mapping):
            value = section.get(field.name, field.default)
        else:
            value = getattr(section, field.name, field.default)
        values[field.name] = _typed(f"{prefix}.{field.name}", value, type(field.default))
    return cls(**values)


def defaults(cls: type) -> dict[str, Any]:
    """The dataclass's fields with their defaults, in order: a config section's starting values."""
    return {field.name: field.default for field in dataclasses.fields(cls)}


def require_positive(prefix: str, settings: Any, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(settings, name) <= 0:
            raise UserError(f"{prefix}.{name} must be positive, got {getattr(settings, name)}")


def require_not_negative(prefix: str, settings: Any, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(settings, name) < 0:
            raise UserError(f"{prefix}.{name} must not be negative, got {getattr(settings, name)}")


def _typed(name: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and not isinstance(value, bool):
        raise UserError(f"{name} must be True or False, got {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise UserError(f"{name} must be an integer, got {value!r}")
    if kind in (str, float) and not isinstance(value, kind):
        raise UserError(f"{name} must be a {'string' if kind is str else 'number'}, got {value!r}")
    return value
