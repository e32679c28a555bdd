"""The contract of a benchmark group: what it measures, in which worker, and how its results read.

A group is one module under `bench/groups/` holding a `BenchGroup` subclass, its worker job(s) (module-level
functions, passed to `Worker.run_job` by reference), its typed result record (what `measure` returns)
and its typed `extra_info` record (a `MeasuredInfo`); it is listed once in `bench.groups.GROUPS`.

Two kinds:

- `BackendGroup`: runs inside each backend's worker, next to the backend (train-step, sample-native);
  the runner starts one worker per backend and mode and runs every selected backend group in it.
- `StandaloneGroup`: runs once, after the backends, in workers of its own (sample-onnxruntime).

What the runner and the report ask of every group: `workloads` (the GEMMs its roofline needs), `measure`
(in the parent; it runs the group's jobs in workers), `entries` (one pytest-benchmark `Entry` per timed
call, from the result and the roofline), and `row` (the cells of its table, read from an `Entry`, so that
bench.json alone re-renders the report).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from cvae_bench.backends.registry import BackendInfo
from cvae_bench.bench.fairness import AuditEntry
from cvae_bench.bench.options import BenchOptions
from cvae_bench.bench.records import BackendIdentity, Entry, MeasuredInfo
from cvae_bench.bench.roofline import Roofline, Workload
from cvae_bench.bench.rounds import Plan, measure_alone
from cvae_bench.bench.timing import Timing
from cvae_bench.core.events import SILENT, Reporter
from cvae_bench.core.tuning import UNTUNED, Tuning
from cvae_bench.models.spec import ModelSpec
from cvae_bench.runtime.threads import thread_env
from cvae_bench.runtime.worker import RemoteBackend, Worker

R = TypeVar("R")
#: What the rounds engine gives back per plan: (its timing, its setup's record, what its `finish` returned).
Measured = tuple[Timing, Any, Any]

#: A registry entry for workers that load no backend (matmul ceiling, onnxruntime).
BARE_WORKER = BackendInfo(name="bench", target="", requires=())


def start_worker(info: BackendInfo, options: BenchOptions, tuning: Tuning = UNTUNED) -> Worker:
    """A worker for `info` with the benchmark's idle timeout, the thread count asked for (the tuning's, else
    `--threads`; none: the frameworks' own defaults) and the tuning's environment."""
    threads = tuning.threads or options.threads
    env = thread_env(threads) if threads else {}
    env.update(tuning.environment({**os.environ, **env}))
    return Worker(info, idle_timeout=options.idle_timeout, extra_env=env)


# -- cells shared by every table -----------------------------------------------------------------------------
def fmt_time(seconds: float | None) -> str:
    """Seconds in the unit that keeps 3–4 significant digits: '27.9 µs', '2.41 ms', '1.20 s'."""
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    """`value` formatted with `spec`, or '—' for None."""
    return "—" if value is None else format(value, spec) + suffix


def rate_cells(info: MeasuredInfo, ratio: float) -> list[str]:
    """images/s, GFLOP/s, fraction of the GEMM-only floor and of the full (byte-aware) floor, and the ratio
    to the fastest, as every table shows them (an info record without a full floor shows '—')."""
    return [
        fmt(info.images_per_s, ",.0f"),
        fmt(info.gflops, ".1f"),
        fmt(info.fraction_of_floor, ".2f"),
        fmt(getattr(info, "fraction_of_full_floor", None), ".2f"),
        f"{ratio:.2f}×",
    ]


#: The cells of `rate_cells`, by header.
RATE_HEADERS = ("images/s", "GFLOP/s", "of floor", "of full floor", "vs fastest")


class BenchGroup(ABC, Generic[R]):
    """What every benchmark group declares; see the module docstring.

    Attributes:
        name: the group's name in `--groups`, bench.json (`group`) and pytest-benchmark.
        title: the heading of its table.
        headers: its table's column headers (`row` gives the cells).
        info_type: its `extra_info` record.
        needs_data: whether it reads the data set (the command verifies it, downloading if needed, first).
        split_by_batch: whether pytest-benchmark shows one table per batch size.
        section: a key of its own under bench.json's `cvae_bench` (None: none), filled by `section_json`.
        by_default: whether `cvae-bench bench` without `--groups` runs it (opt-in groups: browsers, profiles).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    headers: ClassVar[tuple[str, ...]]
    info_type: ClassVar[type[MeasuredInfo]]
    needs_data: ClassVar[bool] = False
    split_by_batch: ClassVar[bool] = True
    by_default: ClassVar[bool] = True
    section: ClassVar[str | None] = None

    @abstractmethod
    def workloads(self, options: BenchOptions) -> list[Workload]:
        """The workloads (GEMMs and FLOPs) of every call this group times, for the roofline."""

    @abstractmethod
    def row(self, entry: Entry, ratio: float) -> list[str]:
        """The cells of one table row (`ratio`: this entry's median over the fastest in its batch)."""

    def info(self, entry: Entry) -> Any:
        """The entry's `extra_info` as this group's typed record."""
        return self.info_type.from_json(entry.extra_info)

    def section_json(self, result: R | None) -> dict[str, Any] | None:
        """This group's own part of bench.json (`section`), from its result (None: the group did not run)."""
        return None

    def notes(self, section: dict[str, Any] | None) -> list[str]:
        """Lines the report prints after this group's table, read from its section of bench.json."""
        return []

    def entry_notes(self, entries: Sequence[Entry]) -> list[str]:
        """Lines the report prints after this group's table, read from its entries."""
        return []


