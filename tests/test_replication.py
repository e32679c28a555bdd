"""Intervals across worker processes (`core.replication`), proven on synthetic timings: no timing here.

The simulation draws benches the way this machine behaves: each worker process has an offset of its own that
lasts its life (memory layout, thread placement), the machine drifts within an epoch (hitting both rounds of a
sweep alike), and bursts hit single rounds. A 95 % interval must then hold the true ratio in about 95 % of
benches; the interval built from one process's rounds, which sees none of the process offsets, must not.
"""

from __future__ import annotations

import math
import random
import statistics

import pytest

from cvae_bench.bench.calibration import calibrate
from cvae_bench.bench.rounds import epoch_paired_ratio
from cvae_bench.core.replication import (
    ACROSS_PROCESSES,
    ONE_PROCESS,
    across_processes,
    replicated_median,
    replicated_unpaired_ratio,
    t_quantile,
    variance_components,
)
from cvae_bench.core.stats import paired_ratio


def test_t_quantiles_match_the_table_and_converge_to_the_normal() -> None:
    assert t_quantile(1) == pytest.approx(12.706)
    assert t_quantile(4) == pytest.approx(2.776)
    assert t_quantile(30) == pytest.approx(2.042)
    assert t_quantile(60) == pytest.approx(2.000, abs=1e-3)
    assert t_quantile(10_000) == pytest.approx(1.960, abs=1e-3)
    with pytest.raises(ValueError):
        t_quantile(0)


def test_across_processes_is_a_geometric_mean_with_a_t_interval_on_logs() -> None:
    ci = across_processes([1.0, 4.0])
    assert ci.estimate == pytest.approx(2.0)
    half = 12.706 * statistics.stdev([0.0, math.log(4)]) / math.sqrt(2)
    assert ci.low == pytest.approx(2.0 * math.exp(-half))
    assert ci.high == pytest.approx(2.0 * math.exp(half))
    assert ci.method == ACROSS_PROCESSES and ci.n == 2
    single = across_processes([3.0])
    assert single.estimate == pytest.approx(3.0) and single.low is None and single.high is None


def test_replicated_median_summarises_each_epoch_by_its_median() -> None:
    # epoch 0: median 1.0 (one burst of 9.0 ignored); epoch 1: median 4.0
    values = [1.0, 1.0, 9.0, 4.0, 4.0, 4.0]
    ci = replicated_median(values, [0, 0, 0, 1, 1, 1])
    assert ci.estimate == pytest.approx(2.0)


def test_one_epoch_falls_back_to_the_rounds_interval_and_says_it_is_blind_to_processes() -> None:
    base = [1.0 + 0.01 * i for i in range(10)]
    other = [1.2 * b for b in base]
    ci = epoch_paired_ratio(base, other, list(range(10)), [0] * 10)
    assert ci.method == ONE_PROCESS
    assert ci.estimate == pytest.approx(1.2)
    two = epoch_paired_ratio(base, other, list(range(10)), [0] * 5 + [1] * 5)
    assert two.method == ACROSS_PROCESSES and two.n == 2


def _simulated_bench(rng: random.Random, ratio: float, epochs: int, rounds: int) -> tuple[list[float], ...]:
    """Per-call times of a base and another entry in interleaved sweeps over `epochs` fresh processes."""
    base, other, sweeps, labels = [], [], [], []
    sweep = 0
    for e in range(epochs):
        off_a, off_b = rng.gauss(0, 0.04), rng.gauss(0, 0.04)  # each process's lasting offset (~4 %)
        drift = 0.0
        for _ in range(rounds):
            drift += rng.gauss(0, 0.01)  # the machine wanders within an epoch, both entries alike
            a = math.exp(off_a + drift + rng.gauss(0, 0.01))
            b = ratio * math.exp(off_b + drift + rng.gauss(0, 0.01))
            if rng.random() < 0.1:  # a burst of foreign work hits one round
                if rng.random() < 0.5:
                    a *= rng.uniform(1.2, 2.0)
                else:
                    b *= rng.uniform(1.2, 2.0)
            base.append(a)
            other.append(b)
            sweeps.append(sweep)
            labels.append(e)
            sweep += 1
    return base, other, sweeps, labels


