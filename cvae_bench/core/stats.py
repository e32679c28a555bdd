"""Verdicts with their uncertainty: confidence intervals of medians and ratios, and the faster/slower/tie rule.

One module for every wing that compares timings (floor 0: pure Python and NumPy, no runner):

- The median's 95 % interval is the **order-statistic (sign-test) interval** [x_(j), x_(n+1−j)]: it assumes
  nothing about the distribution of round times (which is skewed, with a long right tail when the machine
  is busy), needs no resampling, and is exact for any n ≥ 6.
- A **paired** ratio (two entries measured in the same interleaved sweeps) is the median of the per-sweep
  ratios b_i / a_i, with the same order-statistic interval taken on those ratios: drift that hits both
  rounds of a sweep cancels in b_i / a_i, which is the point of interleaving.
- An **unpaired** ratio (two runs, or entries measured apart) is the ratio of the medians with a percentile
  bootstrap interval (resampling each sample independently, a fixed seed, so a file gives the same answer
  every time it is read). With summary statistics only (a pytest-benchmark file saved without its data),
  the median's half-width is estimated from the IQR as a box plot's notch does (1.57·IQR/√n, McGill,
  Tukey & Larsen 1978) and the two combined on the log scale.
- A verdict reads the interval against a tie band ±`tie`: `slower` when the ratio is significantly above 1
  and its estimate beyond 1 + tie, `faster` the mirror, `tie` when the interval lies inside the band or the
  difference is significant but within the band, `unsure` when the interval is too wide to say.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cvae_bench.core.records import Record

#: The confidence level of every interval.
LEVEL = 0.95
#: Default tie band: ratios within ±3 % read as a tie.
DEFAULT_TIE = 0.03
#: Bootstrap resamples of an unpaired ratio, and their seed.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240610

VERDICTS = ("faster", "slower", "tie", "unsure")


@dataclass(frozen=True)
class Interval(Record):
    """An estimate with its confidence interval.

    Attributes:
        estimate: the point estimate (a median, or a ratio).
        low, high: the interval's bounds (None: too few values for the level).
        method: "order-statistic", "paired order-statistic", "bootstrap", "iqr-notch" or "none".
        n: values (or pairs) it was computed from.
    """

    estimate: float
    low: float | None
    high: float | None
    method: str
    n: int
    level: float = LEVEL

    @property
    def known(self) -> bool:
        """Whether both bounds are known."""
        return self.low is not None and self.high is not None

    @property
    def rel_half_width(self) -> float | None:
        """Half the interval's width relative to the estimate (on the log scale for ratios: symmetric)."""
        if self.low is None or self.high is None or self.estimate <= 0 or self.low <= 0:
            return None
        return (math.log(self.high) - math.log(self.low)) / 2

    def contains(self, value: float) -> bool:
        """Whether `value` lies in the interval (False when the bounds are unknown)."""
        return self.low is not None and self.high is not None and self.low <= value <= self.high

    def cell(self, spec: str = ".3f", scale: float = 1.0) -> str:
        """'1.023 [0.998, 1.051]' (bounds '?' when unknown)."""
        est = format(self.estimate * scale, spec)
        if self.low is None or self.high is None:
            return f"{est} [?]"
        return f"{est} [{format(self.low * scale, spec)}, {format(self.high * scale, spec)}]"


