"""The statistics of verdicts on synthetic and recorded rounds: deterministic, no timing."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from cvae_bench.bench.records import Entry, MeasuredInfo
from cvae_bench.bench.rounds import unmet
from cvae_bench.bench.timing import Timing
from cvae_bench.bench.verdicts import AA_TWIN, TUNING, entry_verdicts, noise_check, tuning_verdicts
from cvae_bench.core.stats import (
    Interval,
    median_interval,
    notch_ratio,
    order_statistic_rank,
    paired_ratio,
    unpaired_ratio,
    verdict,
    verdict_cell,
)


def test_order_statistic_interval_ranks() -> None:
    assert order_statistic_rank(5) is None  # no 95 % interval from 5 values
    assert order_statistic_rank(6) == 1 and order_statistic_rank(15) == 4 and order_statistic_rank(30) == 10
    ci = median_interval([float(v) for v in range(1, 16)])
    assert (ci.estimate, ci.low, ci.high) == (8.0, 4.0, 12.0)
    assert median_interval([1.0, 2.0, 3.0]).low is None
    big = median_interval(list(np.linspace(0, 1, 2001)))  # the normal approximation above 1000 values
    assert big.low is not None and big.high is not None and big.low < 0.5 < big.high


def test_median_interval_covers_the_true_median_about_95_percent() -> None:
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(400):
        x = rng.lognormal(0.0, 0.5, 15)  # skewed, like round times
        ci = median_interval(list(x))
        hits += ci.contains(1.0)  # the lognormal's median is exp(0) = 1
    assert 0.92 <= hits / 400 <= 0.995


def _drifting(n: int, factor: float, seed: int, noise: float = 0.01) -> tuple[list[float], list[float]]:
    """Paired rounds under a common drift of ±30 %: base and base × factor, each with its own 1 % noise."""
    rng = np.random.default_rng(seed)
    drift = 1.0 + 0.3 * np.sin(np.linspace(0, 6, n)) + 0.2 * rng.random(n)
    a = 0.010 * drift * (1 + noise * rng.standard_normal(n))
    b = 0.010 * factor * drift * (1 + noise * rng.standard_normal(n))
    return list(a), list(b)


def test_paired_ratio_sees_through_drift_that_hides_an_unpaired_difference() -> None:
    a, b = _drifting(15, 1.10, seed=2)
    paired = paired_ratio(a, b)
    assert paired.method == "paired order-statistic" and paired.n == 15
    assert paired.low is not None and paired.low > 1.0 and paired.estimate == pytest.approx(1.10, abs=0.02)
    assert verdict(paired) == "slower"
    unpaired = unpaired_ratio(a, b)  # the same rounds, pairing ignored: the drift swamps 10 %
    assert unpaired.rel_half_width is not None and paired.rel_half_width is not None
    assert unpaired.rel_half_width > 3 * paired.rel_half_width
    assert unpaired_ratio(a, b) == unpaired  # seeded: a file gives the same answer every time


def test_an_a_a_pair_is_a_tie_and_its_interval_contains_one() -> None:
    a, b = _drifting(15, 1.0, seed=3)
    ci = paired_ratio(a, b)
    assert ci.contains(1.0) and verdict(ci) == "tie"
    assert ci.rel_half_width is not None and ci.rel_half_width < 0.03


@pytest.mark.parametrize(
    ("est", "low", "high", "expected"),
    [
        (1.10, 1.06, 1.14, "slower"),
        (0.90, 0.86, 0.94, "faster"),
        (1.00, 0.99, 1.02, "tie"),
        (1.02, 1.01, 1.03, "tie"),  # significant but inside the band: immaterial
        (1.05, 1.01, 1.09, "slower"),
        (1.01, 0.95, 1.08, "unsure"),  # includes 1 and reaches past the band
        (1.10, None, None, "unsure"),
    ],
)
def test_verdict_rules(est: float, low: float | None, high: float | None, expected: str) -> None:
    assert verdict(Interval(est, low, high, "test", 15), tie=0.03) == expected


def test_cells_and_half_widths() -> None:
    ci = Interval(1.1, 1.05, 1.15, "test", 15)
    assert verdict_cell(ci) == "1.10× [1.05, 1.15] slower"
    assert ci.rel_half_width == pytest.approx((math.log(1.15) - math.log(1.05)) / 2)
    assert unmet({"a": ci, "b": Interval(1.0, 0.99, 1.01, "t", 15)}, 0.02) == {"a": ci.rel_half_width}


def test_unpaired_and_notch_ratios() -> None:
    rng = np.random.default_rng(4)
    a = list(0.010 * (1 + 0.01 * rng.standard_normal(20)))
    b = list(0.011 * (1 + 0.01 * rng.standard_normal(20)))
    ci = unpaired_ratio(a, b)
    assert ci.low is not None and 1.05 < ci.low < ci.estimate < ci.high < 1.15  # type: ignore[operator]
    assert unpaired_ratio([1.0, 2.0], [1.0, 2.0]).low is None  # two values: no interval
    notch = notch_ratio(0.010, 0.0002, 20, 0.011, 0.0002, 20)
    assert notch.low is not None and notch.low > 1.05 and verdict(notch) == "slower"
    with pytest.raises(ValueError, match="equal"):
        paired_ratio([1.0], [1.0, 2.0])


def _entry(name: str, per_call: list[float], sweeps: list[int] | None, twin: bool = False) -> Entry:
    info = MeasuredInfo(
        backend=name,
        mode="eager",
        device="cpu",
        versions={},
        threads=2,
        batch_size=64,
        flops_per_call=1,
        floor_s=None,
        median_s=0.0,
        gflops=0.0,
        images_per_s=0.0,
        fraction_of_floor=None,
        warmup_s=None,
        warmup_calls=None,
    )
    params: dict[str, object] = {"backend": name, "mode": "eager", "batch": 64}
    if twin:
        params[AA_TWIN] = True
    timing = Timing(round_s=per_call, iterations=1, sweeps=sweeps)
    return Entry.make("train-step", f"{name}-eager" + ("-aa" if twin else ""), params, timing, info)


def test_entry_verdicts_pair_by_sweep_and_check_the_a_a_twin() -> None:
    a, slow = _drifting(15, 1.10, seed=5)
    _, twin = _drifting(15, 1.0, seed=5)  # the same drift, its own noise
    sweeps = list(range(15))
    entries = [_entry("fast", a, sweeps), _entry("slow", slow, sweeps), _entry("fast", twin, sweeps, twin=True)]
    verdicts = {v.name: v for v in entry_verdicts(entries)}
    assert verdicts["train-step[slow-eager]"].verdict == "slower" and verdicts["train-step[slow-eager]"].paired
    aa = verdicts["train-step[fast-eager-aa]"]
    assert aa.reference == "train-step[fast-eager]"
    check = noise_check(list(verdicts.values()), entries)
    assert check is not None and check.passed and "passed" in check.line()
    unpaired = entry_verdicts([_entry("fast", a, None), _entry("slow", slow, None)])
    assert not unpaired[0].paired


def test_a_failed_a_a_check_warns() -> None:
    a, b = _drifting(15, 1.2, seed=6)  # the "twin" is 20 % slower: something else is moving
    sweeps = list(range(15))
    entries = [_entry("fast", a, sweeps), _entry("fast", b, sweeps, twin=True)]
    check = noise_check(entry_verdicts(entries), entries)
    assert check is not None and not check.passed and "FAILED" in check.line()


def _tuned(entry: Entry, knobs: str) -> Entry:
    params = {**entry.params, "mode": f"{entry.params['mode']}{knobs}", TUNING: knobs}
    return dataclasses.replace(entry, params=params, name=entry.name.removesuffix("]") + f"{knobs}]")


@pytest.mark.parametrize(
    ("factor", "twin_factor", "verdict_word", "worth"),
    [
        (0.80, 1.0, "faster", True),  # a clear win, the A/A pair agrees: worth turning
        (0.96, 0.96, "faster", False),  # a 4 % win, but two workers of one configuration differ by as much
        (1.10, 1.0, "slower", False),
        (1.00, 1.0, "tie", False),
    ],
)
def test_a_knob_is_worth_turning_only_beyond_the_tie_band_and_the_a_a_bound(
    factor: float, twin_factor: float, verdict_word: str, worth: bool
) -> None:
    base, tuned = _drifting(40, factor, seed=7)
    _, twin = _drifting(40, twin_factor, seed=7, noise=0.012)  # the same drift as the pair, its own noise
    sweeps = list(range(40))
    plain = _entry("torch", base, sweeps)
    entries = [
        plain,
        _tuned(_entry("torch", tuned, sweeps), "+mkldnn=off"),
        _entry("torch", twin, sweeps, twin=True),
        _entry("other", tuned, sweeps),  # an untuned entry of another backend: never anyone's reference
    ]
    verdicts = entry_verdicts(entries)
    (tv,) = tuning_verdicts(entries, noise_check(verdicts, entries))
    assert tv.reference == plain.name and tv.tuning == "+mkldnn=off" and tv.paired
    assert tv.verdict == verdict_word and tv.worth_it is worth
    assert tv.noise_bound is not None and tv.line().endswith(": worth turning") is worth


def test_a_tuned_entry_without_its_untuned_sibling_gets_no_tuning_verdict() -> None:
    a, b = _drifting(15, 0.8, seed=9)
    entries = [_entry("other", a, list(range(15))), _tuned(_entry("torch", b, list(range(15))), "+threads=1")]
    assert tuning_verdicts(entries, None) == []


def test_an_a_a_pair_too_short_for_an_interval_is_not_checked_rather_than_failed() -> None:
    a, b = _drifting(5, 0.95, seed=10)  # five rounds: no 95 % interval for the ratio
    entries = [_entry("fast", a, list(range(5))), _entry("fast", b, list(range(5)), twin=True)]
    check = noise_check(entry_verdicts(entries), entries)
    assert check is not None and check.passed is None
    assert "not checked" in check.line() and "FAILED" not in check.line()
