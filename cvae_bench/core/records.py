"""Typed records between layers: frozen dataclasses that write and read themselves as strict JSON.

A record is a dataclass deriving from `Record`. `to_json()` gives plain JSON types (tuples become lists,
nested records become dicts); `from_json()` rebuilds the record from such a dict, nested records, lists,
tuples and dicts of records included, from the field annotations. Readers ignore keys they do not know,
so a newer writer's files stay readable; a missing field without a default is a `RecordError`.

Reading checks every value against its annotation (a string where a number belongs, a list where an object
belongs, a NaN or infinity, a number too large for a float): the `RecordError` names the field by its path
("Stats.median: expected a number, got str"), so a hostile or damaged file is one clear line, never a
traceback later in whatever uses the record. `Any` fields are taken as they are.
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
        return _record(cls, data, cls.__name__)


def _record(cls: type[R], data: Any, where: str) -> R:
    if not isinstance(data, dict):
        raise RecordError(f"{where}: expected a JSON object, got {_kind(data)}")
    hints = _hints(cls)  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in data:
            kwargs[f.name] = _load(hints[f.name], data[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecordError(f"{where}: the field {f.name!r} is missing")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a record's own __post_init__ check
        raise RecordError(f"{where}: {exc}") from exc


def _nested(cls: type[R], value: Any, where: str) -> R:
    """A nested record: through its own `from_json` where it has one (legacy keys, extra sections)."""
    if getattr(cls.from_json, "__func__", None) is getattr(Record.from_json, "__func__", None):
        return _record(cls, value, where)
    try:
        return cls.from_json(value)
    except RecordError as exc:
        prefix = f"{cls.__name__}"
        message = str(exc)
        raise RecordError(
            where + message[len(prefix) :] if message.startswith(prefix) else f"{where}: {message}"
        ) from exc


def finite_number(value: Any, where: str, *, positive: bool = False) -> float:
    """`value` (a JSON number) as a finite float, and above zero when `positive` (a time, a median).

    Raises:
        RecordError: naming `where`: not a number, too large for a float, not finite, or not positive.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"{where}: expected a number, got {_kind(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise RecordError(f"{where}: the number is too large") from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise RecordError(f"{where}: expected a {'positive ' if positive else ''}finite number, got {value!r}")
    return number


def _kind(value: Any) -> str:
    """A JSON value's kind in JSON's words, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


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


def _load(hint: Any, value: Any, where: str = "value") -> Any:
    if value is None:
        return None
    if hint is Any or hint is object:
        return value
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        for option in options:
            if isinstance(option, type) and issubclass(option, Record) and isinstance(value, dict):
                return _nested(option, value, where)
        errors = []
        for option in options:
            try:
                return _load(option, value, where)
            except RecordError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else RecordError(f"{where}: unexpected {_kind(value)}")
    if origin is typing.Literal:
        if value not in get_args(hint):
            raise RecordError(f"{where}: {value!r} is not one of {list(get_args(hint))}")
        return value
    if isinstance(hint, type) and issubclass(hint, Record):
        return _nested(hint, value, where)
    if origin is list or hint is list:
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected an array, got {_kind(value)}")
        (item,) = get_args(hint) or (Any,)
        return [_load(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)):
            raise RecordError(f"{where}: expected an array, got {_kind(value)}")
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_load(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if not args:
            return tuple(value)
        if len(args) != len(value):
            raise RecordError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_load(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {_kind(value)}")
        key_type, item = get_args(hint) or (str, Any)
        return {_key(key_type, k, where): _load(item, v, f"{where}[{k!r}]") for k, v in value.items()}
    return _scalar(hint, value, where)


def _scalar(hint: Any, value: Any, where: str) -> Any:
    """A str, int, float or bool checked against its annotation; floats must be finite."""
    if hint is bool:
        if not isinstance(value, bool):
            raise RecordError(f"{where}: expected true or false, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(f"{where}: expected an integer, got {_kind(value)}")
        return value
    if hint is float:
        return finite_number(value, where)
    if hint is str:
        if not isinstance(value, str):
            raise RecordError(f"{where}: expected a string, got {_kind(value)}")
        return value
    return value


def _key(key_type: Any, key: str, where: str) -> Any:
    """JSON keys are strings; dict[int, …] fields get their ints back."""
    if key_type is not int:
        return key
    try:
        return int(key)
    except ValueError:
        raise RecordError(f"{where}: the key {key!r} is not an integer") from None


def finite_or_none(value: float | None) -> float | None:
    """`value` when it is a finite number, else None (strict JSON has no NaN or infinity)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)
