"""The anatomy adapter for onnxruntime: its own profiler (SessionOptions.enable_profiling) and its JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cvae_bench.bench.anatomy.records import Profiled, from_spans, timed_calls
from cvae_bench.bench.anatomy.trace import TraceEvent, read_chrome_trace

NOTE = (
    "onnxruntime's profiler (enable_profiling, Chrome-trace JSON): each node's kernel time by op type; "
    "overhead: the session's run (model_run) outside its kernels; the remainder: the Python call and IO "
    "binding outside the session's run."
)


def split_events(events: list[TraceEvent]) -> tuple[list[tuple[str, float, float]], list[tuple[float, float]]]:
    """(kernels as (op type, start, end), session runs) of an onnxruntime profile."""
    kernels = [
        (str(e.args.get("op_name", e.name)), e.start, e.end)
        for e in events
        if e.category == "Node" and e.name.endswith("_kernel_time")
    ]
    runtime = [(e.start, e.end) for e in events if e.category == "Session" and e.name == "model_run"]
    return kernels, runtime


def profiled_session(path: str, providers: list[str], threads: int | None, prefix: str) -> Any:
    """A session like the benchmark's (`onnx.sessions.session_options`), with the profiler on."""
    import onnxruntime as ort

    from cvae_bench.onnx.sessions import session_options

    opts = session_options(threads)
    opts.enable_profiling = True
    opts.profile_file_prefix = prefix
    return ort.InferenceSession(path, opts, providers=providers)


def profile(call: Callable[[], None], calls: int, session: Any) -> Profiled:
    """`calls` calls of `call` (runs of `session`, whose profiler is on); its profile read back per call."""
    wall = timed_calls(call, calls)  # run_with_iobinding returns with the output in host memory: no sync
    path = session.end_profiling()
    kernels, runtime = split_events(read_chrome_trace(path))
    # The profile began with the session: keep the last `calls` runs (the warm-up ran before them).
    runtime = sorted(runtime)[-calls:]
    if runtime:
        kernels = [k for k in kernels if k[1] >= runtime[0][0]]
    ops, extra = from_spans("onnxruntime", kernels, runtime, calls)
    return Profiled("onnxruntime profiler", "onnxruntime", wall / calls, ops, extra, NOTE)