def _median(values: Sequence[float]) -> float:
    x, n = sorted(values), len(values)
    return x[n // 2] if n % 2 else (x[n // 2 - 1] + x[n // 2]) / 2


def order_statistic_rank(n: int, level: float = LEVEL) -> int | None:
    """The largest j with P(j ≤ B ≤ n − j) ≥ level, B ~ Binomial(n, ½); None when no j qualifies (n < 6 at 95 %)."""
    best = None
    total = 2**n
    for j in range(1, n // 2 + 1):
        cover = sum(math.comb(n, k) for k in range(j, n - j + 1)) / total
        if cover < level:
            break
        best = j
    return best


def median_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The median of `values` with its order-statistic interval (bounds None below 6 values at 95 %).

    Raises:
        ValueError: no values.
    """
    if not values:
        raise ValueError("the median of no values")
    x, n = sorted(float(v) for v in values), len(values)
    j = order_statistic_rank(n, level) if n <= 1000 else _normal_rank(n, level)
    if j is None:
        return Interval(_median(x), None, None, "order-statistic", n, level)
    return Interval(_median(x), x[j - 1], x[n - j], "order-statistic", n, level)


def _normal_rank(n: int, level: float) -> int:
    z = _z(level)
    return max(1, math.floor(n / 2 - z * math.sqrt(n) / 2))


def _z(level: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


def paired_ratio(base: Sequence[float], other: Sequence[float], level: float = LEVEL) -> Interval:
    """other / base from paired rounds: the median of the per-pair ratios with its order-statistic interval.

    Raises:
        ValueError: the samples differ in length, are empty, or hold a non-positive time.
    """
    if len(base) != len(other) or not base:
        raise ValueError(f"paired samples need equal, non-zero lengths; got {len(base)} and {len(other)}")
    if min(base) <= 0 or min(other) <= 0:
        raise ValueError("times must be positive")
    ratios = [b / a for a, b in zip(base, other, strict=True)]
    ci = median_interval(ratios, level)
    return Interval(ci.estimate, ci.low, ci.high, "paired order-statistic", ci.n, level)


def unpaired_ratio(
    base: Sequence[float],
    other: Sequence[float],
    level: float = LEVEL,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """median(other) / median(base) with a percentile-bootstrap interval (each sample resampled on its own).

    Bounds are None when either sample has fewer than 3 values (a bootstrap of 2 values is not an interval).

    Raises:
        ValueError: an empty sample or a non-positive time.
    """
    import numpy as np

    if not base or not other:
        raise ValueError("a ratio of medians needs two non-empty samples")
    if min(base) <= 0 or min(other) <= 0:
        raise ValueError("times must be positive")
    est = float(_median(other) / _median(base))
    n = min(len(base), len(other))
    if n < 3:
        return Interval(est, None, None, "bootstrap", n, level)
    rng = np.random.default_rng(seed)
    a, b = np.asarray(base, dtype=float), np.asarray(other, dtype=float)
    ma = np.median(a[rng.integers(0, len(a), (resamples, len(a)))], axis=1)
    mb = np.median(b[rng.integers(0, len(b), (resamples, len(b)))], axis=1)
    r = mb / ma
    lo, hi = np.quantile(r, [(1 - level) / 2, (1 + level) / 2])
    return Interval(est, float(lo), float(hi), "bootstrap", n, level)


def notch_ratio(
    base_median: float, base_iqr: float, base_n: int, other_median: float, other_iqr: float, other_n: int
) -> Interval:
    """other / base from summary statistics alone (median, IQR, rounds), for files saved without their data.

    Each median's standard error is taken from the box-plot notch, 1.57·IQR/√n ≈ 1.96 standard errors, and
    the two are combined on the log scale.
    """
    est = other_median / base_median
    if min(base_n, other_n) < 3 or base_median <= 0 or other_median <= 0:
        return Interval(est, None, None, "iqr-notch", min(base_n, other_n))
    se = math.hypot(
        1.57 * base_iqr / math.sqrt(base_n) / 1.96 / base_median,
        1.57 * other_iqr / math.sqrt(other_n) / 1.96 / other_median,
    )
    z = _z(LEVEL)
    return Interval(est, est * math.exp(-z * se), est * math.exp(z * se), "iqr-notch", min(base_n, other_n))


def verdict(ratio: Interval, tie: float = DEFAULT_TIE) -> str:
    """Read a ratio (this / reference; above 1 = slower) against the tie band ±`tie`.

    Returns:
        "slower": the interval lies above 1 and the estimate beyond 1 + tie; "faster": the mirror;
        "tie": the interval lies within [1 − tie, 1 + tie], or excludes 1 with the estimate inside the band
        (a real but immaterial difference); "unsure": the interval is unknown, or includes 1 and reaches
        beyond the band.
    """
    lo, hi, est = ratio.low, ratio.high, ratio.estimate
    if lo is None or hi is None:
        return "unsure"
    if lo > 1 and est > 1 + tie:
        return "slower"
    if hi < 1 and est < 1 - tie:
        return "faster"
    if lo >= 1 - tie and hi <= 1 + tie:
        return "tie"
    if (lo > 1 or hi < 1) and 1 - tie <= est <= 1 + tie:
        return "tie"
    return "unsure"


def verdict_cell(ratio: Interval, tie: float = DEFAULT_TIE) -> str:
    """'1.12× [1.08, 1.15] slower' — the ratio, its interval and the verdict, for a table."""
    if ratio.low is None or ratio.high is None:
        return f"{ratio.estimate:.2f}× [?] {verdict(ratio, tie)}"
    return f"{ratio.estimate:.2f}× [{ratio.low:.2f}, {ratio.high:.2f}] {verdict(ratio, tie)}"
