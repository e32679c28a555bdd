"""The records every benchmark group shares: a timed call, the backend measured, statistics, one entry.

An `Entry` is one measurement exactly as bench.json (pytest-benchmark's layout) holds it; its
`extra_info` is the JSON of the group's own typed record (a `MeasuredInfo` subclass), which the group
reads back with `info_type.from_json(entry.extra_info)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cvae_bench.bench.roofline import Roofline, WorkloadFloor, fraction_of_floor
from cvae_bench.bench.rounds import RoundsSummary
from cvae_bench.bench.timing import Timing, summarize
from cvae_bench.core.memory import MemoryFigures
from cvae_bench.core.records import Record
from cvae_bench.core.replication import replicated_median
from cvae_bench.core.stats import Interval, median_interval
from cvae_bench.runtime.machine import LoadWindow

if TYPE_CHECKING:
    from cvae_bench.runtime.worker import RemoteBackend


@dataclass(frozen=True)
class CallTiming(Record):
    """The timed rounds of one call, and its first call, timed apart (compilation, allocation)."""

    timing: Timing
    first_call_s: float


@dataclass(frozen=True)
class BackendIdentity(Record):
    """What every benchmark record says about the backend that produced it."""

    backend: str
    mode: str
    device: str
    versions: dict[str, str]
    build_s: float
    notes: dict[str, str] = field(default_factory=dict)
    onnx_export: bool = False
    #: The worker's tuning knobs as a selection writes them ('+flush-denormal=on'), '' as the backend ships.
    tuning: str = ""
    #: The A/A self-check's second worker of the same backend, mode and tuning.
    aa_twin: bool = False

    @classmethod
    def of(cls, backend: RemoteBackend) -> BackendIdentity:
        """The identity of a live backend in its worker."""
        caps = backend.info["capabilities"]
        return cls(
            backend=backend.name,
            mode=backend.mode,
            device=backend.device,
            versions=dict(backend.info["versions"]),
            build_s=backend.info["build_s"],
            notes=dict(caps.get("notes", {})),
            onnx_export=bool(caps.get("onnx_export", False)),
            tuning=backend.info.get("tuning", ""),
        )

    @property
    def variant(self) -> str:
        """The mode with its tuning ('eager+threads=1'), and ' (A/A)' for the twin: what tells two entries of one
        backend apart."""
        return self.mode + self.tuning + (" (A/A)" if self.aa_twin else "")

    @property
    def params(self) -> dict[str, str]:
        """What names this backend in an entry's params: backend, mode (the variant), and the tuning if any
        (`bench.verdicts` pairs a tuned entry with its untuned sibling by them)."""
        out = {"backend": self.backend, "mode": self.variant}
        return {**out, "tuning": self.tuning} if self.tuning else out

    @property
    def label(self) -> str:
        """'name:mode', then the tuning's '+knob=value...'."""
        return f"{self.backend}:{self.variant}"


@dataclass(frozen=True)
class Stats(Record):
    """pytest-benchmark's statistics of the seconds per call, with the per-call data and calls per round.

    Added to pytest-benchmark's fields: `median_ci` (the typical call's 95 % interval: across worker processes
    when the rounds span two or more epochs, `ci_method` says which; else the median's order-statistic interval,
    None below 6 rounds), `sweeps` (the interleaved sweep of each round of `data`; two entries pair round by
    round where their sweeps agree), `epochs` (the epoch — fresh workers — of each round), `contended_rounds`
    (rounds the contention sentinel flagged), and `idle_cpu_s`/`worked_while_idle` (the CPU its workers used
    while stopped between rounds; an entry that worked while idle gets no verdict).
    """

    min: float
    max: float
    mean: float
    stddev: float
    rounds: int
    median: float
    iqr: float
    q1: float
    q3: float
    iqr_outliers: int
    stddev_outliers: int
    outliers: str
    ld15iqr: float
    hd15iqr: float
    ops: float
    total: float
    data: list[float]
    iterations: int
    median_ci: list[float] | None = None
    ci_method: str = "order-statistic"
    sweeps: list[int] | None = None
    epochs: list[int] | None = None
    contended_rounds: int = 0
    idle_cpu_s: float | None = None
    worked_while_idle: bool = False

    @classmethod
    def of(cls, timing: Timing) -> Stats:
        """The statistics of one timing, per call, with the typical call's 95 % interval."""
        data = timing.per_call()
        ci = typical_call(data, timing.epochs)
        return cls(
            **summarize(data),
            data=data,
            iterations=timing.iterations,
            median_ci=[ci.low, ci.high] if ci.low is not None and ci.high is not None else None,
            ci_method=ci.method,
            sweeps=timing.sweeps,
            epochs=timing.epochs,
            contended_rounds=sum(timing.contended or []),
            idle_cpu_s=timing.idle.cpu_s if timing.idle is not None else None,
            worked_while_idle=bool(timing.idle and timing.idle.worked),
        )


