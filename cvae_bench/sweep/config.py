"""The sweep file: a TOML grid of commands × backends × devices × threads × seeds × repeats, read and checked.

Every mistake is one `SweepFileError` naming the file, the line, the table and the key, and saying what was
expected and what was found. `expand` turns the checked file into its cells, in a stable order.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvae_bench.bench.options import BenchOptions
from cvae_bench.core.defaults import DEVICES, MAX_SEED, MAX_SWEEP_CELLS
from cvae_bench.core.errors import CvaeBenchError, UsageError
from cvae_bench.core.options import DeclaredOption, declared_options, sweep_defaults
from cvae_bench.sweep.cells import COMMANDS, BenchParams, Cell, RunParams
from cvae_bench.training.command import RunCommand

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class SweepFileError(UsageError):
    """A sweep file that cannot be read, or holds a key or value it should not."""


#: The axes of the grid: they may be set in [sweep] for every command, or in [run]/[bench] for one.
AXES = ("backends", "devices", "threads", "seeds", "repeats")
#: The bench's own defaults when the file does not say: those `BenchOptions` declares for sweep files.
BENCH_DEFAULTS: dict[str, Any] = sweep_defaults(BenchOptions)
#: A run's own defaults when the file does not say: those `RunCommand` declares for sweep files (`RunParams`).
RUN_DEFAULTS: dict[str, Any] = sweep_defaults(RunCommand)


@dataclass(frozen=True)
class RaySettings:
    """The [ray] table: where the cluster is, the slot resource every cell holds, CPUs per cell."""

    address: str | None = None
    slot: str = "bench_slot"
    cpus: int | None = None


@dataclass(frozen=True)
class SweepFile:
    """A checked sweep file: its cells in order and where their results go."""

    path: Path
    text: str
    name: str
    out: Path
    cells: list[Cell]
    data_path: str | None = None
    ray: RaySettings = field(default_factory=RaySettings)


#: What a sweep's name may hold: it becomes a folder name under runs/.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Threads a cell may ask for: a sanity bound here; a local sweep also checks them against this machine's cores.
_MAX_THREADS = 4096


# -- values ---------------------------------------------------------------------------------------------------
Check = Callable[[Any], Any]


class _Bad(Exception):
    """A value of the wrong kind; the message says what was expected."""


def _int(minimum: int) -> Check:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise _Bad(f"an integer >= {minimum}")
        return v

    return check


def _number(minimum: float | None = None, maximum: float | None = None) -> Check:
    bounds = [f">= {minimum:g}"] if minimum is not None else []
    bounds += [f"<= {maximum:g}"] if maximum is not None else []
    expected = " ".join(["a finite number", " and ".join(bounds)]).strip()

    def check(v: Any) -> float:
        bad = isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
        if bad or (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
            raise _Bad(expected)
        return float(v)

    return check


def _int_in(minimum: int, maximum: int) -> Check:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= maximum:
            raise _Bad(f"an integer from {minimum} to {maximum}")
        return v

    return check


def _name(v: Any) -> str:
    """A sweep's name: it names the folder runs/sweep-NAME, so it may not hold a path (`/`, `..`)."""
    if not isinstance(v, str) or not _SAFE_NAME.fullmatch(v) or ".." in v:
        raise _Bad("a name of letters, digits, '.', '_' and '-' (it names the folder runs/sweep-NAME)")
    return v


def _text(choices: Sequence[str] | None = None) -> Check:
    def check(v: Any) -> str:
        if not isinstance(v, str) or not v.strip() or (choices is not None and v not in choices):
            raise _Bad("one of " + ", ".join(choices) if choices is not None else "a non-empty string")
        return v

    return check


def _threads(v: Any) -> int | None:
    if v == "all":
        return None
    try:
        return int(_int_in(1, _MAX_THREADS)(v))
    except _Bad:
        raise _Bad(f'an integer from 1 to {_MAX_THREADS} or "all"') from None


