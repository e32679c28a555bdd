"""The rounds engine: timed rounds of a group's call, run on request inside a live worker, interleaved.

Worker side. A group's *setup* (a module-level function, sent by reference) builds what is timed next to
the backend and returns a `Timed` (the call, its device sync, its warm-up, what to do at the end) and a
record of what it measured apart (first call, data upload). `open_job` runs the setup, warms up and
calibrates the calls per round, and keeps the `Timed` in the worker under a key; `rounds_job` times N rounds
of it on request; `close_job` runs its `finish` and forgets it. Between requests the worker blocks reading
its pipe: an idle worker uses no CPU (the tests measure it).

Parent side. A `Contestant` is one timed call in one worker. `Schedule.sweep` runs one round of every
contestant in a shuffled order, one worker active at a time: drift and bursts of foreign load then hit
every entry alike, and the rounds of one sweep pair for ratios (`cvae_bench.core.stats.paired_ratio`). Each
round's window is checked against the contention sentinel; `Schedule.timing` gives a contestant's `Timing`
over the sweeps kept. `measure_alone` is the same engine with every round of one call in a row (the pytest
suite's per-test layout).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cvae_bench.bench.timing import Timing, calibrate, time_round
from cvae_bench.core.records import Record
from cvae_bench.core.stats import Interval, paired_ratio
from cvae_bench.runtime.sentinel import LoadSeen, Sentinel


def _noop() -> None:
    pass


# -- worker side ---------------------------------------------------------------------------------------------
@dataclass
class Timed:
    """What a setup hands the engine in the worker (callables: never pickled).

    Attributes:
        fn: one call of what is measured.
        sync: waits for queued device work; ends every round.
        warmup: untimed calls before calibration.
        max_iterations: a cap on calls per round.
        finish: called once after the last round; its value goes back to the parent (e.g. the final loss).
        keep: what the call needs alive without naming it (a host buffer onnxruntime writes its output into).
    """

    fn: Callable[[], object]
    sync: Callable[[], object] = _noop
    warmup: int = 0
    max_iterations: int | None = None
    finish: Callable[[], Any] | None = None
    keep: object = None


#: A setup: `setup(backend, emit, **kwargs) -> (Timed, what it measured apart)`.
Setup = Callable[..., tuple[Timed, Any]]


@dataclass(frozen=True)
class Opened:
    """What `open_job` returns: the calibration and the setup's own record."""

    key: str
    iterations: int
    warmup: int
    warmup_s: float
    info: Any


#: The calls open in this worker, by key (module state of the worker process).
_OPEN: dict[str, tuple[Timed, int]] = {}


def open_job(
    backend: Any, emit: Any, *, key: str, setup: Setup, min_time: float, setup_kwargs: dict[str, Any]
) -> Opened:
    """Worker job: run `setup`, warm up and calibrate, and keep the call open under `key`."""
    timed, info = setup(backend, emit, **setup_kwargs)
    iterations, warmup_s = calibrate(
        timed.fn, min_time=min_time, warmup=timed.warmup, sync=timed.sync, max_iterations=timed.max_iterations
    )
    _OPEN[key] = (timed, iterations)
    return Opened(key=key, iterations=iterations, warmup=timed.warmup, warmup_s=warmup_s, info=info)


def rounds_job(backend: Any, emit: Any, *, key: str, rounds: int = 1) -> list[float]:
    """Worker job: seconds of `rounds` timed rounds of the call open under `key`."""
    try:
        timed, iterations = _OPEN[key]
    except KeyError:
        raise KeyError(f"no call open under {key!r}; open_job first (open: {sorted(_OPEN)})") from None
    return [time_round(timed.fn, iterations, timed.sync) for _ in range(rounds)]


def close_job(backend: Any, emit: Any, *, key: str) -> Any:
    """Worker job: run the call's `finish` and forget it; returns what `finish` returns (None without one)."""
    timed, _ = _OPEN.pop(key)
    return timed.finish() if timed.finish is not None else None


def run_alone(
    setup: Setup, backend: Any, emit: Any, *, rounds: int, min_time: float, **setup_kwargs: Any
) -> tuple[Timing, Any, Any]:
    """Open, time `rounds` rounds and close one call, here in this process (used inside worker jobs).

    Returns:
        (the timing, the setup's record, what `finish` returned).
    """
    key = f"alone:{id(setup)}"
    opened = open_job(backend, emit, key=key, setup=setup, min_time=min_time, setup_kwargs=setup_kwargs)
    round_s = rounds_job(backend, emit, key=key, rounds=rounds)
    end = close_job(backend, emit, key=key)
    return Timing(round_s, opened.iterations, opened.warmup, opened.warmup_s), opened.info, end


