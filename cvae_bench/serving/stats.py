"""Latency statistics that say how sure they are: percentiles with their query counts, CIs, histograms."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cvae_bench.core.records import Record

#: The percentiles every latency figure reports.
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
#: A percentile p is supported when at least this many queries lie beyond it: n·(1 − p/100) ≥ 10, so p99
#: needs 1,000 queries and p99.9 10,000 (MLPerf asks more still for its submissions; this is the floor below
#: which the figure is one or two outliers).
TAIL_QUERIES = 10
#: Histogram bins per decade, from 1 µs to 100 s.
BINS_PER_DECADE = 20
_LOW_DECADE, _HIGH_DECADE = -6, 2


def queries_needed(percentile: float, beyond: int = TAIL_QUERIES) -> int:
    """The query count that puts `beyond` queries above `percentile` (1,000 for p99)."""
    return math.ceil(round(beyond / (1.0 - percentile / 100.0), 6))


@dataclass(frozen=True)
class Percentile(Record):
    """One percentile of a latency sample and how far to trust it.

    Attributes:
        p: the percentile (99.0).
        seconds: its value (the order statistic at rank ⌈n·p/100⌉, as MLPerf LoadGen reports it).
        ci_low_s, ci_high_s: a distribution-free 95 % confidence interval (order statistics at the binomial
            ranks); None where the sample is too small to bound it on that side.
        supported: whether n ≥ `queries_needed(p)`; an unsupported figure rests on a handful of queries.
    """

    p: float
    seconds: float
    ci_low_s: float | None
    ci_high_s: float | None
    supported: bool


@dataclass(frozen=True)
class Histogram(Record):
    """Query counts in log-spaced bins (`BINS_PER_DECADE` per decade): `counts[i]` in [edges[i], edges[i+1])."""

    edges_s: list[float]
    counts: list[int]


@dataclass(frozen=True)
class LatencyStats(Record):
    """A latency sample summarised: count, mean, min/max, percentiles with CIs, and its histogram."""

    queries: int
    mean_s: float
    min_s: float
    max_s: float
    percentiles: list[Percentile]
    histogram: Histogram

    def at(self, p: float) -> Percentile:
        """The percentile `p` (one of `PERCENTILES`).

        Raises:
            KeyError: `p` was not computed.
        """
        for q in self.percentiles:
            if q.p == p:
                return q
        raise KeyError(f"percentile {p} not computed; have {[q.p for q in self.percentiles]}")


def order_statistic(sorted_s: np.ndarray, p: float) -> float:
    """The `p`-th percentile as LoadGen computes it: the sample at rank ⌈n·p/100⌉ (1-based)."""
    n = len(sorted_s)
    rank = min(n, max(1, math.ceil(n * p / 100.0 - 1e-9)))
    return float(sorted_s[rank - 1])


def quantile_ci(sorted_s: np.ndarray, p: float, z: float = 1.959964) -> tuple[float | None, float | None]:
    """A 95 % confidence interval of the `p`-th percentile from order statistics (no resampling).

    The number of queries below the true percentile is Binomial(n, p/100); the ranks at its 2.5 % and 97.5 %
    points (normal approximation, continuity-corrected) bound it. This is the interval a percentile
    bootstrap converges to, without the cost of resampling 100,000 latencies per figure. A rank outside the
    sample means the sample cannot bound that side: None.
    """
    n = len(sorted_s)
    q = p / 100.0
    half = z * math.sqrt(n * q * (1 - q))
    lo = math.floor(n * q - half - 0.5)
    hi = math.ceil(n * q + half + 0.5)
    low = float(sorted_s[lo - 1]) if lo >= 1 else None
    high = float(sorted_s[hi - 1]) if hi <= n else None
    return low, high


def histogram(latencies_s: np.ndarray) -> Histogram:
    """Log-spaced histogram of `latencies_s`, trimmed to the bins from the first to the last non-empty one."""
    edges = np.logspace(_LOW_DECADE, _HIGH_DECADE, (_HIGH_DECADE - _LOW_DECADE) * BINS_PER_DECADE + 1)
    clipped = np.clip(latencies_s, edges[0], edges[-1] * (1 - 1e-12))
    counts, _ = np.histogram(clipped, bins=edges)
    nz = np.flatnonzero(counts)
    if nz.size == 0:
        return Histogram(edges_s=[], counts=[])
    first, last = int(nz[0]), int(nz[-1])
    return Histogram(
        edges_s=[float(e) for e in edges[first : last + 2]], counts=[int(c) for c in counts[first : last + 1]]
    )


def summarize(latencies_s: Sequence[float] | np.ndarray, percentiles: Sequence[float] = PERCENTILES) -> LatencyStats:
    """The `LatencyStats` of a sample of per-query latencies in seconds.

    Raises:
        ValueError: an empty sample, or a negative or non-finite latency.
    """
    arr = np.sort(np.asarray(latencies_s, dtype=np.float64))
    if arr.size == 0:
        raise ValueError("latencies: expected at least one query; received none")
    if not np.all(np.isfinite(arr)) or arr[0] < 0:
        raise ValueError("latencies: expected finite, non-negative seconds")
    pcts = []
    for p in percentiles:
        low, high = quantile_ci(arr, p)
        pcts.append(
            Percentile(
                p=float(p),
                seconds=order_statistic(arr, p),
                ci_low_s=low,
                ci_high_s=high,
                supported=arr.size >= queries_needed(p),
            )
        )
    return LatencyStats(
        queries=int(arr.size),
        mean_s=float(arr.mean()),
        min_s=float(arr[0]),
        max_s=float(arr[-1]),
        percentiles=pcts,
        histogram=histogram(arr),
    )
