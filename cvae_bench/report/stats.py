"""Small statistics a report needs: a distribution-free confidence interval of the median."""

from __future__ import annotations

import math
from collections.abc import Sequence


def median_ci(data: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """The order-statistic confidence interval of the median of `data` (no assumption on its distribution).

    The interval [x_(j), x_(n+1-j)] covers the median with probability P(j ≤ B ≤ n − j), B ~ Binomial(n, ½);
    j is the largest rank that keeps that probability ≥ `level`. None when `data` is too short for `level`
    (fewer than 6 values at 95 %).
    """
    x, n = sorted(data), len(data)
    if n == 0:
        return None
    best = None
    for j in range(1, n // 2 + 1):
        cover = sum(math.comb(n, k) for k in range(j, n - j + 1)) / 2**n
        if cover < level:
            break
        best = j
    return None if best is None else (x[best - 1], x[n - best])