# -- parent side ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """One call a group asks to time: its key in the worker, its setup and the entry it becomes.

    Attributes:
        key: unique within the worker (e.g. "train-step", "sample-native/b64").
        group: the group's name; batch: images per call (ratios compare entries of one group and batch).
        setup, setup_kwargs: the setup and its arguments.
        min_time: seconds a round lasts at least.
    """

    key: str
    group: str
    batch: int
    setup: Setup
    setup_kwargs: dict[str, Any]
    min_time: float


@dataclass
class Contestant:
    """One timed call in one live worker, and the rounds it has had.

    Attributes:
        label: who it is (e.g. "torch:eager train-step").
        host: the worker or remote backend that runs its jobs.
        plan: what it times; opened: its calibration (after `open`).
        partner: for the A/A twin (the same backend/mode in a second worker), the contestant it mirrors.
        round_s, sweeps, contended: each round's seconds, sweep and contention flag.
        end: what the setup's `finish` returned (after `close`).
    """

    label: str
    host: Any
    plan: Plan
    partner: Contestant | None = None
    opened: Opened | None = None
    round_s: list[float] = field(default_factory=list)
    sweeps: list[int] = field(default_factory=list)
    windows: list[tuple[float, float]] = field(default_factory=list)
    contended: list[bool] = field(default_factory=list)
    end: Any = None

    def open(self, on_event: Callable[[dict[str, Any]], None] | None = None) -> Opened:
        """Run the setup and calibrate in the worker."""
        p = self.plan
        self.opened = self.host.run_job(
            open_job, on_event, key=p.key, setup=p.setup, min_time=p.min_time, setup_kwargs=p.setup_kwargs
        )
        return self.opened

    def close(self) -> Any:
        """Finish the call in the worker; returns (and keeps) what its `finish` returned."""
        self.end = self.host.run_job(close_job, None, key=self.plan.key)
        return self.end

    def per_call(self, keep: set[int] | None = None) -> list[float]:
        """Seconds per call of each round (of the sweeps in `keep`, default all)."""
        assert self.opened is not None
        n = self.opened.iterations
        return [s / n for s, w in zip(self.round_s, self.sweeps, strict=True) if keep is None or w in keep]


class Schedule:
    """Interleaved sweeps over contestants, watched by a sentinel.

    Args:
        contestants: every open contestant.
        sentinel: the contention sentinel (None: rounds are not checked).
        seed: the shuffle's seed (recorded in bench.json's options, so an order can be replayed).
    """

    def __init__(self, contestants: Sequence[Contestant], sentinel: Sentinel | None = None, seed: int = 0) -> None:
        self.contestants = list(contestants)
        self.sentinel = sentinel
        self.rng = random.Random(seed)
        self.sweeps_run = 0
        self.started = time.monotonic()

    def sweep(self) -> None:
        """One round of every contestant, in a fresh shuffled order; then each round's contention flag."""
        index = self.sweeps_run
        order = list(self.contestants)
        self.rng.shuffle(order)
        for c in order:
            t0 = time.monotonic()
            (seconds,) = c.host.run_job(rounds_job, None, key=c.plan.key, rounds=1)
            t1 = time.monotonic()
            c.round_s.append(seconds)
            c.sweeps.append(index)
            c.windows.append((t1 - seconds, t1))
        if self.sentinel is not None:
            self.sentinel.flush()
        for c in order:
            t0, t1 = c.windows[-1]
            c.contended.append(self.sentinel.contended(t0, t1) if self.sentinel is not None else False)
        self.sweeps_run += 1

    def contended_sweeps(self) -> set[int]:
        """Sweeps in which any contestant's round overlapped foreign load."""
        return {w for c in self.contestants for w, hot in zip(c.sweeps, c.contended, strict=True) if hot}

    def kept(self, wanted: int) -> set[int]:
        """The sweeps the statistics use: the clean ones when there are at least `wanted`, else all."""
        every = set(range(self.sweeps_run))
        clean = every - self.contended_sweeps()
        return clean if len(clean) >= wanted else every

    def timing(self, c: Contestant, keep: set[int]) -> Timing:
        """`c`'s rounds over the sweeps in `keep`, as a `Timing`."""
        assert c.opened is not None
        rows = [(s, w, hot) for s, w, hot in zip(c.round_s, c.sweeps, c.contended, strict=True) if w in keep]
        return Timing(
            round_s=[s for s, _, _ in rows],
            iterations=c.opened.iterations,
            warmup=c.opened.warmup,
            warmup_s=c.opened.warmup_s,
            sweeps=[w for _, w, _ in rows],
            contended=[hot for _, _, hot in rows],
        )

    def ratios(self, keep: set[int]) -> dict[str, Interval]:
        """Each contestant's paired ratio to the fastest of its group and batch (twins compared to their
        original instead), by label; the fastest itself is absent."""
        out: dict[str, Interval] = {}
        classes: dict[tuple[str, int], list[Contestant]] = {}
        for c in self.contestants:
            classes.setdefault((c.plan.group, c.plan.batch), []).append(c)
        for members in classes.values():
            real = [c for c in members if c.partner is None]
            if not real:
                continue
            best = min(real, key=lambda c: _median(c.per_call(keep)))
            for c in members:
                ref = c.partner or best
                if c is ref:
                    continue
                out[c.label] = paired_ratio(ref.per_call(keep), c.per_call(keep))
        return out


