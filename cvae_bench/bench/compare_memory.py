"""The memory side of the regression gate: each entry's peak resident set from BASE to NEW, and its verdict.

Reads the same files as `bench.compare` — an entry's `extra_info["memory"]` in bench.json, a run's top-level
`memory` in result.json and comparison.json — and gives NEW / BASE of the peak for every entry in both. A
peak is far steadier than a time (the same allocations happen in every process), so the ratio itself is the
estimate; its uncertainty is the range over worker processes that bench.json records (`peak_rss_interval`).
An entry regresses when its peak grew by more than `fail_above` and, where both sides have a range, NEW's
lowest process is above BASE's highest (the growth is not process-to-process variation). Files without
memory figures (older ones, pytest-benchmark's own) give no memory rows and never fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.core.memory import MIB, of_extra_info
from cvae_bench.core.records import Record
from cvae_bench.runtime.files import read_json


@dataclass(frozen=True)
class MemorySample(Record):
    """One entry's peak resident set (bytes), with its range over worker processes (None: one process)."""

    name: str
    peak_rss: int
    interval: tuple[int, int] | None = None


@dataclass(frozen=True)
class MemoryChange(Record):
    """One entry's peak from BASE to NEW: the ratio (above 1: more memory) and whether it is a regression."""

    name: str
    base_rss: int
    new_rss: int
    ratio: float
    separated: bool | None  # the two ranges do not overlap (None: a side has no range)
    regression: bool

    @property
    def verdict(self) -> str:
        """'more', 'less' or 'same' (within 1 %: allocators round to pages and arenas)."""
        if self.ratio > 1.01:
            return "more"
        if self.ratio < 0.99:
            return "less"
        return "same"


def _read(path: Path) -> Any:
    try:
        return read_json(path)
    except CvaeBenchError:
        return None  # the time side of the gate reports an unreadable file


def _run_key(run: dict[str, Any]) -> str:
    # The same names as the time side's run entries (`bench.compare._run_samples`).
    return f"peak-rss[{run.get('backend')}-{run.get('mode')}-{run.get('device')}]"


