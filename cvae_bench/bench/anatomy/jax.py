"""The anatomy adapter for keras-jax: jax.profiler's trace, with XLA:CPU's per-thunk (HLO op) events."""

from __future__ import annotations

import glob
import time
from collections.abc import Callable
from typing import Any

from cvae_bench.bench.anatomy.records import Profiled, from_spans
from cvae_bench.bench.anatomy.trace import TraceEvent, read_chrome_trace

NOTE = (
    "jax.profiler trace (perfetto JSON): XLA:CPU's thunk executor times every HLO instruction it runs "
    "(events with an hlo_op); thunks that ran at once on XLA's threads share their time pro rata. XLA fuses "
    "Adam with the other element-wise work, and a fusion's name does not say which, so Adam's fusions count "
    "as element-wise (the optimizer category stays empty); YNNPACK fusions (ynn_fusion) hold a GEMM with its "
    "fused bias/activation and count as GEMMs. Overhead: PjRt dispatch and executor spans with no thunk "
    "running; the remainder: Python and the profiler."
)


def split_events(events: list[TraceEvent]) -> tuple[list[tuple[str, float, float]], list[tuple[float, float]]]:
    """(thunks as (hlo_op, start, end), runtime spans): Python-tracer events ("$…") are left out."""
    kernels = [(str(e.args["hlo_op"]), e.start, e.end) for e in events if "hlo_op" in e.args]
    runtime = [(e.start, e.end) for e in events if "hlo_op" not in e.args and not e.name.startswith(("$", "end: "))]
    return kernels, runtime


def profile(call: Callable[[], None], calls: int, sync: Callable[[], None], workdir: str) -> Profiled:
    """`calls` calls of `call` under jax.profiler; returns the thunks' times per call."""
    import jax

    jax.profiler.start_trace(workdir, create_perfetto_trace=True)
    try:
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        sync()
        wall = time.perf_counter() - t0
    finally:
        stop: Any = jax.profiler.stop_trace  # untyped in jax's stubs
        stop()
    paths = glob.glob(f"{workdir}/**/perfetto_trace.json.gz", recursive=True)
    if not paths:
        return Profiled("jax.profiler", "xla", wall / calls, [], note="jax.profiler wrote no perfetto trace here")
    kernels, runtime = split_events(read_chrome_trace(paths[0]))
    ops, extra = from_spans("xla", kernels, runtime, calls)
    return Profiled("jax.profiler", "xla", wall / calls, ops, extra, NOTE)
