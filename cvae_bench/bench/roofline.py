"""The roofline: FLOPs of the model from the spec, and the fp32 matmul ceiling of this machine at its shapes.

How the ceiling is measured. The model is a stack of dense layers, so nearly all its arithmetic is GEMMs
of a handful of shapes. Every GEMM a training step needs at batch 64, and every GEMM of the decoder at
each sampling batch size, is timed alone, fp32, with pre-allocated operands and output, each library in
a worker of its own (same thread count as the backends; a pool of spinning threads left by one library
slows the next one's by orders of magnitude on a small machine): NumPy (`np.matmul(out=)`, its BLAS),
torch (`torch.mm(out=)`, MKL) and onnxruntime (one MatMul node run with IO binding, MLAS; once with B
an input and once with B a constant that MLAS pre-packs, as it does a model's weights). Warm-up, then
calibrated rounds of ≥ 10 ms spread over three sweeps of all shapes (`harness.timing`); a GEMM's figure
is its fastest round, since foreign load only ever adds time (medians are kept in the JSON), and the
fastest library per shape counts. The *floor* of a workload is the sum of its GEMMs' best times: what
this machine needs for that arithmetic alone, with no bias, activation, loss, optimiser or framework
overhead; per-library floors are kept too. Every measured figure is reported as `floor / measured`
("of floor": 1.0 means as fast as the bare matmuls; int8 can exceed it).

The GEMMs of a training step (batch B, each dense layer d_in → d_out): forward [B,d_in]·[d_in,d_out];
weight gradient [d_in,B]·[B,d_out]; input gradient [B,d_out]·[d_out,d_in], except for the encoder's first
layer, whose input is data. The spec's `train_step_flops` (3 × forward: 323.0 MFLOP at batch 64) also
counts that one, so train-step GFLOP/s figures, which use the spec's count, are 19 % above the GEMMs
really needed (271.0 MFLOP).
"""

from __future__ import annotations

import functools
import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cvae_bench.models.spec import ModelSpec


@dataclass(frozen=True)
class Gemm:
    """One matrix product [m, k] · [k, n]."""

    m: int
    k: int
    n: int

    @property
    def flops(self) -> int:
        """2·m·k·n (a multiply and an add per MAC)."""
        return 2 * self.m * self.k * self.n

    @property
    def key(self) -> str:
        """'m×k×n', the shape's name in results."""
        return f"{self.m}x{self.k}x{self.n}"


def _layers(dims: Sequence[int]) -> list[tuple[int, int]]:
    return list(itertools.pairwise(dims))


def train_step_gemms(spec: ModelSpec, batch: int | None = None) -> list[Gemm]:
    """The GEMMs of one training step: forward, weight and input gradients of every dense layer."""
    b = spec.batch_size if batch is None else batch
    out: list[Gemm] = []
    for part, dims in (("encoder", spec.encoder_dims), ("decoder", spec.decoder_dims)):
        for i, (d_in, d_out) in enumerate(_layers(dims)):
            out.append(Gemm(b, d_in, d_out))  # forward
            out.append(Gemm(d_in, b, d_out))  # dW = Xᵀ·dY
            if not (part == "encoder" and i == 0):  # no gradient w.r.t. the data
                out.append(Gemm(b, d_out, d_in))  # dX = dY·Wᵀ
    return out


def decoder_gemms(spec: ModelSpec, batch: int) -> list[Gemm]:
    """The GEMMs of one decoder forward pass at `batch`."""
    return [Gemm(batch, d_in, d_out) for d_in, d_out in _layers(spec.decoder_dims)]


def gemm_flops(gemms: Iterable[Gemm]) -> int:
    """Total FLOPs of a list of GEMMs."""
    return sum(g.flops for g in gemms)


def unique(gemms: Iterable[Gemm]) -> list[Gemm]:
    """Distinct shapes, in first-seen order."""
    return list(dict.fromkeys(gemms))


#: Libraries of the matmul ceiling, each timed in a worker of its own (`bench_run.measure_ceiling`).
CEILING_LIBRARIES = ("numpy", "torch", "onnxruntime")


