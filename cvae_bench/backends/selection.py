"""The one parser of backend selections: `NAME`, `NAME:MODE`, `NAME:all`, comma-separated lists, `all`, each item
optionally tuned with `+KNOB=VALUE` (`core.tuning`)."""

from __future__ import annotations

from dataclasses import dataclass

from cvae_bench.backends import registry
from cvae_bench.backends.registry import BackendInfo
from cvae_bench.core.checks import did_you_mean, probe_device
from cvae_bench.core.errors import BackendUnavailableError, TuningError, UnknownBackendError, UsageError
from cvae_bench.core.tuning import UNTUNED, Tuning

#: The mode that stands for every mode a backend declares. Modes live in the backend class's Capabilities,
#: which the parent process does not import (that would import the framework): the worker resolves it.
EVERY_MODE = "all"


@dataclass(frozen=True)
class Selection:
    """One backend in one mode (None: its default mode, `EVERY_MODE`: every mode it declares), with its tuning."""

    info: BackendInfo
    mode: str | None = None
    tuning: Tuning = UNTUNED

    @property
    def label(self) -> str:
        """`name`, `name:mode`, then `+knob=value...`, as the user wrote it."""
        base = f"{self.info.name}:{self.mode}" if self.mode else self.info.name
        return base + self.tuning.label


def parse_selection(text: str, *, all_modes: bool = False, tunable: bool = False) -> list[Selection]:
    """The backends (and modes) that `text` names, in order, without duplicates.

    Args:
        text: `NAME`, `NAME:MODE`, `NAME:all`, a comma-separated list of these, or `all` (every available
            backend).
        all_modes: what `all` means: every mode of every available backend (benchmarks) or each one's
            default mode (training runs).
        tunable: whether items may carry `+KNOB=VALUE` tuning (benchmarks, whose verdicts say whether a knob
            is worth turning); elsewhere a tuned item is refused rather than run untuned.

    Raises:
        UnknownBackendError: an unknown name, or nothing named; the message lists the known ones.
        TuningError: an unknown knob or value, or tuning where `tunable` is False.
        BackendUnavailableError: a named backend whose framework is missing (the message says how to
            install it).
    """
    if text.strip().casefold() == "all":
        mode = EVERY_MODE if all_modes else None
        return [Selection(info, mode) for info in registry.resolve("all")]
    out: list[Selection] = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        item, plus, knobs = item.partition("+")
        if plus and not tunable:
            raise TuningError(f"{item + plus + knobs!r}: tuning knobs (+KNOB=VALUE) are for `cvae-bench bench` only")
        tuning = Tuning.parse(knobs)
        name, sep, mode = item.partition(":")
        if sep and not mode.strip():
            raise UnknownBackendError(f"{item!r} names no mode; write NAME, NAME:MODE or NAME:{EVERY_MODE}")
        info = registry.get(name.strip())
        if not info.available:
            raise BackendUnavailableError(info.unavailable_reason())
        selection = Selection(info, check_mode(info, mode.strip() or None), tuning)
        if selection not in out:
            out.append(selection)
    if not out:
        known = ", ".join(registry.all_backends())
        raise UnknownBackendError(f"No backend named in {text!r}. Known: {known}.")
    return out


def check_mode(info: BackendInfo, mode: str | None) -> str | None:
    """`mode` (case-insensitive) when the backend declares it; None and `EVERY_MODE` pass through.

    A backend whose registry entry declares no modes (a plugin registered by a `BackendInfo` without them) is
    checked by its worker instead.

    Raises:
        UsageError: a mode the backend does not declare, with its modes and the closest one.
    """
    if mode is None or mode == EVERY_MODE or not info.modes:
        return mode
    folded = {m.casefold(): m for m in info.modes}
    if mode.casefold() in folded:
        return folded[mode.casefold()]
    raise UsageError(
        f"backend {info.name!r} has no mode {mode!r}; choose one of {', '.join(info.modes)} "
        f"or {EVERY_MODE}.{did_you_mean(mode, info.modes)}"
    )


def check_selections(selections: list[Selection], device: str, what: str = "--backend") -> list[Selection]:
    """Refuse, before any worker starts, what the selected backends cannot do on this machine.

    Checks each mode, that each backend declares the device's kind, that the device is here (probed), and
    that a `threads` knob asks for no more than the cores available.

    Raises:
        UsageError: naming the backend and what it cannot do.
    """
    from cvae_bench.core.checks import check_threads

    kind = device.partition(":")[0]
    for s in selections:
        check_mode(s.info, s.mode)
        if kind not in s.info.devices:
            raise UsageError(f"{what}: backend {s.info.name!r} runs on {', '.join(s.info.devices)}, not {kind}")
        check_threads(f"{what} {s.label}: knob 'threads'", s.tuning.threads)
    probe_device("--device", device)
    return selections


def check_backend(what: str, name: str, device: str) -> BackendInfo:
    """The one backend `name` names, read as `registry.get` reads it (case-insensitively, with the closest
    known name when unknown), available, and declaring the kind of `device` (parsed already).

    For the commands that take a single backend and no mode (`export`, `sample`, `evaluate`).

    Raises:
        UsageError: an unknown name, a list or a mode where one name is meant, or a device kind it does not
            run on.
        BackendUnavailableError: its framework is missing (the message says how to install it).
    """
    text = name.strip()
    if "," in text or ":" in text or "+" in text or text.casefold() == "all":
        raise UsageError(f"{what}: name one backend (NAME, no mode or list); received {name!r}")
    info = registry.get(text)
    if not info.available:
        raise BackendUnavailableError(info.unavailable_reason())
    kind = device.partition(":")[0]
    if kind not in info.devices:
        raise UsageError(f"{what}: backend {info.name!r} runs on {', '.join(info.devices)}, not {kind}")
    return info