def typical_call(data: Sequence[float], epochs: Sequence[int] | None) -> Interval:
    """Seconds per call with its 95 % interval: across epochs (worker processes) when there are two or more,
    else the median's order-statistic interval over the rounds."""
    if epochs is not None and len(set(epochs)) >= 2:
        return replicated_median(data, epochs)
    return median_interval(data)


@dataclass(frozen=True, kw_only=True)
class MeasuredInfo(Record):
    """The `extra_info` every entry carries; each group derives its own record from this one.

    Attributes:
        backend, mode, device, versions, threads: what ran, and with how many threads.
        batch_size: images per call; flops_per_call: the spec's count for one call.
        floor_s: the roofline's bare-matmul floor for the same arithmetic (None when unknown).
        median_s, gflops, images_per_s, fraction_of_floor: at the median call.
        warmup_s, warmup_calls: the warm-up and calibration kept out of the statistics.
    """

    backend: str
    mode: str
    device: str
    versions: dict[str, str]
    threads: int | None
    batch_size: int
    flops_per_call: int
    floor_s: float | None
    median_s: float
    gflops: float
    images_per_s: float
    fraction_of_floor: float | None
    warmup_s: float | None
    warmup_calls: int | None


def measured(timing: Timing, batch: int, floor: WorkloadFloor | None) -> dict[str, Any]:
    """The derived fields of a timing against its workload's floor (None: no roofline for it): median, GFLOP/s,
    images/s, and the fraction of the GEMM-only and of the full floor."""
    median = timing.median_call()
    flops = floor.spec_flops if floor else 0
    floor_s = floor.floor_s if floor else None
    full_floor_s = floor.full_floor_s if floor else None
    return {
        "batch_size": batch,
        "flops_per_call": flops,
        "floor_s": floor_s,
        "full_floor_s": full_floor_s,
        "fraction_of_full_floor": fraction_of_floor(full_floor_s, median),
        "median_s": median,
        "gflops": flops / median / 1e9,
        "images_per_s": batch / median,
        "fraction_of_floor": floor_s / median if floor_s and median else None,
        "warmup_s": timing.warmup_s,
        "warmup_calls": timing.warmup,
    }


@dataclass(frozen=True)
class Entry(Record):
    """One measurement in pytest-benchmark's layout (`pytest-benchmark compare` reads a list of them)."""

    group: str
    name: str
    fullname: str
    params: dict[str, Any]
    param: str
    extra_info: dict[str, Any]
    options: dict[str, Any]
    stats: Stats

    @classmethod
    def make(cls, group: str, key: str, params: dict[str, Any], timing: Timing, info: MeasuredInfo) -> Entry:
        """The entry `group[key]` of one timing and the group's typed `info`."""
        name = f"{group}[{key}]"
        return cls(
            group=group,
            name=name,
            fullname=f"cvae-bench::{name}",
            params=params,
            param=key,
            extra_info=info.to_json(),
            options={"timer": "perf_counter", "min_rounds": len(timing.round_s), "in_worker": True},
            stats=Stats.of(timing),
        )

    @property
    def batch(self) -> int | None:
        """The batch size in `params`, if any."""
        value = self.params.get("batch")
        return None if value is None else int(value)


@dataclass(frozen=True)
class BackendRun:
    """One backend in one mode as the runner measured it, in memory (bench.json holds its entries).

    Attributes:
        identity: the backend, mode, device and versions.
        audit: `runtime.threads.process_audit()` of its worker.
        results: each backend group's typed result, by group name.
        twin: True for the A/A twin (a second worker of the same backend/mode; its entries are marked).
        reference: True for a row a standalone group added (`groups.base.Reference`), not a backend.
        memory: each timed call's memory figures, by `bench.memory.memory_key` (empty: not measured).
    """

    identity: BackendIdentity
    audit: dict[str, Any]
    results: dict[str, Any]
    twin: bool = False
    reference: bool = False
    memory: dict[str, MemoryFigures] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchRun:
    """Everything one `cvae-bench bench` measured, in memory; `bench.document.build_document` writes it down.

    Attributes:
        started: UTC time the run began (ISO 8601).
        options: the options as bench.json records them (`BenchOptions.to_dict()`); spec: the model spec.
        machine_info: `runtime.machine.machine_info` (pytest-benchmark's shape).
        load: the machine's load before and after.
        roofline: the ceiling and every workload's floor.
        backends: every backend run; standalone: each standalone group's result, by group name.
        rounds: how the backend groups' interleaved rounds ran (None: no backend group ran).
    """

    started: str
    options: dict[str, Any]
    spec: dict[str, Any]
    machine_info: dict[str, Any]
    load: LoadWindow
    roofline: Roofline
    backends: list[BackendRun]
    standalone: dict[str, Any]
    rounds: RoundsSummary | None = None