class BackendGroup(BenchGroup[R]):
    """A group measured inside each backend's worker, next to the backend.

    Its calls are timed by the rounds engine (`bench.rounds`): `plans` names each call and its setup (run in
    the worker), the runner interleaves the rounds of every backend's calls, and `assemble` turns each
    call's timing, setup record and final value back into the group's result.
    """

    def plans(self, options: BenchOptions) -> list[Plan]:
        """The calls this group times in each backend's worker, in order (none: the group is not a timing
        and runs by `measure` after the sweeps, e.g. a profiler)."""
        return []

    def assemble(self, measured: dict[str, Measured]) -> R:
        """The group's result from each plan's (timing, setup record, finish value), by plan key."""
        raise NotImplementedError(f"{type(self).__name__} has plans but no assemble")

    def measure(self, backend: RemoteBackend, options: BenchOptions, reporter: Reporter = SILENT) -> R:
        """Every plan's rounds in a row next to `backend` (the pytest suite's per-test layout), as a result."""
        return self.assemble(measure_alone(backend, self.plans(options), options.rounds, reporter))

    @abstractmethod
    def entries(self, identity: BackendIdentity, result: R, roofline: Roofline, threads: int | None) -> list[Entry]:
        """One pytest-benchmark entry per timed call of `result`."""

    def refine_audit(self, entry: AuditEntry, result: R) -> AuditEntry:
        """The backend worker's fairness-audit entry, with what this group adds to it."""
        return entry


@dataclass
class Reference:
    """A row that a standalone group adds to a backend group's table, timed in the backends' own sweeps.

    Its plans use that backend group's keys, so the group's `assemble` and `entries` treat it as one more
    backend, and every ratio against it is paired by sweep. The host (a worker the group opened on the
    runner's stack) runs the plans' setups in the first epoch; each later epoch starts a fresh worker from
    `info` (what the host was started from: its environment), as it does for every backend.
    """

    identity: BackendIdentity
    host: Worker
    plans: list[Plan]
    info: BackendInfo = BARE_WORKER


class StandaloneGroup(BenchGroup[R]):
    """A group measured once, after the backends, in workers of its own."""

    def references(
        self, options: BenchOptions, group_names: set[str], stack: ExitStack, reporter: Reporter = SILENT
    ) -> list[Reference]:
        """Rows this group adds to the backend groups in `group_names`, opened on `stack` (none by default)."""
        return []

    @abstractmethod
    def measure(self, options: BenchOptions, backends: Sequence[BackendIdentity], reporter: Reporter = SILENT) -> R:
        """Measure (`backends`: the backends measured before, e.g. to pick an exporter)."""

    @abstractmethod
    def entries(self, result: R, roofline: Roofline, threads: int | None) -> list[Entry]:
        """One pytest-benchmark entry per timed call of `result`."""

    def audit_entries(self, result: R, threads: int | None) -> list[AuditEntry]:
        """The fairness-audit entries of the processes this group measured in."""
        return []


def decoder_inputs(spec: ModelSpec, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Latent codes and one-hot labels for one decoder call at `batch`."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, spec.latent_dim)).astype(np.float32)
    y = np.eye(spec.num_classes, dtype=np.float32)[rng.integers(0, spec.num_classes, batch)]
    return z, y
