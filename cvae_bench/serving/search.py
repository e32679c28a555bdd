"""The server scenario's search: the highest arrival rate whose tail latency stays under a bound."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Probe(Generic[T]):
    """One rate tried: its result and whether it met the bound."""

    qps: float
    result: T
    passed: bool


@dataclass(frozen=True)
class SearchOutcome(Generic[T]):
    """The best passing probe (None when even the lowest rate tried failed) and every probe in order."""

    best: Probe[T] | None
    probes: list[Probe[T]]


def find_max_qps(
    probe: Callable[[float], T],
    passed: Callable[[T], bool],
    start_qps: float,
    *,
    max_probes: int = 8,
    precision: float = 0.1,
    min_qps: float = 1.0,
) -> SearchOutcome[T]:
    """Bracket, then bisect, the highest rate at which `passed(probe(qps))` holds.

    From `start_qps` the rate doubles while probes pass (halves while they fail) until one of each is found;
    then the geometric midpoint is probed until the passing and failing rates are within `precision`
    (relative) or `max_probes` probes were run. A latency that is not monotone in the rate (a noisy
    machine) still ends the search; every probe is returned so that the reader can see it.

    Args:
        probe: runs the load at a rate and returns its result (e.g. the latency statistics).
        passed: whether a result meets the bound (e.g. p99 ≤ 1 ms).
        start_qps: the first rate tried (e.g. what single-stream latency suggests).
        max_probes: the most probes run.
        precision: stop once failing / passing rate ≤ 1 + precision.
        min_qps: never probe below this rate.

    Raises:
        ValueError: `start_qps` not positive, `max_probes` < 1 or `precision` not positive.
    """
    if not start_qps > 0 or max_probes < 1 or not precision > 0:
        raise ValueError(
            f"expected start_qps > 0, max_probes >= 1, precision > 0; received {start_qps}, {max_probes}, {precision}"
        )
    probes: list[Probe[T]] = []
    good: Probe[T] | None = None
    bad: Probe[T] | None = None

    def run(qps: float) -> Probe[T]:
        result = probe(qps)
        p = Probe(qps=qps, result=result, passed=bool(passed(result)))
        probes.append(p)
        return p

    qps = max(min_qps, start_qps)
    while len(probes) < max_probes and (good is None or bad is None):
        p = run(qps)
        if p.passed:
            good = p if good is None or p.qps > good.qps else good
            qps *= 2
        else:
            bad = p if bad is None or p.qps < bad.qps else bad
            if qps <= min_qps:
                break
            qps = max(min_qps, qps / 2)
    while good is not None and bad is not None and len(probes) < max_probes and bad.qps > good.qps * (1 + precision):
        p = run(math.sqrt(good.qps * bad.qps))
        if p.passed:
            good = p
        else:
            bad = p
    return SearchOutcome(best=good, probes=probes)
