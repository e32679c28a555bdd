"""The record of one anatomy, and how profiler events become categories that add up to the measured call."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cvae_bench.bench.anatomy.categories import CATEGORIES, OVERHEAD, categorize
from cvae_bench.bench.timing import Timing
from cvae_bench.core.records import Record


@dataclass(frozen=True)
class OpTime(Record):
    """One op (or HLO thunk, or ONNX node) as the profiler saw it: seconds per call, summed over its runs."""

    name: str
    category: str
    seconds: float


@dataclass(frozen=True)
class Anatomy(Record):
    """Where one call (a training step, or a decoder call at one batch) spends its time.

    Attributes:
        workload: "train_step" or "decode"; batch: images per call.
        framework: whose profiler ("torch", "xla", "tensorflow", "onnxruntime"); profiler: what was used.
        calls: calls profiled; measured_s: the median call timed without the profiler (same worker), whose
            rounds are `timing`.
        profiled_s: the mean call under the profiler (the wall time the categories add up to).
        categories: seconds per call of each category, from the profiler's own events.
        remainder_s: profiled_s − Σ categories: time the profiler saw no event for (Python between ops,
            the profiler's own cost); stated, never spread over the categories.
        top: the costliest ops (per call), for the reader who wants to check a category.
        note: what this profiler can and cannot tell on this machine.
    """

    workload: str
    batch: int
    framework: str
    profiler: str
    calls: int
    measured_s: float
    profiled_s: float
    categories: dict[str, float] = field(default_factory=dict)
    remainder_s: float = 0.0
    top: list[OpTime] = field(default_factory=list)
    note: str = ""
    timing: Timing | None = None

    @property
    def explained_s(self) -> float:
        """Seconds per call the profiler's events account for."""
        return sum(self.categories.values())


def timed_calls(call: Callable[[], None], calls: int, sync: Callable[[], None] | None = None) -> float:
    """Seconds for `calls` calls of `call` and the `sync` that waits for them: the wall time a profile covers."""
    t0 = time.perf_counter()
    for _ in range(calls):
        call()
    if sync is not None:
        sync()
    return time.perf_counter() - t0


def op_times(
    framework: str, events: Iterable[tuple[str, float]], calls: int, known: Mapping[str, str] | None = None
) -> list[OpTime]:
    """(op name, seconds) pairs summed per name, per call, categorised, costliest first.

    `known` gives the category of ops whose compiled code says what they compute (XLA's HLO); the rest
    are categorised by name.
    """
    totals: dict[str, float] = {}
    for name, seconds in events:
        totals[name] = totals.get(name, 0.0) + seconds
    known = known or {}
    ops = [OpTime(n, known.get(n) or categorize(framework, n), s / calls) for n, s in totals.items()]
    return sorted(ops, key=lambda o: -o.seconds)


def build_anatomy(
    *,
    workload: str,
    batch: int,
    framework: str,
    profiler: str,
    calls: int,
    measured_s: float,
    profiled_s: float,
    ops: list[OpTime],
    extra: dict[str, float] | None = None,
    note: str = "",
    top: int = 12,
    timing: Timing | None = None,
) -> Anatomy:
    """An anatomy whose categories are the ops' sums (plus `extra` seconds per call by category, e.g. runtime
    time between kernels) and whose remainder is what they leave of `profiled_s` (negative: overlap)."""
    cats = {c: 0.0 for c in CATEGORIES}
    for op in ops:
        cats[op.category] += op.seconds
    for c, s in (extra or {}).items():
        cats[c] += s
    cats = {c: s for c, s in cats.items() if s > 0 or c == OVERHEAD}
    return Anatomy(
        workload=workload,
        batch=batch,
        framework=framework,
        profiler=profiler,
        calls=calls,
        measured_s=measured_s,
        profiled_s=profiled_s,
        categories=cats,
        remainder_s=profiled_s - sum(cats.values()),
        top=ops[:top],
        note=note,
        timing=timing,
    )


# -- intervals: profilers whose events overlap (threads, nested spans) ---------------------------------------
def union_length(spans: Iterable[tuple[float, float]]) -> float:
    """Total length covered by (start, end) spans, overlaps counted once."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(spans):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


@dataclass(frozen=True)
class Profiled:
    """What an adapter's `profile` returns: the wall time per call under the profiler, the ops, and the
    runtime time between them (by category), with what the profiler could and could not see."""

    profiler: str
    framework: str
    wall_s: float
    ops: list[OpTime]
    extra: dict[str, float] = field(default_factory=dict)
    note: str = ""


def from_spans(
    framework: str,
    kernels: list[tuple[str, float, float]],
    runtime: list[tuple[float, float]],
    calls: int,
    known: Mapping[str, str] | None = None,
) -> tuple[list[OpTime], dict[str, float]]:
    """Ops and runtime overhead from timed spans that may overlap (kernels on several threads).

    Args:
        kernels: (op name, start s, end s) of each kernel or thunk.
        runtime: (start, end) of the runtime's own spans (dispatch, executor, session run).
        calls: calls the spans cover.
        known: categories of ops by what they compute, over their names' patterns (see `op_times`).

    Returns:
        The ops, each scaled so that together they fill the time when any kernel ran (kernels that ran
        at once share it pro rata), and {overhead: time a runtime span but no kernel was active}, per call.
    """
    busy = union_length((s, e) for _, s, e in kernels)
    total = sum(e - s for _, s, e in kernels)
    scale = busy / total if total > busy > 0 else 1.0
    ops = op_times(framework, ((n, (e - s) * scale) for n, s, e in kernels), calls, known)
    everything = union_length([*((s, e) for _, s, e in kernels), *runtime])
    return ops, {OVERHEAD: (everything - busy) / calls}
