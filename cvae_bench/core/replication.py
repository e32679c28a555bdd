"""Intervals that sample every level where timings vary: rounds within a worker process, and the processes.

Why. Two workers of one backend differ by a few per cent for as long as they live (memory layout, thread
placement, what the allocator and the JIT happened to do): an interval built from one worker's rounds sees
none of that, and a repeated bench lands outside it (measured: torch/jax ratios from 1.43× to 2.82× in five
runs that each claimed ±5 %). So a bench runs in *epochs* — each epoch starts fresh worker processes for
every contestant, times interleaved rounds, and ends them — and every interval here is taken across epochs,
the level with the most variance, as Kalibera & Jones ("Rigorous Benchmarking in Reasonable Time", ISMM
2013) prescribe: each epoch is summarised by its median (of per-call times, or of per-sweep paired ratios),
the summaries are compared on the log scale, and the interval is Student's t across epochs. The rounds
inside an epoch only make each epoch's summary precise; they add no degrees of freedom.

Everything is pure Python and reads from what bench.json keeps per round (`data`, `sweeps`, `epochs`), so a
report made later gives the same intervals. `VarianceComponents` measures the two levels' variances (T₁²
within, T₂² between, with Kalibera & Jones's bias correction) and says how many rounds per epoch and how many
epochs a precision needs at the measured costs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from cvae_bench.core.records import Record
from cvae_bench.core.stats import LEVEL, Interval

#: Student's t 97.5 % quantiles for 1…30 degrees of freedom (two-sided 95 %); beyond 30 the Cornish–Fisher
#: expansion below is within 0.001 of the table's values.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip

#: Method names of the intervals built here (bench.json's `ci_method`).
ACROSS_PROCESSES = "t across worker processes"
ONE_PROCESS = "one worker process: process-to-process variation not sampled"


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided `level` quantile of Student's t with `df` degrees of freedom.

    Raises:
        ValueError: df < 1, or a level other than 0.95 (the only one the harness uses and the table holds).
    """
    if df < 1:
        raise ValueError(f"t needs at least 1 degree of freedom, got {df}")
    if abs(level - 0.95) > 1e-12:
        raise ValueError(f"only the 95 % level is tabulated, got {level}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def by_epoch(values: Sequence[float], epochs: Sequence[int]) -> dict[int, list[float]]:
    """`values` grouped by the epoch each was measured in (insertion order of first appearance)."""
    if len(values) != len(epochs):
        raise ValueError(f"{len(values)} values but {len(epochs)} epoch labels")
    out: dict[int, list[float]] = {}
    for v, e in zip(values, epochs, strict=True):
        out.setdefault(e, []).append(float(v))
    return out


def across_processes(summaries: Sequence[float], level: float = LEVEL) -> Interval:
    """The geometric mean of per-epoch summaries (positive: times or ratios) with its t-interval on the log
    scale; bounds None with fewer than two epochs.

    Raises:
        ValueError: no summaries, or a non-positive one.
    """
    if not summaries:
        raise ValueError("no epochs to summarise")
    if min(summaries) <= 0:
        raise ValueError("per-epoch summaries must be positive")
    logs = [math.log(s) for s in summaries]
    centre = statistics.fmean(logs)
    n = len(logs)
    if n < 2:
        return Interval(math.exp(centre), None, None, ACROSS_PROCESSES, n, level)
    half = t_quantile(n - 1, level) * statistics.stdev(logs) / math.sqrt(n)
    return Interval(math.exp(centre), math.exp(centre - half), math.exp(centre + half), ACROSS_PROCESSES, n, level)


def replicated_median(values: Sequence[float], epochs: Sequence[int], level: float = LEVEL) -> Interval:
    """The typical per-call time across epochs: each epoch's median, then `across_processes`."""
    return across_processes([statistics.median(v) for v in by_epoch(values, epochs).values()], level)


def epoch_ratios(
    base: Sequence[float], other: Sequence[float], sweeps: Sequence[int], epochs: Sequence[int]
) -> list[float]:
    """Each epoch's paired ratio other / base: the median of its per-sweep ratios (rounds of one sweep ran back
    to back, so drift within the epoch cancels in each ratio)."""
    if not (len(base) == len(other) == len(sweeps) == len(epochs)) or not base:
        raise ValueError("paired samples need equal, non-zero lengths with a sweep and an epoch for each round")
    if min(base) <= 0 or min(other) <= 0:
        raise ValueError("times must be positive")
    ratios = [b / a for a, b in zip(base, other, strict=True)]
    return [statistics.median(r) for r in by_epoch(ratios, epochs).values()]


def replicated_paired_ratio(
    base: Sequence[float], other: Sequence[float], sweeps: Sequence[int], epochs: Sequence[int], level: float = LEVEL
) -> Interval:
    """other / base across epochs: each epoch's paired ratio, then `across_processes`."""
    return across_processes(epoch_ratios(base, other, sweeps, epochs), level)


def replicated_unpaired_ratio(
    base: Sequence[float],
    base_epochs: Sequence[int],
    other: Sequence[float],
    other_epochs: Sequence[int],
    level: float = LEVEL,
) -> Interval:
    """other / base from two independent sets of epochs (e.g. two bench files): the ratio of the geometric
    means of the per-epoch medians, with Welch's t-interval on the log scale (bounds None below two epochs
    on either side)."""
    a = [math.log(statistics.median(v)) for v in by_epoch(base, base_epochs).values()]
    b = [math.log(statistics.median(v)) for v in by_epoch(other, other_epochs).values()]
    est = math.exp(statistics.fmean(b) - statistics.fmean(a))
    n = min(len(a), len(b))
    if n < 2:
        return Interval(est, None, None, ACROSS_PROCESSES, n, level)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(est, est, est, ACROSS_PROCESSES, n, level)
    # Welch–Satterthwaite degrees of freedom.
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile(max(1, math.floor(df)), level) * se
    return Interval(est, est * math.exp(-half), est * math.exp(half), ACROSS_PROCESSES, n, level)


@dataclass(frozen=True)
class VarianceComponents(Record):
    """The variance of log per-call times (or log paired ratios) at each level, and what it implies.

    Attributes:
        epochs: epochs measured; rounds: rounds per epoch (the smallest of them).
        within: T₁², the variance of one round around its epoch's mean.
        between: T₂², the variance of epoch means beyond what `within` explains (S₂² − S₁²/rounds, floored at
            0: Kalibera & Jones's unbiased estimator).
        round_s, epoch_s: the cost of one more round (a sweep) and of one more epoch (starting, warming up and
            ending its workers), in seconds.
        optimal_rounds: Kalibera & Jones's rounds per epoch for the least time to a given precision,
            √(epoch_s·T₁² / (round_s·T₂²)) (None when `between` is 0: then more rounds always pay).
    """

    epochs: int
    rounds: int
    within: float
    between: float
    round_s: float
    epoch_s: float
    optimal_rounds: float | None

    def epochs_for(self, rel_half_width: float, rounds: int | None = None, level: float = LEVEL) -> int:
        """Epochs for a 95 % interval of ±`rel_half_width` (log scale) with `rounds` rounds per epoch."""
        r = rounds or self.rounds
        var_epoch = self.between + self.within / r
        for n in range(2, 1000):
            if t_quantile(n - 1, level) * math.sqrt(var_epoch / n) <= rel_half_width:
                return n
        return 1000


def variance_components(
    values: Sequence[float], epochs: Sequence[int], round_s: float, epoch_s: float
) -> VarianceComponents | None:
    """The two levels' variances of log `values` (per-call times or per-sweep ratios), by `epochs`; None with
    fewer than two epochs or fewer than two rounds in one."""
    groups = [[math.log(v) for v in g] for g in by_epoch(values, epochs).values()]
    if len(groups) < 2 or min(len(g) for g in groups) < 2:
        return None
    rounds = min(len(g) for g in groups)
    s1 = statistics.fmean(statistics.variance(g) for g in groups)
    s2 = statistics.variance([statistics.fmean(g) for g in groups])
    between = max(0.0, s2 - s1 / rounds)
    optimal = math.sqrt(epoch_s * s1 / (round_s * between)) if between > 0 and round_s > 0 else None
    return VarianceComponents(len(groups), rounds, s1, between, round_s, epoch_s, optimal)
