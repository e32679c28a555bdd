"""Options declared once: a field of a command's options record carries its flag, help, bounds and choices.

The command line (`cvae_bench.cli_click`) and the sweep file (`cvae_bench.sweep.config`) are generated from
these declarations, and the record itself is what bench.json and result.json record, so that a default,
a bound or a help text is written in one place. This module imports neither click nor a framework.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, Literal

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