def ceiling_job(
    backend: Any,
    emit: Any,
    *,
    shapes: list[tuple[int, int, int]],
    rounds: int = 9,
    min_time: float = 0.01,
    passes: int = 3,
    libraries: Sequence[str] = CEILING_LIBRARIES,
    threads: int | None = None,
) -> dict[str, Any]:
    """Worker job (no backend needed): the fastest seconds per fp32 GEMM of each shape, per library.

    onnxruntime (MLAS) is timed twice: "onnxruntime" with both operands as inputs, and
    "onnxruntime-const" with B a constant of the graph, which MLAS pre-packs, as it does a model's weights.

    Returns:
        {"libraries": {name: version}, "shapes": {"m×k×n": {library: seconds of its fastest round}},
        "medians": the same with the median round}; a library that is not installed is left out.
    """
    import numpy as np

    from cvae_bench.bench.timing import per_call, time_rounds

    rng = np.random.default_rng(0)
    runners: dict[str, Any] = {}
    versions: dict[str, str] = {}
    if "numpy" in libraries:
        versions["numpy"] = np.__version__

        def np_mm(a: Any, b: Any, c: Any) -> None:
            np.matmul(a, b, out=c)

        runners["numpy"] = (lambda x: x, np_mm)
    if "torch" in libraries:
        try:
            import torch
        except ImportError:
            pass
        else:
            versions["torch"] = torch.__version__

            def torch_mm(a: Any, b: Any, c: Any) -> None:
                torch.mm(a, b, out=c)

            runners["torch"] = (torch.from_numpy, torch_mm)
    if "onnxruntime" in libraries:
        try:
            import onnxruntime
        except ImportError:
            pass
        else:
            versions["onnxruntime"] = onnxruntime.__version__
    calls: dict[str, dict[str, Any]] = {}
    for m, k, n in shapes:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        key = Gemm(m, k, n).key
        calls[key] = {
            lib: functools.partial(mm, convert(a), convert(b), convert(np.empty((m, n), np.float32)))
            for lib, (convert, mm) in runners.items()
        }
        if "onnxruntime" in versions:
            calls[key].update(_ort_matmuls(a, b, threads))
    # A ceiling is a best case: other work on the machine only ever adds time, so each GEMM's figure is its
    # fastest round. The rounds are spread over `passes` sweeps of every shape and library, so that a burst
    # of foreign load cannot spoil all the rounds of one measurement.
    per_round: dict[str, dict[str, list[float]]] = {key: {lib: [] for lib in c} for key, c in calls.items()}
    per_pass = max(1, rounds // passes)
    for _ in range(passes):
        for key, by_lib in calls.items():
            for lib, call in by_lib.items():
                t = time_rounds(call, rounds=per_pass, min_time=min_time, warmup=3)
                per_round[key][lib] += per_call(t["round_s"], t["iterations"])
    result = {key: {lib: min(v) for lib, v in by_lib.items()} for key, by_lib in per_round.items()}
    medians = {key: {lib: statistics.median(v) for lib, v in by_lib.items()} for key, by_lib in per_round.items()}
    for key in result:
        emit({"type": "ceiling", "shape": key, **result[key]})
    return {"libraries": versions, "shapes": result, "medians": medians, "statistic": "min of rounds"}


def _ort_matmuls(a: Any, b: Any, threads: int | None) -> dict[str, Any]:
    """Calls of one onnxruntime MatMul on (a, b): B as an input, and B as a pre-packed constant."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    m, k = a.shape
    n = b.shape[1]
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    out = np.empty((m, n), np.float32)
    a_info = helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])
    b_info = helper.make_tensor_value_info("B", TensorProto.FLOAT, [k, n])
    c_info = helper.make_tensor_value_info("C", TensorProto.FLOAT, [m, n])
    node = helper.make_node("MatMul", ["A", "B"], ["C"])
    calls: dict[str, Any] = {}
    for lib, graph in (
        ("onnxruntime", helper.make_graph([node], "mm", [a_info, b_info], [c_info])),
        ("onnxruntime-const", helper.make_graph([node], "mm", [a_info], [c_info], [numpy_helper.from_array(b, "B")])),
    ):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        io = sess.io_binding()
        io.bind_cpu_input("A", a)
        if lib == "onnxruntime":
            io.bind_cpu_input("B", b)
        io.bind_output("C", "cpu", 0, np.float32, [m, n], out.ctypes.data)
        calls[lib] = functools.partial(_run_bound, sess, io, out)  # `out` must live as long as the binding
    return calls


def _run_bound(sess: Any, io: Any, out: Any) -> None:
    sess.run_with_iobinding(io)


def best_seconds(shapes: dict[str, dict[str, float]], gemm: Gemm) -> tuple[float, str]:
    """The fastest library's median seconds for `gemm`, and that library."""
    per_lib = shapes[gemm.key]
    lib = min(per_lib, key=lambda name: per_lib[name])
    return per_lib[lib], lib


def floor_seconds(shapes: dict[str, dict[str, float]], gemms: Iterable[Gemm]) -> float:
    """The floor of a workload: the sum of its GEMMs' best measured times."""
    return sum(best_seconds(shapes, g)[0] for g in gemms)


def library_floors(shapes: dict[str, dict[str, float]], gemms: Sequence[Gemm]) -> dict[str, float]:
    """The floor of a workload with each library alone (libraries that timed every shape)."""
    libs = set.intersection(*(set(shapes[g.key]) for g in gemms)) if gemms else set()
    return {lib: sum(shapes[g.key][lib] for g in gemms) for lib in sorted(libs)}


def needed_shapes(
    spec: ModelSpec, train_batch: int | None, sample_batches: Sequence[int]
) -> list[tuple[int, int, int]]:
    """Every GEMM shape the requested groups need (train step at `train_batch`, decoder at each batch)."""
    gemms: list[Gemm] = []
    if train_batch:
        gemms += train_step_gemms(spec, train_batch)
    for b in sample_batches:
        gemms += decoder_gemms(spec, b)
    return [(g.m, g.k, g.n) for g in unique(gemms)]


def summarize_roofline(
    spec: ModelSpec,
    ceiling: dict[str, Any],
    train_batch: int | None,
    sample_batches: Sequence[int],
) -> dict[str, Any]:
    """FLOPs, floors and ceilings of every workload, from a `ceiling_job` result.

    Returns:
        {"train_step": {...} or None, "decode": {batch: {...}}, "libraries", "shapes"} where each workload
        has `spec_flops` (the spec's count), `gemm_flops`, `floor_s` and `ceiling_gflops` (GEMM FLOPs per
        second of the floor).
    """
    shapes = ceiling["shapes"]
    out: dict[str, Any] = {
        "libraries": ceiling["libraries"],
        "shapes": shapes,
        "medians": ceiling.get("medians", {}),
        "decode": {},
    }
    out["train_step"] = None
    if train_batch:
        gemms = train_step_gemms(spec, train_batch)
        floor = floor_seconds(shapes, gemms)
        out["train_step"] = {
            "batch": train_batch,
            "spec_flops": spec.train_step_flops(train_batch),
            "gemm_flops": gemm_flops(gemms),
            "floor_s": floor,
            "ceiling_gflops": gemm_flops(gemms) / floor / 1e9,
            "floor_by_library_s": library_floors(shapes, gemms),
            "gemms": [
                {"shape": g.key, "seconds": best_seconds(shapes, g)[0], "library": best_seconds(shapes, g)[1]}
                for g in gemms
            ],
        }
    for b in sample_batches:
        gemms = decoder_gemms(spec, b)
        floor = floor_seconds(shapes, gemms)
        out["decode"][b] = {
            "batch": b,
            "spec_flops": spec.flops("decoder", b),
            "spec_flops_per_image": spec.flops("decoder", 1),
            "gemm_flops": gemm_flops(gemms),
            "floor_s": floor,
            "ceiling_gflops": gemm_flops(gemms) / floor / 1e9,
            "floor_by_library_s": library_floors(shapes, gemms),
        }
    return out


def fraction_of_floor(floor_s: float | None, measured_s: float | None) -> float | None:
    """floor / measured: the share of this machine's bare-matmul speed a measurement reaches."""
    if not floor_s or not measured_s:
        return None
    return floor_s / measured_s
