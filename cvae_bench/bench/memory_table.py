"""bench.md's memory table: each entry's resident set by phase and its peak, read from `extra_info["memory"]`."""

from __future__ import annotations

from collections.abc import Sequence

from cvae_bench.bench.records import Entry
from cvae_bench.core.memory import mib, of_extra_info

MEMORY_HEADERS = ["entry", "after import", "after build", "peak [lowest, highest]", "device peak", "method"]


def memory_rows(entries: Sequence[Entry]) -> list[list[str]]:
    """One row per entry with memory figures (none: the table is left out)."""
    rows = []
    for e in entries:
        f = of_extra_info(e.extra_info)
        if f is None:
            continue
        peak = mib(f.peak_rss)
        if f.peak_rss_interval is not None:
            peak += f" [{mib(f.peak_rss_interval[0])}, {mib(f.peak_rss_interval[1])}]"
        rows.append(
            [
                e.name,
                mib(f.rss_after_import),
                mib(f.rss_after_build),
                peak,
                mib(f.device_peak),
                f"{f.method} ×{f.processes}",
            ]
        )
    return rows


def memory_note(entries: Sequence[Entry]) -> str:
    """The line under the table: the idle worker's resident set, against which the rest is read."""
    base = next((f.baseline_rss for e in entries if (f := of_extra_info(e.extra_info)) is not None), None)
    return (
        f"Resident memory of each worker process (median over the epochs' fresh processes, × how many); an idle "
        f"worker of the same code without a framework holds {mib(base)}. A peak includes what earlier calls of "
        "the same worker left cached (docs/memory.md)."
    )
