"""The anatomy adapter for keras-jax: jax.profiler's trace, with XLA:CPU's per-thunk (HLO op) events."""

from __future__ import annotations

import glob
from collections.abc import Callable
from typing import Any

from cvae_bench.bench.anatomy import hlo
from cvae_bench.bench.anatomy.records import Profiled, from_spans, timed_calls
from cvae_bench.bench.anatomy.trace import TraceEvent, read_chrome_trace

NOTE = (
    "jax.profiler trace (perfetto JSON): XLA:CPU's thunk executor times every HLO instruction it runs "
    "(events with an hlo_op); thunks that ran at once on XLA's threads share their time pro rata. Each thunk "
    "is filed by what its HLO (stored in the profile's xplane.pb) computes, not by its name: a fusion holding "
    "a dot (YNNPACK's ynn_fusion with its bias/activation, or not) is a GEMM, one whose ops were mostly "
    "traced under the optimizer's name scope (jit(train_step)/adam/…) is the optimizer, one of the RNG's is "
    "data; without the HLO, names decide (and Adam's fusions count as element-wise). Overhead: PjRt "
    "dispatch and executor spans with no thunk running; the remainder: Python and the profiler."
)


def split_events(events: list[TraceEvent]) -> tuple[list[tuple[str, float, float]], list[tuple[float, float]]]:
    """(thunks as (hlo_op, start, end), runtime spans): Python-tracer events ("$…") are left out."""
    kernels = [(str(e.args["hlo_op"]), e.start, e.end) for e in events if "hlo_op" in e.args]
    runtime = [(e.start, e.end) for e in events if "hlo_op" not in e.args and not e.name.startswith(("$", "end: "))]
    return kernels, runtime


def _known(workdir: str) -> dict[str, str]:
    """Thunk categories from the HLO modules of the XSpace that jax.profiler writes beside its trace."""
    known: dict[str, str] = {}
    for path in glob.glob(f"{workdir}/**/*.xplane.pb", recursive=True):
        with open(path, "rb") as f:
            known.update(hlo.categories_from_xspace(f.read()))
    return known


def profile(call: Callable[[], None], calls: int, sync: Callable[[], None], workdir: str) -> Profiled:
    """`calls` calls of `call` under jax.profiler; returns the thunks' times per call."""
    import jax

    jax.profiler.start_trace(workdir, create_perfetto_trace=True)
    try:
        wall = timed_calls(call, calls, sync)
    finally:
        stop: Any = jax.profiler.stop_trace  # untyped in jax's stubs
        stop()
    paths = glob.glob(f"{workdir}/**/perfetto_trace.json.gz", recursive=True)
    if not paths:
        return Profiled("jax.profiler", "xla", wall / calls, [], note="jax.profiler wrote no perfetto trace here")
    kernels, runtime = split_events(read_chrome_trace(paths[0]))
    ops, extra = from_spans("xla", kernels, runtime, calls, _known(workdir))
    return Profiled("jax.profiler", "xla", wall / calls, ops, extra, NOTE)
