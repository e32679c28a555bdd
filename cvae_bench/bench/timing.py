"""The timing loop every measurement runs inside its worker, and the statistics reported on its rounds."""

from __future__ import annotations

import math
import statistics
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cvae_bench.core.records import Record
from cvae_bench.runtime.pause import IdleRecord

#: Statistics reported per measurement; the names and definitions are pytest-benchmark's, so that a
#: `cvae-bench bench` JSON file is read by `pytest-benchmark compare` like one of its own.
STAT_FIELDS = (
    "min",
    "max",
    "mean",
    "stddev",
    "rounds",
    "median",
    "iqr",
    "q1",
    "q3",
    "iqr_outliers",
    "stddev_outliers",
    "outliers",
    "ld15iqr",
    "hd15iqr",
    "ops",
    "total",
)


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """(Q1, Q3) by pytest-benchmark's rule: Wikipedia's method 3 for odd counts, method 2 for even."""
    data = sorted(values)
    n = len(data)
    if n == 0:
        raise ValueError("quartiles of no values")
    if n == 1:
        return data[0], data[0]
    if n % 2:
        k, q = n // 4, n % 4
        if q == 1:
            return 0.25 * data[k - 1] + 0.75 * data[k], 0.75 * data[3 * k] + 0.25 * data[3 * k + 1]
        return 0.75 * data[k] + 0.25 * data[k + 1], 0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2]
    return statistics.median(data[: n // 2]), statistics.median(data[n // 2 :])


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Statistics of per-call times (seconds), with pytest-benchmark's field names and definitions.

    Raises:
        ValueError: no values.
    """
    data = list(values)
    if not data:
        raise ValueError("no timings to summarise")
    srt = sorted(data)
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if len(data) > 1 else 0.0
    q1, q3 = quartiles(data)
    iqr = q3 - q1
    lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_out = sum(1 for v in data if v < lo or v > hi)
    sd_out = sum(1 for v in data if v < mean - stddev or v > mean + stddev)
    if len(data) == 1:
        ld, hd = data[0], data[0]
    else:
        ld = srt[bisect_left(srt, lo)]
        pos = bisect_right(srt, hi)
        hd = srt[-1] if pos == len(srt) else srt[pos]
    total = sum(data)
    return {
        "min": srt[0],
        "max": srt[-1],
        "mean": mean,
        "stddev": stddev,
        "rounds": len(data),
        "median": statistics.median(data),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_out,
        "stddev_outliers": sd_out,
        "outliers": f"{sd_out};{iqr_out}",
        "ld15iqr": ld,
        "hd15iqr": hd,
        "ops": len(data) / total if total else 0.0,
        "total": total,
    }


@dataclass(frozen=True)
class Timing(Record):
    """The rounds of one measurement, as timed in the process that did the work.

    Attributes:
        round_s: seconds of each timed round.
        iterations: calls per round.
        warmup: untimed calls before calibration.
        warmup_s: seconds of warm-up and calibration together.
        sweeps: for interleaved rounds, the sweep each round belongs to (rounds of two entries with the same
            sweep ran one after the other, and pair for ratios); None when timed alone.
        contended: for each round, whether the contention sentinel saw foreign load during it (None: not
            watched).
        epochs: for interleaved rounds, the epoch (set of fresh worker processes) each round ran in; intervals
            are taken across epochs (`core.replication`). None when timed alone.
        idle: what the entry's workers did while stopped between their rounds (None: not watched).
    """

    round_s: list[float]
    iterations: int
    warmup: int = 0
    warmup_s: float | None = None
    sweeps: list[int] | None = None
    contended: list[bool] | None = None
    epochs: list[int] | None = None
    idle: IdleRecord | None = None

    def per_call(self) -> list[float]:
        """Seconds per call of each round."""
        return per_call(self.round_s, self.iterations)

    def median_call(self) -> float:
        """The median seconds per call."""
        return statistics.median(self.per_call())


def per_call(round_s: Sequence[float], iterations: int) -> list[float]:
    """Seconds per call of each round (a round times `iterations` calls)."""
    return [t / iterations for t in round_s]


def _noop() -> None:
    pass


def time_rounds(
    fn: Callable[[], object],
    *,
    rounds: int,
    min_time: float,
    warmup: int = 0,
    sync: Callable[[], object] = _noop,
    max_iterations: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time `fn` in rounds, the way pytest-benchmark does, but here, in the process that runs it.

    Warm-up calls first (not timed into the result). Then calibration: the number of calls per round
    (`iterations`) grows until one round lasts at least `min_time` seconds; the calibration rounds are
    also excluded. Then `rounds` rounds of `iterations` calls, each ended by `sync()` (the device
    synchronisation, so that asynchronous work queued by the calls is inside the round that queued it).

    Args:
        fn: one call of what is measured.
        rounds: timed rounds (≥ 1).
        min_time: seconds a round must last at least (sets `iterations`).
        warmup: untimed calls before calibration.
        sync: waits for queued device work; called after the warm-up and at the end of every round.
        max_iterations: cap on calls per round (e.g. the batches left in an epoch).
        clock: the timer (tests pass a fake one).

    Returns:
        The rounds' seconds, the calls per round, the warm-up calls and the warm-up's seconds.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    iterations, warmup_s = calibrate(
        fn, min_time=min_time, warmup=warmup, sync=sync, max_iterations=max_iterations, clock=clock
    )
    round_s = [time_round(fn, iterations, sync, clock) for _ in range(rounds)]
    return Timing(round_s=round_s, iterations=iterations, warmup=warmup, warmup_s=warmup_s)


def calibrate(
    fn: Callable[[], object],
    *,
    min_time: float,
    warmup: int = 0,
    sync: Callable[[], object] = _noop,
    max_iterations: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[int, float]:
    """Warm up, then find the calls per round that make a round last at least `min_time` seconds.

    Returns:
        (calls per round, seconds of warm-up and calibration together).
    """
    t_warm = clock()
    for _ in range(warmup):
        fn()
    sync()
    iterations = 1
    while True:
        dt = time_round(fn, iterations, sync, clock)
        if dt >= min_time or (max_iterations is not None and iterations >= max_iterations):
            break
        # Aim 20 % above min_time so that a slightly faster round still qualifies; at most ×10 per try.
        grow = min(10.0, 1.2 * min_time / dt) if dt > 0 else 10.0
        iterations = max(iterations + 1, math.ceil(iterations * grow))
        if max_iterations is not None:
            iterations = min(iterations, max_iterations)
    return iterations, clock() - t_warm


def time_round(
    fn: Callable[[], object],
    iterations: int,
    sync: Callable[[], object] = _noop,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds of one round: `iterations` calls, ended by `sync()`."""
    t0 = clock()
    for _ in range(iterations):
        fn()
    sync()
    return clock() - t0