def _optional(check: Check) -> Check:
    """A value that may also be `false` (none: e.g. `epochs = false` trains to the target)."""

    def inner(v: Any) -> Any:
        if v is False:
            return None
        try:
            return check(v)
        except _Bad as exc:
            raise _Bad(f"{exc} or false") from None

    return inner


def _list(check: Check) -> Check:
    """A non-empty list of values (a single value is a list of one)."""

    def inner(v: Any) -> list[Any]:
        items = v if isinstance(v, list) else [v]
        if not items:
            raise _Bad("a non-empty list")
        out = []
        for item in items:
            try:
                value = check(item)
            except _Bad as exc:
                raise _Bad(f"a list of {exc}") from None
            if value not in out:
                out.append(value)
        return out

    return inner


def _declared_check(o: DeclaredOption) -> Check:
    """The check of a sweep key from the option's declaration: the bounds and choices of the command line."""
    spec = o.spec
    check: Check
    if spec.choices:
        check = _text(spec.choices)
    elif o.item_type is int:
        low = int(spec.minimum) if spec.minimum is not None else -(2**63)
        check = _int_in(low, int(spec.maximum)) if spec.maximum is not None else _int(low)
    elif o.item_type is float:
        check = _number(spec.minimum, spec.maximum)
    else:
        check = _text()
    if o.is_list:
        check = _list(check)
    return _optional(check) if o.optional else check


def _every_group() -> list[str]:
    from cvae_bench.bench.groups import GROUPS

    return list(GROUPS)


def _default_groups() -> list[str]:
    from cvae_bench.bench.groups import DEFAULT_GROUPS

    return list(DEFAULT_GROUPS)


def _datasets() -> tuple[str, ...]:
    from cvae_bench.data.specs import DATASETS

    return DATASETS


#: The keys each table may hold and how each is checked.
SCHEMA: dict[str, dict[str, Check]] = {
    "sweep": {
        "name": _name,
        "out": _text(),
        "commands": _list(_text(COMMANDS)),
        "dataset": _text(),
        "data": _text(),
        "backends": _list(_text()),
        "devices": _list(_text(DEVICES)),
        "threads": _list(_threads),
        "seeds": _list(_int_in(0, MAX_SEED)),
        "repeats": _int_in(1, MAX_SWEEP_CELLS),
    },
    "run": {
        **{o.name: _declared_check(o) for o in declared_options(RunCommand) if o.spec.sweep},
        "backends": _list(_text()),
        "devices": _list(_text(DEVICES)),
        "threads": _list(_threads),
        "seeds": _list(_int_in(0, MAX_SEED)),
        "repeats": _int_in(1, MAX_SWEEP_CELLS),
    },
    "bench": {
        "groups": _list(_text()),
        **{o.name: _declared_check(o) for o in declared_options(BenchOptions) if o.spec.sweep},
        "backends": _list(_text()),
        "devices": _list(_text(DEVICES)),
        "threads": _list(_threads),
        "repeats": _int_in(1, MAX_SWEEP_CELLS),
    },
    "ray": {"address": _text(), "slot": _text(), "cpus": _int(1)},
}

#: Keys that belong elsewhere, with the reason (said instead of a bare "unknown key").
MISPLACED = {
    ("run", "batch_sizes"): "the training recipe fixes batch 64; batch_sizes are the bench's sampling batch sizes",
    ("bench", "seeds"): "a bench builds its model with seed 0; use repeats for more measurements",
    ("sweep", "batch_sizes"): "batch_sizes belong in [bench] (sampling batch sizes)",
}


# -- where a key is written -----------------------------------------------------------------------------------
_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")


def _line_of(text: str, table: str, key: str | None) -> int | None:
    """The line (1-based) that sets `key` in `[table]` (or opens the table when `key` is None)."""
    current = ""
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=") if key else None
    for number, line in enumerate(text.splitlines(), start=1):
        m = _TABLE.match(line)
        if m:
            current = m.group(1)
            if key is None and current == table:
                return number
            continue
        if pattern is not None and current == table and pattern.match(line):
            return number
    return None


