"""Step detection in a series of results across commits: where did a benchmark get slower or faster?

The test, in the spirit of asv's (which fits a piecewise-constant model by L1 and penalises every step),
kept small enough to state in full:

1. Binary segmentation. The best single split of a series is the one that minimises the sum of absolute
   deviations of each side from its own median (an L1 fit, robust to one-off outliers).
2. A split is a step only when the change of the medians `Δ = m_after − m_before` is
   - large enough to matter: |Δ| ≥ `min_change` × m_before (5 % by default), and
   - larger than the noise: |Δ| ≥ `z` · σ · √(1/n_before + 1/n_after) (z = 3 by default), where σ is the
     larger of (a) the robust spread of the series about its segment medians (1.4826 × the median absolute
     residual, over both sides) and (b) the median of the points' own spreads (a benchmark's IQR / 1.349),
     so that two lone points, each a median of many rounds, are judged by their rounds' spread.
3. A side of one point counts only when that point has its own spread (a median of rounds, not one
   number), since a lone noisy result cannot be told from a step.
4. Each side of an accepted step is searched again, so a series may have several steps.

With 20 points of 2 % noise the threshold is about 3 % (and the 5 % floor holds); a 10 % slowdown stands
far above both (tests/test_report_steps.py checks both on synthetic series, over many seeds).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from cvae_bench.core.records import Record

#: Smallest relative change reported as a step.
MIN_CHANGE = 0.05
#: How many σ of noise a step must exceed.
Z = 3.0
#: Converts a median absolute deviation (or IQR / 1.349) into a normal σ.
MAD_SIGMA = 1.4826
IQR_SIGMA = 1.349


@dataclass(frozen=True)
class Step(Record):
    """A detected step: the series moved from `before` to `after` at point `index` (the first point after).

    `change` is relative (after / before − 1): positive means the value went up (slower, for times).
    """

    index: int
    before: float
    after: float
    change: float
    threshold: float


def _l1_cost(values: Sequence[float]) -> float:
    m = statistics.median(values)
    return sum(abs(v - m) for v in values)


def _best_split(values: Sequence[float], min_size: int) -> int | None:
    best, where = math.inf, None
    for k in range(min_size, len(values) - min_size + 1):
        cost = _l1_cost(values[:k]) + _l1_cost(values[k:])
        if cost < best - 1e-15:
            best, where = cost, k
    return where


def _sigma(left: Sequence[float], right: Sequence[float], own: Sequence[float]) -> float:
    ml, mr = statistics.median(left), statistics.median(right)
    residuals = [abs(v - ml) for v in left] + [abs(v - mr) for v in right]
    series = MAD_SIGMA * statistics.median(residuals) if len(residuals) > 2 else 0.0
    points = statistics.median(own) if own else 0.0
    return max(series, points)


def detect_steps(
    values: Sequence[float],
    spreads: Sequence[float | None] | None = None,
    *,
    min_change: float = MIN_CHANGE,
    z: float = Z,
    min_size: int = 1,
) -> list[Step]:
    """The steps of a series (see the module docstring), in order.

    Args:
        values: one value per point (e.g. the median seconds per call at each commit), in commit order.
        spreads: each point's own σ (e.g. IQR / 1.349 of its rounds), None where unknown.
        min_change: smallest relative change reported.
        z: how many σ of noise a step must exceed.
        min_size: fewest points on each side of a step.

    Returns:
        The detected steps, by index.
    """
    own = list(spreads) if spreads is not None else [None] * len(values)
    if len(own) != len(values):
        raise ValueError(f"spreads: expected {len(values)} values, one per point; received {len(own)}")
    steps: list[Step] = []

    def search(lo: int, hi: int) -> None:
        segment = values[lo:hi]
        if len(segment) < 2 * min_size:
            return
        k = _best_split(segment, min_size)
        if k is None:
            return
        left, right = segment[:k], segment[k:]
        before, after = statistics.median(left), statistics.median(right)
        known = [s for s in own[lo:hi] if s is not None]
        noise = z * _sigma(left, right, known) * math.sqrt(1 / len(left) + 1 / len(right))
        threshold = max(noise, min_change * abs(before))
        lone = [side for side in ((lo, lo + k), (lo + k, hi)) if side[1] - side[0] == 1]
        # A lone point is a step only when it carries its own spread (a median of many rounds): else it
        # may be one noisy result, which the series cannot tell from a step.
        if any(own[a] is None for a, _ in lone) or abs(after - before) < threshold or before == 0:
            return
        steps.append(Step(lo + k, before, after, after / before - 1, threshold))
        search(lo, lo + k)
        search(lo + k, hi)

    search(0, len(values))
    # Report each step between its final neighbouring segments (a first split may have seen a wider span).
    found = sorted(steps, key=lambda s: s.index)
    bounds = [0, *(s.index for s in found), len(values)]
    out = []
    for k, s in enumerate(found):
        before, after = (
            statistics.median(values[bounds[k] : s.index]),
            statistics.median(values[s.index : bounds[k + 2]]),
        )
        out.append(Step(s.index, before, after, after / before - 1, s.threshold))
    return out
