"""Click options generated from the declarations of an options record (`core.options`), and the parameter
types they need: the command line says nothing about a declared option that the record does not say."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import click

from cvae_bench.core.errors import UsageError
from cvae_bench.core.options import DeclaredOption, check_value, declared_options

F = TypeVar("F", bound=Callable[..., Any])


class FiniteFloat(click.ParamType[float, Any]):
    """A float option that must be finite (click's FLOAT and FloatRange accept nan and inf), in [min, max].

    Args:
        min: the smallest value accepted, if any.
        max: the largest value accepted, if any.
    """

    name = "float"

    def __init__(self, min: float | None = None, max: float | None = None) -> None:
        self.min, self.max = min, max

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.min is not None and number < self.min:
            self.fail(f"{number:g} is below the minimum {self.min:g}", param, ctx)
        if self.max is not None and number > self.max:
            self.fail(f"{number:g} is above the maximum {self.max:g}", param, ctx)
        return number

    def __repr__(self) -> str:
        return f"FiniteFloat({self.min}, {self.max})"


class SynonymChoice(click.Choice[str]):
    """A choice that also takes other names of its choices (`gpu` for cuda), read as the choice.

    Args:
        choices: the values, as they are written back.
        synonyms: (other name, choice) pairs.
    """

    def __init__(self, choices: tuple[str, ...], synonyms: tuple[tuple[str, str], ...]) -> None:
        super().__init__(choices, case_sensitive=False)
        self.synonyms = {name.casefold(): choice for name, choice in synonyms}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if isinstance(value, str) and value.strip().casefold() in self.synonyms:
            return self.synonyms[value.strip().casefold()]
        return super().convert(value, param, ctx)


class MissingInput(click.ClickException):
    """An input path that does not exist: a file problem (exit 1, one `error:` line), as docs/cli.md's table has it,
    not bad usage, though it is found while the command line is parsed."""

    exit_code = 1


class ExistingPath(click.Path):
    """An input path (a file or a folder, as `file_okay` and `dir_okay` say) that must exist: a missing one is
    `MissingInput` (exit 1), as a missing `--weights` is; the wrong kind (a folder for a file) is bad usage."""

    def __init__(self, *, file_okay: bool = True, dir_okay: bool = True) -> None:
        super().__init__(exists=False, file_okay=file_okay, dir_okay=dir_okay)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        if not os.path.exists(path):
            name = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name if param else "PATH"
            raise MissingInput(f"{name}: no such file or folder {str(value)!r}")
        return path


def click_options(record: type, *, skip: Collection[str] = ()) -> Callable[[F], F]:
    """A decorator adding one click option per declared field of `record` (but those in `skip`).

    Each option's parameter name is the field's name, so that `record(**those keyword arguments)` builds it.
    """
    declared = [o for o in declared_options(record) if o.name not in skip]

    def decorate(function: F) -> F:
        for o in reversed(declared):
            function = _click_option(o)(function)
        return function

    return decorate


def declared_names(record: type, *, skip: Collection[str] = ()) -> list[str]:
    """The parameter names `click_options(record, skip=skip)` adds."""
    return [o.name for o in declared_options(record) if o.name not in skip]


def _click_option(o: DeclaredOption) -> Callable[[F], F]:
    spec = o.spec
    if o.item_type is bool and spec.path is None:
        if spec.negatable:
            flag = f"{spec.flag}/--no-{spec.flag.removeprefix('--')}"
            return click.option(flag, o.name, default=o.default, show_default=True, help=spec.help)
        return click.option(*_names(o), is_flag=True, default=o.default, help=spec.help)
    if o.is_list:
        return click.option(
            *_names(o),
            default=",".join(map(str, o.default)),
            show_default=True,
            callback=_list_callback(o),
            help=spec.help + _bounds_text(o),
        )
    return click.option(
        *_names(o),
        type=_param_type(o),
        default=o.default,
        required=spec.required,
        show_default=o.default is not None,
        help=spec.help,
    )


def _param_type(o: DeclaredOption) -> Any:
    """The click type of a single value: a path, a bounded number, one of the choices, or text."""
    spec = o.spec
    if spec.path is not None:
        file_okay, dir_okay = spec.path != "folder", spec.path != "file"
        if spec.exists:
            return ExistingPath(file_okay=file_okay, dir_okay=dir_okay)
        return click.Path(file_okay=file_okay, dir_okay=dir_okay)
    if o.item_type is int:
        low, high = spec.minimum, spec.maximum
        return click.IntRange(None if low is None else int(low), None if high is None else int(high))
    if o.item_type is float:
        return FiniteFloat(spec.minimum, spec.maximum)
    if spec.choices and spec.synonyms:
        return SynonymChoice(spec.choices, spec.synonyms)
    if spec.choices:
        return click.Choice(spec.choices, case_sensitive=False)
    return click.STRING


def _names(o: DeclaredOption) -> tuple[str, ...]:
    """The option's spellings, short ones first (`-o`, `--out`), then the parameter name (the field's)."""
    spellings = (o.spec.flag, *o.spec.aliases)
    short = tuple(s for s in spellings if not s.startswith("--"))
    return (*short, *(s for s in spellings if s.startswith("--")), o.name)


def _bounds_text(o: DeclaredOption) -> str:
    spec = o.spec
    if spec.choices:
        return " Of: " + ", ".join(spec.choices) + "."
    if spec.maximum is not None:
        return f" Each from {spec.minimum:g} to {spec.maximum:g}."
    return ""


def _list_callback(o: DeclaredOption) -> Callable[[click.Context, click.Parameter, str], tuple[Any, ...]]:
    """Comma-separated items, each of the field's item type and within its bounds or choices."""

    def parse(ctx: click.Context, param: click.Parameter, text: str) -> tuple[Any, ...]:
        items = [v.strip() for v in text.split(",") if v.strip()]
        if not items:
            raise click.BadParameter(f"expected a comma-separated list; received {text!r}")
        out: list[Any] = []
        for item in items:
            value: Any = item
            if o.item_type is int and not o.spec.choices:
                try:
                    value = int(item)
                except ValueError:
                    raise click.BadParameter(f"expected comma-separated whole numbers; received {text!r}") from None
            try:
                value = check_value(o, o.spec.flag, value)
            except UsageError as exc:  # the option is named once, by the group's error line
                raise click.BadParameter(str(exc).removeprefix(f"{o.spec.flag}: ")) from None
            if value not in out:
                out.append(value)
        return tuple(out)

    return parse


#: `--json`: the one way a command prints for programs (run, bench, compare, backends).
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document (its `schema` field names the command and version; docs/cli.md) instead.",
)
