"""sample-native: the backend's own decoder (`Backend.decode`, NumPy in and out) at each sampling batch size.

Host/device copies are included, as a user of the backend pays them; the first call at each size is timed
apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cvae_bench.bench.groups.base import BackendGroup, Measured, decoder_inputs, fmt_time, rate_cells
from cvae_bench.bench.options import BenchOptions
from cvae_bench.bench.records import BackendIdentity, CallTiming, Entry, MeasuredInfo, measured
from cvae_bench.bench.roofline import DECODE, Roofline, Workload, decode_workload
from cvae_bench.bench.rounds import Plan, Timed, run_alone
from cvae_bench.core.records import Record


def decode_workloads(options: BenchOptions) -> list[Workload]:
    """The decoder at every sampling batch size (both sampling groups time it)."""
    return [decode_workload(options.spec, b) for b in options.batch_sizes]


@dataclass(frozen=True)
class SampleNativeResult(Record):
    """What `sample_native_job` returns: the timing of each batch size."""

    batches: dict[int, CallTiming] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SampleNativeInfo(MeasuredInfo):
    """The `extra_info` of a sample-native entry."""

    build_s: float
    first_call_s: float
    full_floor_s: float | None = None
    fraction_of_full_floor: float | None = None


def sample_native_setup(backend: Any, emit: Any, *, batch: int, warmup: int = 3) -> tuple[Timed, float]:
    """Rounds-engine setup (in the worker): the decoder's inputs at `batch`, its first call timed apart."""
    z, y = decoder_inputs(backend.spec, batch)
    t0 = time.perf_counter()
    backend.decode(z, y)
    first = time.perf_counter() - t0
    last: list[Any] = [None]

    def call() -> None:
        last[0] = backend.decode(z, y)

    def end_round() -> None:
        # The round ends on the work's own result: one value of the last call's output reaches the host (a
        # lazy or device array is waited for here), whatever synchronize() does.
        backend.synchronize()
        float(np.asarray(last[0]).reshape(-1)[-1])

    return Timed(fn=call, sync=end_round, warmup=warmup), first


def sample_native_job(
    backend: Any,
    emit: Any,
    *,
    batch_sizes: list[int],
    rounds: int = 15,
    min_time: float = 0.1,
    warmup: int = 3,
) -> SampleNativeResult:
    """Worker job: time `backend.decode` at each batch size, every round in a row."""
    out: dict[int, CallTiming] = {}
    for b in batch_sizes:
        timing, first, _ = run_alone(
            sample_native_setup, backend, emit, rounds=rounds, min_time=min_time, batch=b, warmup=warmup
        )
        out[b] = CallTiming(timing=timing, first_call_s=first)
        emit({"type": "bench", "what": f"decode batch {b}", "median_s": timing.median_call()})
    return SampleNativeResult(batches=out)


def plan_key(batch: int) -> str:
    """The rounds-engine key of the decoder call at `batch` (a reference row times its own call under it)."""
    return f"sample-native/b{batch}"


class SampleNative(BackendGroup[SampleNativeResult]):
    """sample-native: see the module docstring."""

    name = "sample-native"
    title = "sample-native: the framework's own decoder (NumPy in and out)"
    headers = (
        "batch",
        "backend",
        "mode",
        "median / call",
        "IQR",
        "images/s",
        "GFLOP/s",
        "of floor",
        "of full floor",
        "vs fastest",
        "first call",
    )
    info_type = SampleNativeInfo

    def workloads(self, options: BenchOptions) -> list[Workload]:
        return decode_workloads(options)

    def plans(self, options: BenchOptions) -> list[Plan]:
        return [
            Plan(plan_key(b), self.name, b, sample_native_setup, {"batch": b}, options.min_time)
            for b in options.batch_sizes
        ]

    def assemble(self, measured: dict[str, Measured]) -> SampleNativeResult:
        out = {}
        for key, (timing, first, _) in measured.items():
            if key.startswith("sample-native/b"):
                out[int(key.removeprefix("sample-native/b"))] = CallTiming(timing=timing, first_call_s=first)
        return SampleNativeResult(batches=dict(sorted(out.items())))

    def entries(
        self, identity: BackendIdentity, result: SampleNativeResult, roofline: Roofline, threads: int | None
    ) -> list[Entry]:
        out = []
        for b, call in sorted(result.batches.items()):
            floor = roofline.floor(DECODE, b)
            derived = measured(call.timing, b, floor)
            info = SampleNativeInfo(
                backend=identity.backend,
                mode=identity.variant,
                device=identity.device,
                versions=identity.versions,
                threads=threads,
                build_s=identity.build_s,
                first_call_s=call.first_call_s,
                **derived,
            )
            params = {**identity.params, "batch": b}
            out.append(Entry.make(self.name, f"{identity.backend}-{identity.variant}-b{b}", params, call.timing, info))
        return out

    def row(self, entry: Entry, ratio: float) -> list[str]:
        x: SampleNativeInfo = self.info(entry)
        s = entry.stats
        return [
            str(x.batch_size),
            x.backend,
            x.mode,
            fmt_time(s.median),
            fmt_time(s.iqr),
            *rate_cells(x, ratio),
            fmt_time(x.first_call_s),
        ]
