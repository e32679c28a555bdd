"""The memory record of one measurement: resident set by phase and its peak, across worker processes.

`MemoryFigures` is what bench.json carries in an entry's `extra_info["memory"]` (bytes throughout):

- `baseline_rss`: an idle worker of the same code without any framework (the harness's own share);
- `rss_after_import`, `rss_after_build`: the worker after the framework import, and after the model was
  built and the data loaded (medians over the worker processes);
- `peak_rss`: the peak resident set during the timed rounds, the median over the worker processes (a bench
  runs several epochs, each with fresh workers), with `peak_rss_interval` the range [lowest, highest] over
  them (None with one process);
- `device_peak`: the accelerator's peak (None on the CPU); `method`: how the peak was read
  (`runtime.memory`); `processes`: how many worker processes the figures come from.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cvae_bench.core.records import Record, RecordError

MIB = 1024 * 1024


@dataclass(frozen=True)
class MemoryFigures(Record):
    """One measurement's memory (see the module docstring)."""

    baseline_rss: int
    rss_after_import: int
    rss_after_build: int
    peak_rss: int
    peak_rss_interval: tuple[int, int] | None
    device_peak: int | None
    method: str
    processes: int = 1

    @property
    def framework_share(self) -> int:
        """Bytes the peak holds beyond an idle worker: what the framework, the model and the data cost."""
        return max(0, self.peak_rss - self.baseline_rss)


@dataclass(frozen=True)
class ProcessMemory(Record):
    """What one worker process reported (`runtime.memory.memory_job`): its marks and the peak of each key."""

    marks: dict[str, int]
    peaks: dict[str, int]
    device_peaks: dict[str, int]
    method: str

    @classmethod
    def of(cls, reported: Mapping[str, Any]) -> ProcessMemory:
        """From `memory_job`'s plain dict."""
        return cls(
            marks={str(k): int(v) for k, v in reported.get("marks", {}).items()},
            peaks={str(k): int(v) for k, v in reported.get("peaks", {}).items()},
            device_peaks={str(k): int(v) for k, v in reported.get("device_peaks", {}).items()},
            method=str(reported.get("method", "unknown")),
        )


def _median(values: Sequence[int]) -> int:
    return int(statistics.median(values))


def figures(processes: Sequence[ProcessMemory], key: str, baseline: int) -> MemoryFigures | None:
    """The figures of the call `key` over the worker processes that ran it (None: none tracked it).

    A process without an import mark (a bare worker hosting a reference row) counts its first mark instead.
    """
    ran = [p for p in processes if key in p.peaks]
    if not ran:
        return None
    peaks = [p.peaks[key] for p in ran]
    imports = [p.marks.get("after_import", p.marks.get("start", baseline)) for p in ran]
    builds = [p.marks.get("after_build", i) for p, i in zip(ran, imports, strict=True)]
    devices = [p.device_peaks[key] for p in ran if key in p.device_peaks]
    methods = sorted({p.method for p in ran})
    return MemoryFigures(
        baseline_rss=baseline,
        rss_after_import=_median(imports),
        rss_after_build=_median(builds),
        peak_rss=_median(peaks),
        peak_rss_interval=(min(peaks), max(peaks)) if len(peaks) >= 2 else None,
        device_peak=_median(devices) if devices else None,
        method="+".join(methods),
        processes=len(ran),
    )


def single(
    peak: int, baseline: int, method: str, after_import: int | None = None, after_build: int | None = None
) -> MemoryFigures:
    """The figures of one process's one phase (a run, a sample-onnxruntime call)."""
    imported = after_import if after_import is not None else baseline
    return MemoryFigures(
        baseline_rss=baseline,
        rss_after_import=imported,
        rss_after_build=after_build if after_build is not None else imported,
        peak_rss=peak,
        peak_rss_interval=None,
        device_peak=None,
        method=method,
    )


@dataclass(frozen=True)
class RunMemory(Record):
    """result.json's `memory`: the training worker's peak resident set over the whole run, and an idle worker's
    (the same process before it imported its framework)."""

    peak_rss: int
    baseline_rss: int
    method: str
    rss_after_import: int | None = None
    device_peak: int | None = None


def of_extra_info(extra_info: Mapping[str, Any]) -> MemoryFigures | None:
    """An entry's memory figures, if its `extra_info` has them (older files do not)."""
    data = extra_info.get("memory")
    if not isinstance(data, dict) or "peak_rss" not in data:
        return None
    try:
        return MemoryFigures.from_json(data)
    except (RecordError, TypeError, ValueError):
        return None


def mib(n: int | float | None) -> str:
    """Bytes as MiB for tables ("-" for None)."""
    return "-" if n is None else f"{n / MIB:,.0f} MiB"
