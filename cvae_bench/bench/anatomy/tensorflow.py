"""The anatomy adapter for keras-tensorflow: the TensorFlow profiler's XSpace (xplane.pb), read with TF's proto.

In "jit" mode the step is one XLA executable and the host plane holds XLA:CPU's per-thunk events (an
`hlo_op` stat), as jax's does; in "graph" and "eager" modes it holds TensorFlow's op kernels (a `tf_op`
stat, "name:Type").
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from typing import Any

from cvae_bench.bench.anatomy import hlo
from cvae_bench.bench.anatomy.records import Profiled, from_spans, timed_calls

NOTE = (
    "TensorFlow profiler (tf.profiler.experimental, XSpace read with TF's xplane proto): in jit mode XLA:CPU's "
    "per-thunk (HLO op) times, as for jax, each filed by what its HLO computes (dots, named after the TF op "
    "as MatMul.N, are GEMMs; fusions of Adam's ops, traced under the optimizer's name scope, are the "
    "optimizer); in graph/eager modes each TF op kernel's time by op type. Overhead: executor and runtime "
    "spans with no kernel running; the remainder: Python and the profiler."
)


def _stat_value(stat: Any, names: dict[int, str]) -> Any:
    kind = stat.WhichOneof("value")
    if kind == "ref_value":
        return names.get(stat.ref_value, "")
    return getattr(stat, kind) if kind else None


def read_xspace(data: bytes) -> list[tuple[str, float, float, dict[str, Any]]]:
    """Every event of the host planes of a serialised XSpace: (name, start s, end s, stats by name)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(data)
    out = []
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        stat_names = {k: v.name for k, v in plane.stat_metadata.items()}
        for line in plane.lines:
            base = line.timestamp_ns * 1e-9
            for ev in line.events:
                meta = plane.event_metadata[ev.metadata_id]
                stats = {stat_names.get(s.metadata_id, ""): _stat_value(s, stat_names) for s in ev.stats}
                for s in meta.stats:
                    stats.setdefault(stat_names.get(s.metadata_id, ""), _stat_value(s, stat_names))
                start = base + ev.offset_ps * 1e-12
                out.append((meta.name, start, start + ev.duration_ps * 1e-12, stats))
    return out


def split_events(
    events: list[tuple[str, float, float, dict[str, Any]]],
) -> tuple[str, list[tuple[str, float, float]], list[tuple[float, float]]]:
    """(framework whose names the kernels carry, kernels, runtime spans): XLA thunks when there are any,
    else TF op kernels by type; every other event but Python's ("$…") is runtime."""
    xla = [(str(st["hlo_op"]), s, e) for n, s, e, st in events if st.get("hlo_op")]
    if xla:
        runtime = [(s, e) for n, s, e, st in events if not st.get("hlo_op") and not n.startswith(("$", "end: "))]
        return "xla", xla, runtime
    tf = [(str(st["tf_op"]).rsplit(":", 1)[-1], s, e) for n, s, e, st in events if st.get("tf_op")]
    runtime = [(s, e) for n, s, e, st in events if not st.get("tf_op") and not n.startswith(("$", "end: "))]
    return "tensorflow", tf, runtime


def profile(call: Callable[[], None], calls: int, sync: Callable[[], None], workdir: str) -> Profiled:
    """`calls` calls of `call` under the TensorFlow profiler; returns the kernels' times per call."""
    import tensorflow as tf

    tf.profiler.experimental.start(workdir)
    try:
        wall = timed_calls(call, calls, sync)
    finally:
        tf.profiler.experimental.stop()
    paths = glob.glob(f"{workdir}/**/*.xplane.pb", recursive=True)
    if not paths:
        return Profiled("tf.profiler", "tensorflow", wall / calls, [], note="the TF profiler wrote no xplane.pb")
    with open(paths[0], "rb") as f:
        data = f.read()
    framework, kernels, runtime = split_events(read_xspace(data))
    known = hlo.categories_from_xspace(data) if framework == "xla" else {}
    ops, extra = from_spans(framework, kernels, runtime, calls, known)
    if not kernels:
        note = "the TensorFlow profiler gave no per-op events on this CPU; the whole step is the remainder"
        return Profiled("tf.profiler", "tensorflow", wall / calls, [], {}, note)
    return Profiled("tf.profiler", framework, wall / calls, ops, extra, NOTE)