def test_simulated_coverage_is_near_95_percent_and_the_rounds_only_interval_is_not() -> None:
    rng = random.Random(20261204)
    truth = 1.25
    sims = 2000
    across = within = 0
    for _ in range(sims):
        base, other, sweeps, epochs = _simulated_bench(rng, truth, epochs=5, rounds=10)
        if epoch_paired_ratio(base, other, sweeps, epochs).contains(truth):
            across += 1
        if paired_ratio(base, other).contains(truth):  # the old interval: every round as if one process
            within += 1
    coverage = across / sims
    assert 0.93 <= coverage <= 0.97, f"coverage {coverage:.3f} across processes"
    assert within / sims < 0.75, f"the rounds-only interval covered {within / sims:.3f}: the simulation is too easy"


def test_simulated_a_a_check_fails_about_5_percent_of_the_time() -> None:
    rng = random.Random(7)
    sims = 2000
    failed = 0
    for _ in range(sims):
        base, twin, sweeps, epochs = _simulated_bench(rng, 1.0, epochs=5, rounds=10)
        failed += not epoch_paired_ratio(base, twin, sweeps, epochs).contains(1.0)
    assert 0.03 <= failed / sims <= 0.07, f"A/A failed in {failed / sims:.3f}"


def test_unpaired_ratio_of_two_files_uses_welch_across_their_epochs() -> None:
    rng = random.Random(3)
    hits = 0
    for _ in range(1000):
        a, _, _, ea = _simulated_bench(rng, 1.0, epochs=5, rounds=10)
        _, b, _, eb = _simulated_bench(rng, 1.1, epochs=5, rounds=10)
        # `b` is the other entry of its own bench: the true ratio of b to a is 1.1
        hits += replicated_unpaired_ratio(a, ea, b, eb).contains(1.1)
    assert 0.92 <= hits / 1000 <= 0.99


def test_variance_components_recover_the_two_levels_and_plan_epochs() -> None:
    rng = random.Random(11)
    values, epochs = [], []
    for e in range(40):
        offset = rng.gauss(0, 0.05)  # between: 0.0025
        for _ in range(20):
            values.append(math.exp(offset + rng.gauss(0, 0.02)))  # within: 0.0004
            epochs.append(e)
    vc = variance_components(values, epochs, round_s=0.5, epoch_s=20.0)
    assert vc is not None
    assert vc.within == pytest.approx(0.0004, rel=0.2)
    assert vc.between == pytest.approx(0.0025, rel=0.5)
    assert vc.optimal_rounds is not None and 1 < vc.optimal_rounds < 10
    assert vc.epochs_for(0.01) > vc.epochs_for(0.03) >= 2
    assert variance_components([1.0, 1.1], [0, 0], 1.0, 1.0) is None


def test_calibration_counts_intervals_holding_the_pooled_estimate() -> None:
    from cvae_bench.bench.verdicts import NoiseCheck, Verdict
    from cvae_bench.core.stats import Interval

    class _CB:
        def __init__(self, ratio: Interval, aa: Interval) -> None:
            self.verdicts = [Verdict("b", "a", "train-step", 64, ratio, "slower", 0.03, True)]
            self.noise = NoiseCheck("a (A/A)", "a", aa, aa.rel_half_width, aa.contains(1.0))
            self.rounds = None

    class _Doc:
        def __init__(self, ratio: Interval, aa: Interval) -> None:
            self.cvae_bench = _CB(ratio, aa)

    m = "t across worker processes"
    docs = [
        _Doc(Interval(1.20, 1.15, 1.25, m, 5), Interval(1.0, 0.98, 1.02, m, 5)),
        _Doc(Interval(1.22, 1.18, 1.26, m, 5), Interval(1.03, 1.01, 1.05, m, 5)),  # A/A fails
        _Doc(Interval(1.40, 1.35, 1.45, m, 5), Interval(0.99, 0.97, 1.01, m, 5)),  # misses the pooled 1.22
    ]
    cal = calibrate(docs)  # type: ignore[arg-type]
    (r,) = [x for x in cal.ratios if x.name == "b"]
    assert r.pooled == pytest.approx(1.22)
    assert (r.held, r.runs) == (2, 3)
    assert (cal.aa_failed, cal.aa_checked) == (1, 3)
    assert any("held by 2/3" in line for line in cal.lines())
