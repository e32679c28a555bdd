"""The one parser of backend selections: `NAME`, `NAME:MODE`, `NAME:all`, comma-separated lists, `all`."""

from __future__ import annotations

from dataclasses import dataclass

from cvae_bench.backends import registry
from cvae_bench.backends.registry import BackendInfo
from cvae_bench.core.errors import BackendUnavailableError, UnknownBackendError

#: The mode that stands for every mode a backend declares. Modes live in the backend class's Capabilities,
#: which the parent process does not import (that would import the framework): the worker resolves it.
EVERY_MODE = "all"


@dataclass(frozen=True)
class Selection:
    """One backend in one mode: None is its default mode, `EVERY_MODE` every mode it declares."""

    info: BackendInfo
    mode: str | None = None

    @property
    def label(self) -> str:
        """`name` or `name:mode`, as the user wrote it."""
        return f"{self.info.name}:{self.mode}" if self.mode else self.info.name


def parse_selection(text: str, *, all_modes: bool = False) -> list[Selection]:
    """The backends (and modes) that `text` names, in order, without duplicates.

    Args:
        text: `NAME`, `NAME:MODE`, `NAME:all`, a comma-separated list of these, or `all` (every available
            backend).
        all_modes: what `all` means: every mode of every available backend (benchmarks) or each one's
            default mode (training runs).

    Raises:
        UnknownBackendError: an unknown name, or nothing named; the message lists the known ones.
        BackendUnavailableError: a named backend whose framework is missing (the message says how to
            install it).
    """
    if text.strip() == "all":
        mode = EVERY_MODE if all_modes else None
        return [Selection(info, mode) for info in registry.resolve("all")]
    out: list[Selection] = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        name, sep, mode = item.partition(":")
        if sep and not mode.strip():
            raise UnknownBackendError(f"{item!r} names no mode; write NAME, NAME:MODE or NAME:{EVERY_MODE}")
        info = registry.get(name.strip())
        if not info.available:
            raise BackendUnavailableError(info.unavailable_reason())
        selection = Selection(info, mode.strip() or None)
        if selection not in out:
            out.append(selection)
    if not out:
        known = ", ".join(registry.all_backends())
        raise UnknownBackendError(f"No backend named in {text!r}. Known: {known}.")
    return out
