"""Options declared once: a field of a command's options record carries its flag, help, bounds and choices.

The command line (`cvae_bench.cli.options`) and the sweep file (`cvae_bench.sweep.config`) are generated from
these declarations, and the record itself is what bench.json and result.json record, so that a default,
a bound or a help text is written in one place. This module imports neither click nor a framework.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import Any, Literal, TypeVar

from cvae_bench.core.defaults import DEFAULT_DEVICE, DEFAULT_IDLE_TIMEOUT


@dataclass(frozen=True)
class OptionSpec:
    """How one field of an options record appears to users.

    Attributes:
        flag: the command-line flag (`--min-time`); a boolean field with `negatable` also gets `--no-…`.
        help: one sentence for `--help` (the default is added by click).
        aliases: other spellings accepted (`--precision` for `--precisions`).
        minimum, maximum: inclusive bounds of a number, or of each item of a list.
        choices: the values a text (or each item of a list of texts) may take.
        sweep: whether a sweep file's table may set it (under the field's name).
        negatable: a boolean given as `--flag/--no-flag` rather than a plain flag.
        path: the text names a "file", a "folder", or "either" (one that need not exist unless `exists`).
        exists: the path must exist already.
        required: the command cannot run without it (there is no default to fall back on).
        synonyms: other names of a choice, each read as the choice (`("gpu", "cuda")`: gpu reads as cuda).
    """

    flag: str
    help: str
    aliases: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    sweep: bool = False
    negatable: bool = False
    path: Literal["file", "folder", "either"] | None = None
    exists: bool = False
    required: bool = False
    synonyms: tuple[tuple[str, str], ...] = ()

    def choice(self, value: str) -> str | None:
        """The choice `value` names (case-insensitively, or through a synonym), None when it names none."""
        folded = {c.casefold(): c for c in self.choices or ()}
        folded |= {name.casefold(): choice for name, choice in self.synonyms}
        return folded.get(value.strip().casefold())


def option(default: Any, flag: str, help: str, **spec: Any) -> Any:
    """A dataclass field with a default and its `OptionSpec` (keyword arguments are the spec's fields)."""
    return field(default=default, metadata={"option": OptionSpec(flag=flag, help=help, **spec)})


@dataclass(frozen=True)
class DeclaredOption:
    """A field of an options record that users set: its name, resolved type, default and spec."""

    name: str
    type: Any
    default: Any
    spec: OptionSpec

    @property
    def item_type(self) -> type:
        """The type of the value, or of each item of a tuple, without `None`."""
        kind = _without_none(self.type)
        if typing.get_origin(kind) is tuple:
            return typing.get_args(kind)[0]
        return kind

    @property
    def is_list(self) -> bool:
        """Whether the value is a tuple (comma-separated on the command line, a list in a sweep file)."""
        return typing.get_origin(_without_none(self.type)) is tuple

    @property
    def optional(self) -> bool:
        """Whether None is a value (the option may be left out: "its own default")."""
        return type(None) in typing.get_args(self.type)


def _without_none(kind: Any) -> Any:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return kind


def declared_options(record: type) -> Iterator[DeclaredOption]:
    """The fields of `record` that carry an `OptionSpec`, in declaration order."""
    hints = typing.get_type_hints(record)
    for f in fields(record):
        spec = f.metadata.get("option")
        if isinstance(spec, OptionSpec):
            yield DeclaredOption(f.name, hints[f.name], _default(f), spec)


def sweep_defaults(record: type) -> dict[str, Any]:
    """The defaults of the fields a sweep file may set, as the file would write them (lists for tuples)."""
    return {
        o.name: list(o.default) if isinstance(o.default, tuple) else o.default
        for o in declared_options(record)
        if o.spec.sweep
    }


R = TypeVar("R")


def check_declared(record: R, prefix: str = "--") -> R:
    """`record` with each declared choice spelt as declared, when every declared value keeps its option's rules.

    The command line enforces the rules while it parses; a record built in Python (a notebook, a test, a
    sweep cell) comes through here, so that it is held to the same bounds and choices.

    Args:
        record: an options record (a dataclass whose fields carry `OptionSpec`s).
        prefix: `--` names each value by its flag; '' by its field name (a sweep key).

    Raises:
        UsageError: one line naming the option, what it takes and what it was given.
    """
    from cvae_bench.core.errors import UsageError

    changed: dict[str, Any] = {}
    for o in declared_options(type(record)):
        value = getattr(record, o.name)
        if value is None and o.optional:
            continue
        what = o.spec.flag if prefix == "--" else o.name
        items = tuple(value) if o.is_list else (value,)
        if o.is_list and not items:
            among = f" (one of {', '.join(o.spec.choices)})" if o.spec.choices else ""
            raise UsageError(f"{what}: name at least one value{among}")
        out = [check_value(o, what, item) for item in items]
        checked = tuple(dict.fromkeys(out)) if o.is_list else out[0]
        if checked != value:
            changed[o.name] = checked
    return replace(record, **changed) if changed else record  # type: ignore[type-var]


def check_value(o: DeclaredOption, what: str, value: Any) -> Any:
    """One value of `o` (or one item of a list) as its declaration allows it: a choice spelt as declared (a synonym
    read as its choice), a number within its bounds. The command line's list options and `check_declared` both
    come through here.

    Raises:
        UsageError: `what: ...`, naming what the option takes (and the closest choice).
    """
    from cvae_bench.core import checks

    spec = o.spec
    if spec.choices:
        return spec.choice(str(value)) or checks.check_choice(what, str(value), spec.choices)
    if o.item_type is int:
        checks.check_int(what, value, minimum=_bound(spec.minimum), maximum=_bound(spec.maximum))
    elif o.item_type is float:
        checks.check_float(what, value, minimum=spec.minimum, maximum=spec.maximum)
    return value


def _bound(value: float | None) -> int | None:
    return None if value is None else int(value)


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


# -- the options several commands share: each declared here once, so its flag, default and help agree ---------
def device_option(help: str = "cpu, cuda or cuda:N (gpu reads as cuda), where the backend runs.") -> Any:
    """`--device` (also spelled `--devices`): where a backend runs; the check probes it before work."""
    return option(DEFAULT_DEVICE, "--device", help, aliases=("--devices",))


def worker_timeout_option() -> Any:
    """`--worker-timeout`: the seconds of silence after which a worker counts as hung."""
    return option(
        DEFAULT_IDLE_TIMEOUT,
        "--worker-timeout",
        "Seconds of silence after which a worker is declared hung (a worker speaks at least this often).",
        minimum=1,
    )


def out_option(help: str, *, folder: bool, default: str | None = None, required: bool = False) -> Any:
    """`-o/--out`, the one name of every command's output: a folder or a file.

    A `required` one has no default in the record either: a caller that builds the record must name it.
    """
    value: Any = MISSING if required else default
    return option(value, "--out", help, aliases=("-o",), path="folder" if folder else "file", required=required)


def force_option(help: str = "Write into an --out folder that already holds files.") -> Any:
    """`--force`: the one way to let a command write where files already are."""
    return option(False, "--force", help)