def _median(values: Sequence[float]) -> float:
    x = sorted(values)
    n = len(x)
    return x[n // 2] if n % 2 else (x[n // 2 - 1] + x[n // 2]) / 2


@dataclass(frozen=True)
class PrecisionGoal:
    """`--rel-precision` and `--max-time`: add sweeps until every ratio's half-width is within `rel`."""

    rel: float | None
    max_time: float


def unmet(ratios: dict[str, Interval], rel: float) -> dict[str, float | None]:
    """Labels whose ratio's relative half-width exceeds `rel` (None: no interval yet)."""
    out: dict[str, float | None] = {}
    for label, ci in ratios.items():
        hw = ci.rel_half_width
        if hw is None or hw > rel:
            out[label] = hw
    return out


def remeasure_budget(rounds: int) -> int:
    """Extra sweeps allowed to replace contended ones: a third of the rounds, so a busy machine costs at
    most a third more time, and the figures say they were contended when that was not enough."""
    return math.ceil(rounds / 3)


def measure_alone(
    host: Any, plans: Sequence[Plan], rounds: int, on_event: Any = None
) -> dict[str, tuple[Timing, Any, Any]]:
    """Every plan's rounds in a row, one plan after the other, in the worker of `host`.

    Returns:
        key -> (the timing, the setup's record, what `finish` returned).
    """
    out = {}
    for plan in plans:
        opened: Opened = host.run_job(
            open_job, on_event, key=plan.key, setup=plan.setup, min_time=plan.min_time, setup_kwargs=plan.setup_kwargs
        )
        round_s = host.run_job(rounds_job, None, key=plan.key, rounds=rounds)
        end = host.run_job(close_job, None, key=plan.key)
        out[plan.key] = (Timing(round_s, opened.iterations, opened.warmup, opened.warmup_s), opened.info, end)
    return out


# -- what a run of sweeps did, for bench.json --------------------------------------------------------------
@dataclass(frozen=True)
class Unmet(Record):
    """An entry whose ratio did not reach `--rel-precision`, and why."""

    label: str
    half_width: float | None
    reason: str


@dataclass(frozen=True)
class WaitedQuiet(Record):
    """`--wait-quiet`: how long was allowed, how long it took, and whether the machine became quiet."""

    allowed_s: float
    waited_s: float
    quiet: bool


@dataclass(frozen=True)
class RoundsSummary(Record):
    """How the backend groups' rounds were run (bench.json's `cvae_bench.rounds`).

    Attributes:
        schedule: "interleaved" (one round of every entry per sweep, shuffled).
        contestants: entries in the schedule; order_seed: the shuffle's seed.
        sweeps_run, sweeps_kept: sweeps timed, and kept for the statistics (the clean ones when enough).
        contended_sweeps: sweeps in which a round overlapped foreign load; remeasured: sweeps added for them.
        seconds: wall time of the sweeps (the time to a verdict).
        rel_precision: the precision asked for (None: fixed rounds); reached: whether every ratio got there.
        unmet: the entries that did not, and why.
        load: the load the sentinel saw during the sweeps; waited_quiet: `--wait-quiet`, if asked.
    """

    schedule: str
    contestants: int
    order_seed: int
    sweeps_run: int
    sweeps_kept: int
    contended_sweeps: int
    remeasured: int
    seconds: float
    rel_precision: float | None
    reached: bool | None
    unmet: list[Unmet]
    load: LoadSeen
    waited_quiet: WaitedQuiet | None = None


def unmet_reasons(schedule: Schedule, keep: set[int], missing: dict[str, float | None]) -> list[Unmet]:
    """Why each entry of `missing` did not reach the precision: contention when a quarter of its rounds
    overlapped foreign load, else the spread of its own rounds (noise)."""
    by_label = {c.label: c for c in schedule.contestants}
    out = []
    for label, hw in missing.items():
        c = by_label[label]
        hot = sum(c.contended)
        if c.contended and hot >= len(c.contended) / 4:
            reason = f"contention: {hot} of {len(c.contended)} rounds overlapped foreign load"
        else:
            data = sorted(c.per_call(keep))
            q1, q3 = data[len(data) // 4], data[(3 * len(data)) // 4]
            reason = f"noise: its rounds spread {100 * (q3 - q1) / _median(data):.1f} % (IQR/median)"
        out.append(Unmet(label=label, half_width=hw, reason=reason))
    return out
