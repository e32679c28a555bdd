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
from cvae_bench.core.events import SILENT, Reporter
from cvae_bench.core.records import Record
from cvae_bench.core.replication import ONE_PROCESS, VarianceComponents, replicated_paired_ratio
from cvae_bench.core.stats import Interval, paired_ratio
from cvae_bench.runtime import memory
from cvae_bench.runtime.pause import IdleRecord
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
        units: what one call counts as in the figures (a Keras `fit` call of 100 steps is 100 steps): per-call
            times are divided by it.
    """

    fn: Callable[[], object]
    sync: Callable[[], object] = _noop
    warmup: int = 0
    max_iterations: int | None = None
    finish: Callable[[], Any] | None = None
    keep: object = None
    units: int = 1


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
    units: int = 1


#: The calls open in this worker, by key (module state of the worker process).
_OPEN: dict[str, tuple[Timed, int]] = {}


def open_job(
    backend: Any,
    emit: Any,
    *,
    key: str,
    setup: Setup,
    min_time: float,
    setup_kwargs: dict[str, Any],
    iterations: int | None = None,
) -> Opened:
    """Worker job: run `setup`, warm up and calibrate (or, given `iterations`, only warm up: later epochs keep
    the first epoch's calls per round, so that every round of an entry times the same work), and keep the call
    open under `key`."""
    timed, info = setup(backend, emit, **setup_kwargs)
    memory.remark(memory.AFTER_BUILD)  # the model built and the data loaded, before any call ran
    if iterations is None:
        iterations, warmup_s = calibrate(
            timed.fn, min_time=min_time, warmup=timed.warmup, sync=timed.sync, max_iterations=timed.max_iterations
        )
    else:
        t0 = time.perf_counter()
        for _ in range(timed.warmup):
            timed.fn()
        timed.sync()
        warmup_s = time.perf_counter() - t0
    _OPEN[key] = (timed, iterations)
    return Opened(key=key, iterations=iterations, warmup=timed.warmup, warmup_s=warmup_s, info=info, units=timed.units)


def rounds_job(backend: Any, emit: Any, *, key: str, rounds: int = 1) -> list[float]:
    """Worker job: seconds of `rounds` timed rounds of the call open under `key`."""
    try:
        timed, iterations = _OPEN[key]
    except KeyError:
        raise KeyError(f"no call open under {key!r}; open_job first (open: {sorted(_OPEN)})") from None
    with memory.track(key):  # the peak resident set of these rounds (outside the timed region)
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
    """One timed call, and the rounds it has had across epochs (a fresh worker each epoch).

    Attributes:
        label: who it is (e.g. "torch:eager train-step").
        host: the worker or remote backend that runs its jobs in the current epoch.
        plan: what it times; opened: its calibration (the first epoch's; later epochs keep its calls per round).
        partner: for the A/A twin (the same backend/mode in a second worker), the contestant it mirrors.
        round_s, sweeps, epochs, windows, contended: each round's seconds, sweep, epoch, clock window and
            contention flag.
        idle: what its workers did while stopped between their rounds, added up over the epochs.
        end: what the setup's `finish` returned (after `close`, the last epoch's).
    """

    label: str
    host: Any
    plan: Plan
    partner: Contestant | None = None
    opened: Opened | None = None
    round_s: list[float] = field(default_factory=list)
    sweeps: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    windows: list[tuple[float, float]] = field(default_factory=list)
    contended: list[bool] = field(default_factory=list)
    idle_s: float = 0.0
    idle_cpu_s: float = 0.0
    pauses: int = 0
    end: Any = None

    def open(self, reporter: Reporter = SILENT) -> Opened:
        """Run the setup in the current host, and calibrate (first epoch) or warm up (later ones); `reporter`
        hears what the setup reports."""
        p = self.plan
        fixed = self.opened.iterations if self.opened is not None else None
        opened: Opened = self.host.run_job(
            open_job,
            reporter,
            key=p.key,
            setup=p.setup,
            min_time=p.min_time,
            setup_kwargs=p.setup_kwargs,
            iterations=fixed,
        )
        if self.opened is None:
            self.opened = opened
        return opened

    def close(self) -> Any:
        """Finish the call in the worker; returns (and keeps) what its `finish` returned."""
        self.end = self.host.run_job(close_job, SILENT, key=self.plan.key)
        return self.end

    def per_call(self, keep: set[int] | None = None) -> list[float]:
        """Seconds per call (per unit: `Timed.units`) of each round (of the sweeps in `keep`, default all)."""
        assert self.opened is not None
        n = self.opened.iterations * self.opened.units
        return [s / n for s, w in zip(self.round_s, self.sweeps, strict=True) if keep is None or w in keep]

    def kept_epochs(self, keep: set[int]) -> list[int]:
        """The epoch of each round in the sweeps of `keep`, aligned with `per_call(keep)`."""
        return [e for e, w in zip(self.epochs, self.sweeps, strict=True) if w in keep]

    def idle_record(self) -> IdleRecord:
        """What its workers did while stopped, over every epoch so far."""
        return IdleRecord.of(self.idle_s, self.idle_cpu_s, self.pauses)


def worker_of(host: Any) -> Any:
    """The `Worker` behind a host (a `RemoteBackend`'s, or the host itself)."""
    return getattr(host, "worker", host)


class Schedule:
    """Interleaved sweeps over contestants, in epochs of fresh workers, watched by a sentinel.

    Within an epoch every sweep runs one round of every contestant in a fresh shuffled order, one worker
    active at a time: every other worker is stopped (`Worker.pause`, SIGSTOP of its process tree) and the CPU
    its tree used meanwhile is read around the round, so an idle worker can neither slow the timed one nor
    hide work of its own. `begin_epoch` binds the contestants to the next epoch's workers.

    Args:
        contestants: every contestant (bound to its first epoch's host).
        sentinel: the contention sentinel (None: rounds are not checked).
        seed: the shuffle's seed (recorded in bench.json's options, so an order can be replayed).
    """

    def __init__(self, contestants: Sequence[Contestant], sentinel: Sentinel | None = None, seed: int = 0) -> None:
        self.contestants = list(contestants)
        self.sentinel = sentinel
        self.rng = random.Random(seed)
        self.sweeps_run = 0
        self.epoch = 0
        self.sweep_epoch: dict[int, int] = {}
        self.started = time.monotonic()

    def begin_epoch(self, epoch: int, hosts: dict[str, Any]) -> None:
        """Bind each contestant to its host of `epoch` (by label) and stop every host until its rounds."""
        self.epoch = epoch
        for c in self.contestants:
            c.host = hosts[c.label]
        for w in {id(worker_of(c.host)): worker_of(c.host) for c in self.contestants}.values():
            w.pause()

    def sweep(self) -> None:
        """One round of every contestant, in a fresh shuffled order; then each round's contention flag."""
        index = self.sweeps_run
        order = list(self.contestants)
        self.rng.shuffle(order)
        for c in order:
            mine = worker_of(c.host)
            mine.resume()
            (seconds,) = c.host.run_job(rounds_job, SILENT, key=c.plan.key, rounds=1)
            t1 = time.monotonic()
            mine.pause()
            c.round_s.append(seconds)
            c.sweeps.append(index)
            c.epochs.append(self.epoch)
            c.windows.append((t1 - seconds, t1))
        if self.sentinel is not None:
            self.sentinel.flush()
        for c in order:
            t0, t1 = c.windows[-1]
            c.contended.append(self.sentinel.contended(t0, t1) if self.sentinel is not None else False)
        self.sweep_epoch[index] = self.epoch
        self.sweeps_run += 1

    def end_epoch(self) -> None:
        """Continue every worker of the epoch (to be closed) and add what each did while stopped to its
        contestants' records."""
        workers = {id(worker_of(c.host)): worker_of(c.host) for c in self.contestants}
        for w in workers.values():
            w.resume()
        for c in self.contestants:
            idle = worker_of(c.host).idle
            c.idle_s += idle.idle_s
            c.idle_cpu_s += idle.cpu_s
            c.pauses += idle.pauses

    def contended_sweeps(self) -> set[int]:
        """Sweeps in which any contestant's round overlapped foreign load."""
        return {w for c in self.contestants for w, hot in zip(c.sweeps, c.contended, strict=True) if hot}

    def clean_in_epoch(self, epoch: int) -> int:
        """Sweeps of `epoch` that no foreign load overlapped."""
        hot = self.contended_sweeps()
        return sum(1 for w, e in self.sweep_epoch.items() if e == epoch and w not in hot)

    def kept(self, wanted: int, under_load: bool = False) -> set[int]:
        """The sweeps the statistics use: the clean sweeps of every epoch with at least half of `wanted` clean
        ones (`busy_epochs` are dropped whole: their workers' figures are the load's, not the backends');
        every sweep with `under_load`, or when no epoch qualifies (the run is then BUSY: `busy`)."""
        every = set(range(self.sweeps_run))
        if under_load:
            return every
        hot = self.contended_sweeps()
        good = set(self.epochs_run()) - self.busy_epochs(wanted)
        clean = {w for w in every - hot if self.sweep_epoch[w] in good}
        return clean or every

    def epochs_run(self) -> list[int]:
        """Every epoch that timed a sweep, in order."""
        return sorted(set(self.sweep_epoch.values()))

    def busy_epochs(self, wanted: int) -> set[int]:
        """Epochs with fewer than half of `wanted` clean sweeps."""
        need = max(1, math.ceil(wanted / 2))
        return {e for e in self.epochs_run() if self.clean_in_epoch(e) < need}

    def timing(self, c: Contestant, keep: set[int]) -> Timing:
        """`c`'s rounds over the sweeps in `keep`, as a `Timing`."""
        assert c.opened is not None
        rows = [
            (s, w, e, hot) for s, w, e, hot in zip(c.round_s, c.sweeps, c.epochs, c.contended, strict=True) if w in keep
        ]
        return Timing(
            round_s=[s for s, _, _, _ in rows],
            iterations=c.opened.iterations * c.opened.units,
            warmup=c.opened.warmup,
            warmup_s=c.opened.warmup_s,
            sweeps=[w for _, w, _, _ in rows],
            contended=[hot for _, _, _, hot in rows],
            epochs=[e for _, _, e, _ in rows],
            idle=c.idle_record(),
        )

    def pairs(self, keep: set[int]) -> list[tuple[Contestant, Contestant]]:
        """(reference, contestant) for every paired ratio: each contestant against the fastest real entry of
        its group and batch (a twin against its original instead); the fastest itself is not paired."""
        out: list[tuple[Contestant, Contestant]] = []
        classes: dict[tuple[str, int], list[Contestant]] = {}
        for c in self.contestants:
            classes.setdefault((c.plan.group, c.plan.batch), []).append(c)
        for members in classes.values():
            real = [c for c in members if c.partner is None]
            if not real:
                continue
            best = min(real, key=lambda c: _median(c.per_call(keep)))
            out += [(c.partner or best, c) for c in members if c is not (c.partner or best)]
        return out

    def ratios(self, keep: set[int]) -> dict[str, Interval]:
        """Each paired ratio (`pairs`) by the contestant's label. Across epochs when there are two or more
        (`core.replication`), else from one epoch's rounds."""
        return {
            c.label: epoch_paired_ratio(
                ref.per_call(keep), c.per_call(keep), [w for w in c.sweeps if w in keep], c.kept_epochs(keep)
            )
            for ref, c in self.pairs(keep)
        }


def epoch_paired_ratio(
    base: Sequence[float], other: Sequence[float], sweeps: Sequence[int], epochs: Sequence[int]
) -> Interval:
    """other / base from paired rounds: across epochs (`replicated_paired_ratio`) when they span two or more,
    else the one epoch's order-statistic interval, marked as blind to process-to-process variation."""
    if len(set(epochs)) >= 2:
        return replicated_paired_ratio(base, other, sweeps, epochs)
    ci = paired_ratio(base, other)
    return Interval(ci.estimate, ci.low, ci.high, ONE_PROCESS, ci.n, ci.level)


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
    host: Any, plans: Sequence[Plan], rounds: int, reporter: Reporter = SILENT
) -> dict[str, tuple[Timing, Any, Any]]:
    """Every plan's rounds in a row, one plan after the other, in the worker of `host` (`reporter` hears what
    the setups report).

    Returns:
        key -> (the timing, the setup's record, what `finish` returned).
    """
    out = {}
    for plan in plans:
        opened: Opened = host.run_job(
            open_job, reporter, key=plan.key, setup=plan.setup, min_time=plan.min_time, setup_kwargs=plan.setup_kwargs
        )
        round_s = host.run_job(rounds_job, SILENT, key=plan.key, rounds=rounds)
        end = host.run_job(close_job, SILENT, key=plan.key)
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
class Phases(Record):
    """Wall seconds of each phase of the backend groups' measurement, over every epoch.

    Attributes:
        start_s: starting the workers and building the backends (frameworks imported, several at once);
        open_s: each call's setup, warm-up and calibration (one worker at a time); sweeps_s: the timed sweeps;
        close_s: finishing the calls, the audits and stopping the workers; total_s: all of it.
    """

    start_s: float
    open_s: float
    sweeps_s: float
    close_s: float
    total_s: float


@dataclass(frozen=True)
class Components(Record):
    """One ratio's variance components (log scale) and what they ask of the next bench.

    Attributes:
        label: the entry; variance: the two levels' variances and costs (`core.replication`).
        epochs_for_3pct: epochs for a ±3 % interval at the rounds per epoch used (None without a between-epoch
            variance estimate).
    """

    label: str
    variance: VarianceComponents
    epochs_for_3pct: int | None


@dataclass(frozen=True)
class RoundsSummary(Record):
    """How the backend groups' rounds were run (bench.json's `cvae_bench.rounds`).

    Attributes:
        schedule: "interleaved epochs" (each epoch fresh workers, one round of every entry per sweep, shuffled).
        contestants: entries in the schedule; order_seed: the shuffle's seed.
        sweeps_run, sweeps_kept: sweeps timed, and kept for the statistics (the clean ones of the clean epochs).
        contended_sweeps: sweeps in which a round overlapped foreign load; remeasured: sweeps added for them.
        seconds: wall time of the sweeps (the time to a verdict).
        rel_precision: the precision asked for (None: fixed epochs); reached: whether every ratio got there.
        unmet: the entries that did not, and why.
        load: the load the sentinel saw during the sweeps; waited_quiet: `--wait-quiet`, if asked.
        epochs: epochs asked for; epochs_run: epochs timed (busy ones are re-run, up to as many again);
            busy_epochs: epochs dropped because foreign load overlapped more than half of their sweeps.
        rounds_per_epoch: sweeps each epoch aims for.
        busy: True when fewer than `epochs` clean epochs could be had: verdicts are then withheld (BUSY) unless
            `under_load`, which judges every sweep anyway.
        phases: wall time of each phase; components: each ratio's variance components.
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
    epochs: int = 1
    epochs_run: int = 1
    busy_epochs: int = 0
    rounds_per_epoch: int = 0
    busy: bool = False
    under_load: bool = False
    phases: Phases | None = None
    components: list[Components] = field(default_factory=list)


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
