"""Typed records between layers: frozen dataclasses that write and read themselves as strict JSON.

A record is a dataclass deriving from `Record`. `to_json()` gives plain JSON types (tuples become lists,
nested records become dicts); `from_json()` rebuilds the record from such a dict, nested records, lists,
tuples and dicts of records included, from the field annotations. Readers ignore keys they do not know,
so a newer writer's files stay readable; a missing field without a default is a `RecordError`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import cache
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

from cvae_bench.core.errors import CvaeBenchError

R = TypeVar("R", bound="Record")


class RecordError(CvaeBenchError):
    """A JSON document that does not hold the record it should."""


class Record:
    """Mixin for dataclass records; see the module docstring."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """This record as JSON-ready plain types."""
        return {f.name: _dump(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls: type[R], data: Any) -> R:
        """Rebuild a record from `to_json()`'s output (or a JSON file's object).

        Raises:
            RecordError: `data` is not an object or lacks a required field.
        """
        if not isinstance(data, dict):
            raise RecordError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        hints = _hints(cls)  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.name in data:
                kwargs[f.name] = _load(hints[f.name], data[f.name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordError(f"{cls.__name__}: the field {f.name!r} is missing")
        return cls(**kwargs)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _dump(v) for k, v in value.items()}
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars
        return value.item()
    return value


def _load(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        for option in options:
            if isinstance(option, type) and issubclass(option, Record) and isinstance(value, dict):
                return option.from_json(value)
        return _load(options[0], value) if len(options) == 1 else value
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value)
    if origin is list:
        (item,) = get_args(hint) or (Any,)
        return [_load(item, v) for v in value]
    if origin is tuple:
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_load(args[0], v) for v in value)
        return tuple(_load(a, v) for a, v in zip(args, value, strict=False)) if args else tuple(value)
    if origin is dict:
        key_type, item = get_args(hint) or (str, Any)
        return {_key(key_type, k): _load(item, v) for k, v in value.items()}
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def _key(key_type: Any, key: str) -> Any:
    """JSON keys are strings; dict[int, …] fields get their ints back."""
    return int(key) if key_type is int else key


def finite_or_none(value: float | None) -> float | None:
    """`value` when it is a finite number, else None (strict JSON has no NaN or infinity)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)
