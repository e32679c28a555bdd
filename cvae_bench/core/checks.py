"""Checks of option values, shared by the command line and the sweep file, run before any work starts.

Each check raises `UsageError` with one line that names the option (or sweep key, through `what`), says what
was expected and what was received; the command line turns it into `error: …` and exit `USAGE_EXIT`. The one
exception is `check_input_file`: a missing input is a file problem (exit 1, docs/cli.md), found as early.
"""

from __future__ import annotations

import ctypes
import difflib
import math
import os
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

from cvae_bench.core.defaults import DEVICES, MAX_BATCH_SIZE, MAX_SEED
from cvae_bench.core.errors import CvaeBenchError, UsageError

#: Other names of a device kind, read as the kind (`--device gpu` is what most people type for CUDA).
DEVICE_ALIASES = {"gpu": "cuda"}


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """` Did you mean 'x'?` for the closest of `known` to `name` (difflib), '' when none is close."""
    names = list(known)
    folded = {n.casefold(): n for n in names}
    close = difflib.get_close_matches(name.casefold(), list(folded), n=1, cutoff=0.6)
    if not close:  # `pytorch` → torch: a known name inside the one given
        close = [k for k in folded if len(k) >= 3 and k in name.casefold()][:1]
    return f" Did you mean {folded[close[0]]!r}?" if close else ""


def check_choice(what: str, value: str, choices: Sequence[str]) -> str:
    """`value` (case-insensitive) when it is one of `choices`.

    Raises:
        UsageError: naming the choices and the closest one.
    """
    folded = {c.casefold(): c for c in choices}
    if value.strip().casefold() in folded:
        return folded[value.strip().casefold()]
    raise UsageError(f"{what}: {value!r} is not one of {', '.join(choices)}.{did_you_mean(value, choices)}")


def check_int_list(what: str, text: str, *, minimum: int = 1, maximum: int = MAX_BATCH_SIZE) -> tuple[int, ...]:
    """Comma-separated whole numbers in [minimum, maximum], e.g. batch sizes `64,1024`."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{what}: expected comma-separated whole numbers such as 64,1024; received {text!r}") from None
    if not values:
        raise UsageError(f"{what}: expected comma-separated whole numbers such as 64,1024; received {text!r}")
    for v in values:
        check_int(what, v, minimum=minimum, maximum=maximum)
    return values


def check_int(what: str, value: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` when it lies in [minimum, maximum]."""
    if minimum is not None and value < minimum:
        raise UsageError(f"{what}: {value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{what}: {value} is above the maximum {maximum}")
    return value


def check_float(what: str, value: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """`value` when it is finite and lies in [minimum, maximum] (nan and inf are refused)."""
    if not math.isfinite(value):
        raise UsageError(f"{what}: {value!r} is not a finite number")
    if minimum is not None and value < minimum:
        raise UsageError(f"{what}: {value:g} is below the minimum {minimum:g}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{what}: {value:g} is above the maximum {maximum:g}")
    return value


def check_seed(what: str, seed: int, count: int = 1) -> int:
    """A seed every framework takes: seeds `seed`..`seed+count-1` within [0, MAX_SEED] (numpy's bound)."""
    check_int(what, seed, minimum=0, maximum=MAX_SEED - (count - 1))
    return seed


def available_cores() -> int:
    """Cores this process may run on (its affinity mask), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_threads(what: str, threads: int | None) -> int | None:
    """A thread count of at most the cores this process may run on (a framework would cap it silently)."""
    if threads is None:
        return None
    cores = available_cores()
    check_int(what, threads, minimum=1)
    if threads > cores:
        raise UsageError(f"{what}: {threads} threads is more than the {cores} core(s) available to this process")
    return threads


def parse_device(what: str, text: str) -> str:
    """A device as the workers take it: `cpu`, `cuda` or `cuda:N`, read case-insensitively, `gpu` as cuda.

    Raises:
        UsageError: any other name, with the closest one.
    """
    kind, sep, index = text.strip().casefold().partition(":")
    kind = DEVICE_ALIASES.get(kind, kind)
    if kind not in DEVICES or (sep and (kind != "cuda" or not index.isdigit())):
        known = [*DEVICES, *DEVICE_ALIASES, "cuda:N"]
        raise UsageError(f"{what}: {text!r} is not a device; expected cpu, cuda or cuda:N.{did_you_mean(text, known)}")
    return f"{kind}:{int(index)}" if sep else kind


@cache
def cuda_device_count() -> int:
    """CUDA devices the driver sees, asked of libcuda itself (no framework import, a few milliseconds)."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


def probe_device(what: str, device: str) -> str:
    """`device` (already parsed) when this machine has it: a CUDA device is looked for before any work.

    Raises:
        UsageError: cuda asked for on a machine whose driver shows no such device.
    """
    kind, _, index = device.partition(":")
    if kind == "cuda":
        found = cuda_device_count()
        wanted = int(index) + 1 if index else 1
        if found < wanted:
            have = "no CUDA device" if found == 0 else f"{found} CUDA device(s)"
            raise UsageError(f"{what}: {device} asked for, but the driver shows {have} on this machine; use cpu")
    return device


def check_device(what: str, text: str) -> str:
    """`parse_device` then `probe_device`."""
    return probe_device(what, parse_device(what, text))


def check_input_file(what: str, path: str | Path) -> str:
    """`path` when it names a file that exists, for an option naming an input (`--weights`, `--onnx`).

    Raises:
        CvaeBenchError: no such file, or a folder: a file problem (exit 1), not bad usage, as docs/cli.md's
            table has it; still found before any work.
    """
    p = Path(path)
    if p.is_dir():
        raise CvaeBenchError(f"{what}: {str(path)!r} is a folder; expected a file")
    if not p.is_file():
        raise CvaeBenchError(f"{what}: no such file {str(path)!r}")
    return str(path)


def _same_file(a: Path, b: Path) -> bool:
    """The same file, through links and relative paths too."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output(out: str | Path, inputs: Iterable[str | Path] = (), *, force: bool = False) -> None:
    """Refuse an output file that is one of the inputs, or that exists already unless `force`.

    Called before any work, so that nothing is computed for a file that would not be written.

    Raises:
        CvaeBenchError: `out` is an input (always refused: the export reads it) or exists without `force`.
    """
    target = Path(out)
    for source in inputs:
        if _same_file(target, Path(source)):
            raise CvaeBenchError(f"-o {target} is the input {source}; it is read, so write to another file")
    if target.is_dir():
        raise CvaeBenchError(f"-o {target} is a folder; expected a file path such as {target / 'decoder.onnx'}")
    if target.exists() and not force:
        raise CvaeBenchError(f"-o {target} exists; pass --force to replace it, or choose another file")


def check_output_folder(path: str | Path, force: bool = False, ignore: Iterable[str] = ()) -> None:
    """Refuse an output folder that already holds anything (but the names in `ignore`), unless `force`: nothing
    a command wrote before is replaced unasked. A folder that does not exist yet passes.

    Raises:
        CvaeBenchError: the folder holds files and `force` is not set (a file problem: exit 1).
    """
    folder = Path(path)
    if force or not folder.is_dir():
        return
    skip = set(ignore)
    held = sorted(p.name for p in folder.iterdir() if p.name not in skip)
    if held:
        shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
        raise CvaeBenchError(
            f"output folder {folder} is not empty ({shown}); pass --force to write into it anyway, "
            "or choose another --out"
        )