class _Reader:
    """Reads one parsed file, raising `SweepFileError`s that point at the key's line."""

    def __init__(self, path: Path, text: str, doc: dict[str, Any]) -> None:
        self.path, self.text, self.doc = path, text, doc

    def error(self, table: str, key: str | None, message: str) -> SweepFileError:
        line = _line_of(self.text, table, key)
        where = f"{self.path}:{line}" if line else str(self.path)
        name = f"[{table}] {key}" if key else f"[{table}]"
        return SweepFileError(f"{where}: {name}: {message}")

    def table(self, name: str) -> dict[str, Any]:
        value = self.doc.get(name, {})
        if not isinstance(value, dict):
            raise self.error("", name, f"expected a table [{name}], got {type(value).__name__}")
        for key in value:
            if key not in SCHEMA[name]:
                why = MISPLACED.get((name, key)) or "known keys: " + ", ".join(SCHEMA[name])
                raise self.error(name, key, f"unknown key ({why})")
        out = {}
        for key, raw in value.items():
            try:
                out[key] = SCHEMA[name][key](raw)
            except _Bad as exc:
                raise self.error(name, key, f"expected {exc}, got {raw!r}") from None
        return out


def read_sweep_file(path: str | Path, out: str | Path | None = None, *, local: bool = True) -> SweepFile:
    """Read, check and expand a sweep file.

    Every cell is held to the rules of the command it runs (`cvae-bench run`, `cvae-bench bench`): finite
    numbers in their bounds, subsets within the data, modes the backend declares; and the grid is counted,
    and refused above `MAX_SWEEP_CELLS`, before it is enumerated.

    Args:
        path: the TOML file.
        out: where results go, instead of the file's `[sweep] out` (default: runs/sweep-<name>).
        local: the cells run on this machine, so `threads` may not exceed its cores (a Ray cluster's nodes may
            have more).

    Raises:
        SweepFileError: the file is missing, is not TOML, or holds an unknown key, a wrong value, an unknown
            backend, group or data set (one line naming the file, the line and the key).
    """
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:  # a file problem (exit 1), as a missing --weights is: docs/cli.md
        raise CvaeBenchError(f"SWEEP_FILE: no such file {str(path)!r}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CvaeBenchError(f"cannot read sweep file {p}: {exc}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepFileError(f"{p}: not valid TOML: {exc}") from exc
    reader = _Reader(p, text, doc)
    unknown = sorted(set(doc) - set(SCHEMA))
    if unknown:
        raise reader.error(unknown[0], None, "unknown table (known: " + ", ".join(f"[{t}]" for t in SCHEMA) + ")")
    sweep, ray = reader.table("sweep"), reader.table("ray")
    name = sweep.get("name", p.stem)
    dataset = sweep.get("dataset", "mnist")
    if dataset not in _datasets():
        raise reader.error("sweep", "dataset", f"unknown data set {dataset!r}; known: {', '.join(_datasets())}")
    commands = sweep.get("commands") or [c for c in COMMANDS if c in doc]
    if not commands:
        raise reader.error("sweep", None, 'no command: set commands = ["run", "bench"] or add a [run] table')
    plans = []
    for command in commands:
        own = reader.table(command)
        axes = {k: own.get(k, sweep.get(k)) for k in AXES}
        backends = _backends(reader, command if "backends" in own else "sweep", axes["backends"])
        _check_cells(reader, command, own, axes, dataset, local)
        plans.append((command, own, axes, backends))
    count = sum(
        len(backends)
        * len(axes["devices"] or [1])
        * len(axes["threads"] or [1])
        * (len(axes["seeds"] or [0]) if command == "run" else 1)
        * (axes["repeats"] or 1)
        for command, own, axes, backends in plans
    )
    if count > MAX_SWEEP_CELLS:
        raise reader.error(
            "sweep", None, f"the grid has {count} cells, more than the {MAX_SWEEP_CELLS} a sweep may hold"
        )
    cells: list[Cell] = []
    for command, own, axes, backends in plans:
        if command == "run":
            run = RunParams(**{k: own.get(k, default) for k, default in RUN_DEFAULTS.items()})
            seeds: list[int | None] = list(axes["seeds"] or [0])
            bench = None
        else:
            groups = own.get("groups", _default_groups())
            unknown_groups = sorted(set(groups) - set(_every_group()))
            if unknown_groups:
                known = ", ".join(_every_group())
                raise reader.error("bench", "groups", f"unknown group {unknown_groups[0]!r}; known: {known}")
            bench = BenchParams(groups=groups, **{k: own.get(k, default) for k, default in BENCH_DEFAULTS.items()})
            seeds, run = [None], None
        for backend, mode in backends:
            for device in axes["devices"] or ["cpu"]:
                for threads in axes["threads"] or [None]:
                    for seed in seeds:
                        for repeat in range(axes["repeats"] or 1):
                            cell = Cell(command, backend, mode, device, threads, seed, repeat, dataset, run, bench)
                            if all(c.key != cell.key for c in cells):
                                cells.append(cell)
    default_out = Path("runs") / f"sweep-{name}"
    return SweepFile(
        path=p,
        text=text,
        name=name,
        out=Path(out) if out is not None else Path(sweep.get("out", default_out)),
        cells=cells,
        data_path=sweep.get("data"),
        ray=RaySettings(address=ray.get("address"), slot=ray.get("slot", "bench_slot"), cpus=ray.get("cpus")),
    )


def _check_cells(
    reader: _Reader, command: str, own: dict[str, Any], axes: dict[str, Any], dataset: str, local: bool
) -> None:
    """What the command itself would refuse: subsets beyond the data, more threads than this machine has."""
    from cvae_bench.core.checks import check_threads
    from cvae_bench.data.specs import check_subsets

    for key in ("train_subset", "val_subset"):
        subsets = {key: own.get(key)}
        try:
            check_subsets(dataset, subsets.get("train_subset"), subsets.get("val_subset"), prefix="")
        except UsageError as exc:
            raise reader.error(command, key, str(exc).partition(": ")[2]) from None
    if local:
        where = command if "threads" in own else "sweep"
        for threads in axes["threads"] or []:
            try:
                check_threads("threads", threads)
            except UsageError as exc:
                raise reader.error(where, "threads", str(exc).partition(": ")[2]) from None


def _backends(reader: _Reader, table: str, names: list[str] | None) -> list[tuple[str, str | None]]:
    """(name, mode) pairs of `backends`: NAME or NAME:MODE, or "all" (every backend available here)."""
    from cvae_bench.backends import registry
    from cvae_bench.backends.selection import check_mode

    if not names:
        raise reader.error(table, "backends", 'no backend: set backends = ["torch", "keras-jax:compiled"]')
    out: list[tuple[str, str | None]] = []
    for item in names:
        if "+" in item:  # a cell's label and key name its backend and mode only: a knob would go unrecorded
            raise reader.error(
                table, "backends", f"{item!r}: tuning knobs (+KNOB=VALUE) are for `cvae-bench bench` only"
            )
        if item == "all":
            pairs: list[tuple[str, str | None]] = [(info.name, None) for info in registry.resolve("all")]
        else:
            name, sep, mode = item.partition(":")
            try:
                info = registry.get(name)  # case-insensitive, with "did you mean"
            except UsageError as exc:
                raise reader.error(table, "backends", str(exc)) from None
            if sep and (not mode or mode == "all"):
                raise reader.error(
                    table, "backends", f"{item!r}: name one mode per entry (a cell is one mode), e.g. {name}:eager"
                )
            try:
                mode = check_mode(info, mode or None) or ""
            except UsageError as exc:
                raise reader.error(table, "backends", str(exc)) from None
            pairs = [(info.name, mode or None)]
        out += [p for p in pairs if p not in out]
    return out
