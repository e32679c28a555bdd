"""Step detection on synthetic series: a 10 % slowdown is found where it happened; noise is not a step."""

from __future__ import annotations

import numpy as np
import pytest

from cvae_bench.report.steps import detect_steps

SEEDS = range(20)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_ten_percent_slowdown_is_detected_where_it_happened(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = [*(1.0 + 0.02 * rng.standard_normal(10)), *(1.1 + 0.022 * rng.standard_normal(10))]
    steps = detect_steps(values)
    assert [s.index for s in steps] == [10] or ([abs(s.index - 10) <= 1 for s in steps] == [True])
    assert 0.05 < steps[0].change < 0.15


@pytest.mark.parametrize("seed", SEEDS)
def test_noise_is_not_a_step(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    values = list(1.0 + 0.02 * rng.standard_normal(20))
    assert detect_steps(values) == []
    assert detect_steps(values, [0.02] * 20) == []


def test_two_lone_points_are_judged_by_their_own_spread() -> None:
    """Two commits, one benchmark each: a 10 % slowdown with a 1 % spread is a step; within the spread it is not."""
    (step,) = detect_steps([1.0, 1.1], [0.01, 0.01])
    assert step.index == 1 and step.change == pytest.approx(0.1)
    assert detect_steps([1.0, 1.1], [0.08, 0.08]) == []
    assert detect_steps([1.0, 1.1]) == [], "a lone result without a spread cannot be told from noise"


def test_a_speed_up_and_two_steps() -> None:
    values = [1.0] * 6 + [0.8] * 6 + [1.2] * 6
    steps = detect_steps(values)
    assert [(s.index, round(s.change, 2)) for s in steps] == [(6, -0.2), (12, 0.5)]


def test_spreads_must_match_the_values() -> None:
    with pytest.raises(ValueError, match="expected 3"):
        detect_steps([1.0, 2.0, 3.0], [0.1])