def _from_doc(doc: Any, left_out: list[str]) -> list[MemorySample]:
    """The memory samples of one document; the name of each entry whose memory figures are there but cannot
    be read goes to `left_out` (said beside the table, never silently dropped)."""
    if not isinstance(doc, dict):
        return []
    out = []
    if "benchmarks" in doc:
        for e in doc["benchmarks"] if isinstance(doc["benchmarks"], list) else []:
            extra = (e.get("extra_info") if isinstance(e, dict) else None) or {}
            if not isinstance(extra, dict):
                continue
            name = str(e.get("name") or e.get("fullname"))
            figures = of_extra_info(extra)
            if figures is not None:
                out.append(MemorySample(name, figures.peak_rss, figures.peak_rss_interval))
            elif "memory" in extra:
                left_out.append(name)
        return out
    runs = doc["runs"] if "runs" in doc and "rows" in doc else [doc] if "backend" in doc else []
    by_key: dict[str, list[int]] = {}
    for r in runs if isinstance(runs, list) else []:
        if not isinstance(r, dict) or "memory" not in r:
            continue
        memory = r.get("memory")
        peak = memory.get("peak_rss") if isinstance(memory, dict) else None
        if isinstance(peak, int) and not isinstance(peak, bool) and peak > 0:
            by_key.setdefault(_run_key(r), []).append(peak)
        elif memory is not None:
            left_out.append(_run_key(r))
    for key, peaks in by_key.items():
        peaks.sort()
        interval = (peaks[0], peaks[-1]) if len(peaks) >= 2 else None
        out.append(MemorySample(key, peaks[len(peaks) // 2], interval))
    return out


def read_memory(path: str | Path, left_out: list[str] | None = None) -> dict[str, MemorySample]:
    """Every entry's memory in a result file or folder (the files `bench.compare.read_samples` reads), by name;
    the names of entries with unreadable memory figures are added to `left_out`."""
    unread: list[str] = [] if left_out is None else left_out
    p = Path(path)
    docs: list[Any] = []
    if p.is_dir():
        for name in ("bench.json", "comparison.json"):
            if (p / name).is_file():
                docs = [_read(p / name)]
                break
        else:
            docs = [_read(f) for f in sorted(p.rglob("result.json"))]
            if not docs:
                saved = sorted(p.rglob("*.json"), key=lambda f: f.stat().st_mtime)
                docs = [d for d in (_read(f) for f in reversed(saved)) if isinstance(d, dict) and "benchmarks" in d][:1]
    else:
        docs = [_read(p)]
    samples: list[MemorySample] = []
    if len(docs) > 1:  # a folder of result.json files: one run each, pooled like comparison.json's runs
        samples = _from_doc({"rows": [], "runs": [d for d in docs if isinstance(d, dict)]}, unread)
    elif docs:
        samples = _from_doc(docs[0], unread)
    return {s.name: s for s in samples}


def memory_change(base: MemorySample, new: MemorySample, fail_above: float | None) -> MemoryChange:
    """NEW / BASE of one entry's peak; a regression only with a threshold (see the module docstring)."""
    ratio = new.peak_rss / base.peak_rss if base.peak_rss > 0 else 1.0
    separated = None
    if base.interval is not None and new.interval is not None:
        separated = new.interval[0] > base.interval[1] or new.interval[1] < base.interval[0]
    regression = fail_above is not None and ratio > 1 + fail_above and separated is not False
    return MemoryChange(new.name, base.peak_rss, new.peak_rss, ratio, separated, regression)


@dataclass(frozen=True)
class MemoryGate(Record):
    """Every memory change of the entries in both files, and the threshold (None: shown, never failing)."""

    changes: list[MemoryChange]
    fail_above: float | None
    left_out: list[str] = field(default_factory=list)  # "NAME (BASE)": memory figures there but unreadable

    @property
    def failed(self) -> bool:
        """Whether any entry's peak grew by more than `fail_above`."""
        return any(c.regression for c in self.changes)

    def by_name(self) -> dict[str, MemoryChange]:
        """The changes by entry name."""
        return {c.name: c for c in self.changes}


def compare_memory(base: str | Path, new: str | Path, fail_above: float | None = None) -> MemoryGate:
    """The memory change of every entry with memory figures on both sides."""
    unread_base: list[str] = []
    unread_new: list[str] = []
    a, b = read_memory(base, unread_base), read_memory(new, unread_new)
    left_out = [f"{n} (BASE)" for n in unread_base] + [f"{n} (NEW)" for n in unread_new]
    return MemoryGate([memory_change(a[n], b[n], fail_above) for n in b if n in a], fail_above, left_out)


def _mib(n: int) -> str:
    return f"{n / MIB:,.0f} MiB"


def _run_twin(name: str) -> str:
    """A run entry's memory name: "time-to-target[torch-eager-cpu]" → "peak-rss[torch-eager-cpu]"."""
    return "peak-rss" + name[name.index("[") :] if "[" in name else name


def memory_cell(c: MemoryChange | None) -> str:
    """The gate table's memory cell of one entry ("-": no figures on one side)."""
    if c is None:
        return "-"
    text = f"{_mib(c.base_rss)} → {_mib(c.new_rss)} ({(c.ratio - 1) * 100:+.1f} %)"
    return text + (" — MEMORY REGRESSION" if c.regression else "")


def with_memory(
    headers: Sequence[str], rows: Sequence[Sequence[str]], names: Sequence[str], gate: MemoryGate
) -> tuple[list[str], list[list[str]]]:
    """The time gate's table with a "peak memory" column beside the change in time (entry names in `names`);
    entries that only the memory side has (a run's `peak-rss[...]`) get rows of their own. Unchanged when
    neither file has memory figures."""
    if not gate.changes:
        return list(headers), [list(r) for r in rows]
    found = gate.by_name()
    at = list(headers).index("verdict") + 1 if "verdict" in headers else len(headers)
    out_headers = [*headers[:at], "peak memory", *headers[at:]]
    shown: set[str] = set()
    out = []
    for r, n in zip(rows, names, strict=True):
        c = found.get(n) or found.get(_run_twin(n))
        if c is not None:
            shown.add(c.name)
        out.append([*r[:at], memory_cell(c), *r[at:]])
    for c in gate.changes:
        if c.name not in shown:
            blank = ["-"] * len(headers)
            blank[0] = c.name
            out.append([*blank[:at], memory_cell(c), *blank[at:]])
    return out_headers, out


def memory_summary(gate: MemoryGate) -> str | None:
    """The closing line of the memory side (None: no memory figures on both sides, none left out)."""
    unread = f" ({len(gate.left_out)} left out, unreadable: {', '.join(gate.left_out)})" if gate.left_out else ""
    if not gate.changes:
        return f"memory: nothing compared{unread}" if unread else None
    return _summary(gate) + unread


def _summary(gate: MemoryGate) -> str:
    if gate.fail_above is None:
        return f"memory: {len(gate.changes)} entries compared (no --fail-above-memory: not gated)"
    bad = [c.name for c in gate.changes if c.regression]
    if bad:
        return f"FAILED: {len(bad)} peak-memory regression(s) above {gate.fail_above:.0%}: {', '.join(bad)}"
    return f"memory passed: no peak grew by more than {gate.fail_above:.0%} in {len(gate.changes)} entries"
