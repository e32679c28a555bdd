"""The roofline: FLOPs of the model from the spec, and the fp32 matmul ceiling of this machine at its shapes.

How the ceiling is measured. The model is a stack of dense layers, so nearly all its arithmetic is GEMMs
of a handful of shapes. Every GEMM a training step needs at batch 64, and every GEMM of the decoder at
each sampling batch size, is timed alone, fp32, with pre-allocated operands and output, each library in
a worker of its own (same thread count as the backends; a pool of spinning threads left by one library
slows the next one's by orders of magnitude on a small machine): NumPy (`np.matmul(out=)`, its BLAS),
torch (`torch.mm(out=)`, MKL) and onnxruntime (one MatMul node run with IO binding, MLAS; once with B
an input and once with B a constant that MLAS pre-packs, as it does a model's weights). Warm-up, then
calibrated rounds of ≥ 10 ms spread over three sweeps of all shapes (`bench.timing`); a GEMM's figure
is its fastest round, since foreign load only ever adds time (medians are kept in the JSON), and the
fastest library per shape counts. The *floor* of a workload is the sum of its GEMMs' best times: what
this machine needs for that arithmetic alone, with no bias, activation, loss, optimiser or framework
overhead; per-library floors are kept too. Every measured figure is reported as `floor / measured`
("of floor": 1.0 means as fast as the bare matmuls; int8 can exceed it).

The GEMMs of a training step (batch B, each dense layer d_in → d_out): forward [B,d_in]·[d_in,d_out];
weight gradient [d_in,B]·[B,d_out]; input gradient [B,d_out]·[d_out,d_in], except for the encoder's first
layer, whose input is data. The spec's `train_step_flops` (3 × forward) also counts that one, so
train-step GFLOP/s figures, which use the spec's count, are above what the GEMMs really need.

Each benchmark group declares the workloads it needs (`BenchGroup.workloads`: a `Workload` per kind and
batch); the runner times the union of their GEMM shapes once (`ceiling_job`, a `Ceiling`) and
`summarize_roofline` turns that into one `Roofline` record, which bench.json holds as
`{"libraries", "shapes", "medians", "train_step": {...} | null, "decode": {batch: {...}}, "bandwidth", …}`.

Bytes as well as FLOPs. A step is more than its GEMMs: every element-wise pass (input concat, bias, ReLU,
sigmoid, the loss, and their backward), the optimiser (Adam reads parameters, gradients and both moments and
writes three of them back: 7 × 4 bytes per parameter, ≈ 7 × 3.4 MB per step) and the batch and noise of
each step move bytes that no GEMM accounts for. `train_step_passes` / `decode_passes` count them from the
spec (unfused: each pass reads its inputs and writes its output once), with each pass's category. The same
ceiling workers time STREAM-like kernels (copy and triad, NumPy single-threaded, torch with the benchmark's
threads) at working sets of 4 KiB to 64 MiB (`STREAM_SIZES`); a pass's memory time is its bytes at the
bandwidth of its working set (log-interpolated), its compute time its FLOPs at the triad's FLOP rate in L1.
A GEMM's compute time is its measured time, its memory time its operands' bytes at the same bandwidth. The
*full floor* of a workload is the sum over its parts of max(compute time, memory time); the GEMM-only floor
(`floor_s`) stays as it was, and every entry reports its fraction of each.
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cvae_bench.core.records import Record
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


# -- workloads: what a group asks the roofline for ---------------------------------------------------------
#: The kinds of workload a roofline knows, each one key of its JSON: `train_step` (one workload) and
#: `decode` (one per batch size).
TRAIN_STEP = "train_step"
DECODE = "decode"


@dataclass(frozen=True)
class Workload:
    """One call a group times, as arithmetic: its GEMMs and the spec's FLOP count.

    Attributes:
        kind: TRAIN_STEP or DECODE.
        batch: images per call.
        gemms: every matrix product of the call.
        spec_flops: the spec's FLOPs for the call (what GFLOP/s figures use).
        spec_flops_per_image: the same for one image (decode workloads), for the table.
        passes: every pass over memory that is not a GEMM (bytes of the full floor).
    """

    kind: str
    batch: int
    gemms: tuple[Gemm, ...]
    spec_flops: int
    spec_flops_per_image: int | None = None
    passes: tuple[Pass, ...] = ()


def train_step_workload(spec: ModelSpec, batch: int | None = None) -> Workload:
    """One optimiser step at `batch` (default: the spec's)."""
    b = spec.batch_size if batch is None else batch
    gemms = tuple(train_step_gemms(spec, b))
    return Workload(TRAIN_STEP, b, gemms, spec.train_step_flops(b), passes=tuple(train_step_passes(spec, b)))


def decode_workload(spec: ModelSpec, batch: int) -> Workload:
    """One decoder forward pass at `batch`."""
    gemms = tuple(decoder_gemms(spec, batch))
    flops, per_image = spec.flops("decoder", batch), spec.flops("decoder", 1)
    return Workload(DECODE, batch, gemms, flops, per_image, passes=tuple(decode_passes(spec, batch)))


def needed_shapes(workloads: Iterable[Workload]) -> list[tuple[int, int, int]]:
    """Every distinct GEMM shape of `workloads`, in first-seen order."""
    return [(g.m, g.k, g.n) for g in unique(g for w in workloads for g in w.gemms)]


# -- bytes: the passes that are not GEMMs, from the spec -----------------------------------------------------
#: Categories of a workload's parts; the anatomy (`bench.anatomy.categories`) adds overhead and idle.
GEMM = "gemm"
ELEMENTWISE = "elementwise"
OPTIMIZER = "optimizer"
DATA = "data"
ROOFLINE_CATEGORIES = (GEMM, ELEMENTWISE, OPTIMIZER, DATA)
#: Bytes per fp32 value.
F32_BYTES = 4
#: FLOPs per parameter of one Adam update (moments, bias corrections, square root, division, update).
ADAM_FLOPS_PER_PARAM = 12


@dataclass(frozen=True)
class Pass:
    """One pass over memory that is not a GEMM: what it reads and writes, and its arithmetic.

    Attributes:
        name: what it is ("decoder.dense_2 sigmoid", "Adam").
        category: one of `ROOFLINE_CATEGORIES` but GEMM.
        read_bytes, write_bytes: bytes read and written, each value once.
        flops: its arithmetic (element-wise operations count one FLOP each, exp/sigmoid four).
    """

    name: str
    category: str
    read_bytes: int
    write_bytes: int
    flops: int = 0

    @property
    def bytes(self) -> int:
        """Bytes moved: read plus written."""
        return self.read_bytes + self.write_bytes


def _ew(name: str, category: str, reads: int, writes: int, flops_per_value: int = 1) -> Pass:
    """A pass reading `reads` and writing `writes` fp32 values, `flops_per_value` FLOPs per value written."""
    return Pass(name, category, F32_BYTES * reads, F32_BYTES * writes, flops_per_value * writes)


def _forward_passes(part: str, dims: Sequence[int], b: int, last: str) -> list[Pass]:
    """Bias and activation of every dense layer of `part` ("relu" between layers, `last` after the last)."""
    out: list[Pass] = []
    layers = _layers(dims)
    for i, (_, d_out) in enumerate(layers):
        out.append(_ew(f"{part}.dense_{i} bias", ELEMENTWISE, b * d_out + d_out, b * d_out))
        act = "relu" if i < len(layers) - 1 else last
        if act != "linear":
            out.append(_ew(f"{part}.dense_{i} {act}", ELEMENTWISE, b * d_out, b * d_out, 4 if act == "sigmoid" else 1))
    return out


def _backward_passes(part: str, dims: Sequence[int], b: int) -> list[Pass]:
    """ReLU backward (dY and the mask in, dX out) and the bias gradient (a column sum) of every layer."""
    out: list[Pass] = []
    layers = _layers(dims)
    for i, (_, d_out) in reversed(list(enumerate(layers))):
        if i < len(layers) - 1:
            out.append(_ew(f"{part}.dense_{i} relu backward", ELEMENTWISE, 2 * b * d_out, b * d_out))
        out.append(
            Pass(f"{part}.dense_{i} bias gradient", ELEMENTWISE, F32_BYTES * b * d_out, F32_BYTES * d_out, b * d_out)
        )
    return out


def param_count(spec: ModelSpec) -> int:
    """Trainable parameters of encoder and decoder (what Adam updates)."""
    return spec.param_count("encoder") + spec.param_count("decoder")


def train_step_passes(spec: ModelSpec, batch: int | None = None) -> list[Pass]:
    """Every non-GEMM pass of one training step at `batch`: batch and noise, forward, loss, backward, Adam.

    Unfused, each value read and written once per pass; see the module docstring.
    """
    b = spec.batch_size if batch is None else batch
    px, c, lat, k = spec.image_size, spec.num_classes, spec.latent_dim, spec.kl_samples
    p = param_count(spec)
    return [
        _ew("batch (x, y)", DATA, b * (px + c), b * (px + c), 0),
        _ew("noise ε", DATA, 0, k * b * lat, 4),
        _ew("encoder input concat", ELEMENTWISE, b * (px + c), b * (px + c), 0),
        *_forward_passes("encoder", spec.encoder_dims, b, "linear"),
        _ew("reparameterise + KL", ELEMENTWISE, 2 * b * lat + k * b * lat, k * b * lat + b, 10),
        _ew("decoder input concat", ELEMENTWISE, b * (lat + c), b * (lat + c), 0),
        *_forward_passes("decoder", spec.decoder_dims, b, spec.output_activation),
        _ew("Gaussian NLL", ELEMENTWISE, 2 * b * px, b, 3 * px),
        _ew("NLL backward", ELEMENTWISE, 2 * b * px, b * px, 2),
        _ew(f"decoder {spec.output_activation} backward", ELEMENTWISE, 2 * b * px, b * px, 2),
        *_backward_passes("decoder", spec.decoder_dims, b),
        _ew("reparameterise + KL backward", ELEMENTWISE, 3 * k * b * lat + 2 * b * lat, 2 * b * lat, 10),
        *_backward_passes("encoder", spec.encoder_dims, b),
        Pass("Adam", OPTIMIZER, 4 * F32_BYTES * p, 3 * F32_BYTES * p, ADAM_FLOPS_PER_PARAM * p),
    ]


def decode_passes(spec: ModelSpec, batch: int) -> list[Pass]:
    """Every non-GEMM pass of one decoder call at `batch`: its inputs, the input concat, bias and activations."""
    lat, c = spec.latent_dim, spec.num_classes
    return [
        _ew("inputs (z, y)", DATA, batch * (lat + c), batch * (lat + c), 0),
        _ew("decoder input concat", ELEMENTWISE, batch * (lat + c), batch * (lat + c), 0),
        *_forward_passes("decoder", spec.decoder_dims, batch, spec.output_activation),
    ]


def gemm_bytes(g: Gemm) -> int:
    """Bytes a GEMM must move at least: read A and B, write C, once each."""
    return F32_BYTES * (g.m * g.k + g.k * g.n + g.m * g.n)


def workload_bytes(w: Workload) -> int:
    """Bytes of a workload: its GEMMs' operands and its passes."""
    return sum(gemm_bytes(g) for g in w.gemms) + sum(p.bytes for p in w.passes)


# -- the ceiling: measured in a worker ---------------------------------------------------------------------
#: Libraries of the matmul ceiling, each timed in a worker of its own (`bench.runner.measure_ceiling`).
CEILING_LIBRARIES = ("numpy", "torch", "onnxruntime")
#: Every column a ceiling may have, in table order ("onnxruntime-const": B a pre-packed constant).
CEILING_COLUMNS = ("numpy", "torch", "onnxruntime", "onnxruntime-const")


#: Working sets (bytes) of the STREAM-like bandwidth kernels: 4 KiB (L1) to 64 MiB (memory), ×4 apart.
STREAM_SIZES = tuple(4096 * 4**i for i in range(8))
#: Libraries whose ceiling worker also times the bandwidth kernels (onnxruntime has no element-wise API).
STREAM_LIBRARIES = ("numpy", "torch")


@dataclass(frozen=True)
class Ceiling(Record):
    """Seconds per fp32 GEMM of each shape, per library (the fastest round, and the median round), and the
    memory bandwidth (bytes/s, best of copy and triad) at each `STREAM_SIZES` working set, per library.

    `elementwise_flops`: per library, the triad's best FLOP rate over all sizes: the element-wise arithmetic
    rate measured on this machine (a lower bound of its peak, since a triad is memory-bound).
    """

    libraries: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, dict[str, float]] = field(default_factory=dict)
    medians: dict[str, dict[str, float]] = field(default_factory=dict)
    bandwidth: dict[str, dict[str, float]] = field(default_factory=dict)
    elementwise_flops: dict[str, float] = field(default_factory=dict)

    def merged(self, other: Ceiling) -> Ceiling:
        """This ceiling with `other`'s libraries added (each library is measured in a worker of its own)."""

        def merge(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
            out = {k: dict(v) for k, v in a.items()}
            for shape, per_lib in b.items():
                out.setdefault(shape, {}).update(per_lib)
            return out

        return Ceiling(
            libraries={**self.libraries, **other.libraries},
            shapes=merge(self.shapes, other.shapes),
            medians=merge(self.medians, other.medians),
            bandwidth=merge(self.bandwidth, other.bandwidth),
            elementwise_flops={**self.elementwise_flops, **other.elementwise_flops},
        )


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
) -> Ceiling:
    """Worker job (no backend needed): the fastest seconds per fp32 GEMM of each shape, per library.

    onnxruntime (MLAS) is timed twice: "onnxruntime" with both operands as inputs, and
    "onnxruntime-const" with B a constant of the graph, which MLAS pre-packs, as it does a model's weights.
    A library that is not installed is left out.
    """
    import numpy as np

    from cvae_bench.bench.timing import time_rounds

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
                per_round[key][lib] += time_rounds(call, rounds=per_pass, min_time=min_time, warmup=3).per_call()
    result = {key: {lib: min(v) for lib, v in by_lib.items()} for key, by_lib in per_round.items()}
    medians = {key: {lib: statistics.median(v) for lib, v in by_lib.items()} for key, by_lib in per_round.items()}
    for key in result:
        emit({"type": "ceiling", "shape": key, **result[key]})
    bandwidth: dict[str, dict[str, float]] = {}
    ew_flops: dict[str, float] = {}
    for lib in (lib for lib in STREAM_LIBRARIES if lib in runners):
        per_size, ew_flops[lib] = stream_bandwidth(lib, rounds=rounds, min_time=min_time)
        for size, bps in per_size.items():
            bandwidth.setdefault(str(size), {})[lib] = bps
        emit({"type": "ceiling", "bandwidth": lib, **{str(k): v for k, v in per_size.items()}})
    return Ceiling(libraries=versions, shapes=result, medians=medians, bandwidth=bandwidth, elementwise_flops=ew_flops)


def stream_bandwidth(
    library: str, *, sizes: Sequence[int] = STREAM_SIZES, rounds: int = 9, min_time: float = 0.01
) -> tuple[dict[int, float], float]:
    """STREAM-like kernels in `library` ("numpy": one thread; "torch": its intra-op threads) at each working set.

    copy (a = b: 8 bytes per element) and triad (a = b + s·c: 12 bytes, 2 FLOPs per element), on fp32 arrays
    sized so that all of a kernel's arrays together are `size` bytes; fastest round of `rounds`.

    Returns:
        ({size: the faster kernel's bytes/s}, the triad's best FLOP/s over all sizes).
    """
    import numpy as np

    from cvae_bench.bench.timing import time_rounds

    def kernels(n_copy: int, n_triad: int) -> list[tuple[int, int, Any]]:
        a, b = np.ones(n_copy, np.float32), np.ones(n_copy, np.float32)
        ta, tb, tc = (np.ones(n_triad, np.float32) for _ in range(3))
        if library == "numpy":

            def copy() -> None:
                np.copyto(a, b)

            def triad() -> None:
                np.multiply(tc, np.float32(3.0), out=ta)
                np.add(ta, tb, out=ta)  # two passes over `a` in NumPy: counted as the bytes of one

            return [(8 * n_copy, 0, copy), (12 * n_triad, 2 * n_triad, triad)]
        import torch

        xa, xb = torch.from_numpy(a), torch.from_numpy(b)
        ya, yb, yc = (torch.from_numpy(t) for t in (ta, tb, tc))
        return [
            (8 * n_copy, 0, functools.partial(xa.copy_, xb)),
            (12 * n_triad, 2 * n_triad, functools.partial(torch.add, yb, yc, alpha=3.0, out=ya)),
        ]

    per_size: dict[int, float] = {}
    triad_flops = 0.0
    for size in sizes:
        best = 0.0
        for nbytes, flops, call in kernels(max(1, size // 8), max(1, size // 12)):
            t = min(time_rounds(call, rounds=rounds, min_time=min_time, warmup=3).per_call())
            best = max(best, nbytes / t)
            if flops:
                triad_flops = max(triad_flops, flops / t)
        per_size[size] = best
    return per_size, triad_flops


def _ort_matmuls(a: Any, b: Any, threads: int | None) -> dict[str, Any]:
    """Calls of one onnxruntime MatMul on (a, b): B as an input, and B as a pre-packed constant."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from cvae_bench.onnx.sessions import make_session

    m, k = a.shape
    n = b.shape[1]
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
        sess = make_session(model, threads=threads)
        io = sess.io_binding()
        io.bind_cpu_input("A", a)
        if lib == "onnxruntime":
            io.bind_cpu_input("B", b)
        io.bind_output("C", "cpu", 0, np.float32, [m, n], out.ctypes.data)
        calls[lib] = functools.partial(_run_bound, sess, io, out)  # `out` must live as long as the binding
    return calls


def _run_bound(sess: Any, io: Any, out: Any) -> None:
    sess.run_with_iobinding(io)


# -- the roofline: the ceiling summarised per workload ------------------------------------------------------
@dataclass(frozen=True)
class GemmTime(Record):
    """One GEMM of a workload: its shape, its best seconds, and the library that gave them."""

    shape: str
    seconds: float
    library: str


@dataclass(frozen=True)
class PartFloor(Record):
    """One part of a workload's full floor: a GEMM or a pass, its bytes, and the larger of its two times.

    Attributes:
        name: the GEMM's shape or the pass's name; category: one of `ROOFLINE_CATEGORIES`.
        flops, bytes: its arithmetic and the bytes it moves.
        compute_s: a GEMM's measured time, or a pass's FLOPs at the element-wise FLOP rate.
        memory_s: its bytes at the bandwidth of its working set; floor_s: max(compute_s, memory_s).
    """

    name: str
    category: str
    flops: int
    bytes: int
    compute_s: float
    memory_s: float
    floor_s: float


@dataclass(frozen=True)
class WorkloadFloor(Record):
    """FLOPs, the bare-matmul floor and the ceiling of one workload.

    Attributes:
        batch: images per call.
        spec_flops: the spec's FLOP count; gemm_flops: the GEMMs' own.
        floor_s: the sum of the GEMMs' best times; ceiling_gflops: GEMM FLOPs per second of the floor.
        floor_by_library_s: the floor with each library alone.
        spec_flops_per_image: decode workloads only; gemms: train-step only (each GEMM's best library).
        full_floor_s: the byte-aware floor, the sum over every part of max(compute time, memory time)
            (None: no bandwidth was measured); bytes: what the workload moves at least (GEMM operands and
            passes); category_floor_s: the full floor by category; parts: every part (train-step only).
    """

    batch: int
    spec_flops: int
    gemm_flops: int
    floor_s: float
    ceiling_gflops: float
    floor_by_library_s: dict[str, float] = field(default_factory=dict)
    spec_flops_per_image: int | None = None
    gemms: list[GemmTime] | None = None
    full_floor_s: float | None = None
    bytes: int | None = None
    category_floor_s: dict[str, float] = field(default_factory=dict)
    parts: list[PartFloor] | None = None

    def to_json(self) -> dict[str, Any]:
        """As a record, leaving out the optional fields this kind of workload has not."""
        out = super().to_json()
        for key in ("spec_flops_per_image", "gemms", "parts"):
            if out[key] is None:
                del out[key]
        return out

    @property
    def label(self) -> str:
        """The workload's name in the roofline table."""
        if self.spec_flops_per_image is None:
            return "train step"
        return f"decode ({self.spec_flops_per_image:,} FLOPs/image)"


@dataclass(frozen=True)
class Roofline(Record):
    """The ceiling and every workload's floor; bench.json's `cvae_bench.roofline`."""

    libraries: dict[str, str]
    shapes: dict[str, dict[str, float]]
    medians: dict[str, dict[str, float]] = field(default_factory=dict)
    train_step: WorkloadFloor | None = None
    decode: dict[int, WorkloadFloor] = field(default_factory=dict)
    bandwidth: dict[str, dict[str, float]] = field(default_factory=dict)
    elementwise_flops: dict[str, float] = field(default_factory=dict)

    def floor(self, kind: str, batch: int) -> WorkloadFloor | None:
        """The floor of the workload `kind` at `batch`, or None when it was not measured."""
        if kind == TRAIN_STEP:
            return self.train_step if self.train_step and self.train_step.batch == batch else None
        if kind == DECODE:
            return self.decode.get(batch)
        raise ValueError(f"unknown workload kind {kind!r}; expected {TRAIN_STEP} or {DECODE}")

    def workloads(self) -> list[WorkloadFloor]:
        """Every workload, the train step first, then decode by batch size."""
        return ([self.train_step] if self.train_step else []) + [self.decode[b] for b in sorted(self.decode)]


def best_seconds(shapes: dict[str, dict[str, float]], gemm: Gemm) -> tuple[float, str]:
    """The fastest library's seconds for `gemm`, and that library."""
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


def bandwidth_at(bandwidth: dict[str, dict[str, float]], working_set: int) -> float | None:
    """Bytes/s at `working_set` bytes: the best library at each measured size, log-interpolated between
    sizes and held flat beyond the ends (None: no bandwidth measured).

    A smaller working set never has less bandwidth than a larger one (it fits the same caches or better),
    so each size takes the best of itself and every larger size: at 4 KiB a kernel call is mostly call
    overhead, which is not the memory's limit.
    """
    measured = sorted((int(size), max(per_lib.values())) for size, per_lib in bandwidth.items() if per_lib)
    if not measured:
        return None
    points = [(size, max(b for _, b in measured[i:])) for i, (size, _) in enumerate(measured)]
    if working_set <= points[0][0]:
        return points[0][1]
    for (s0, b0), (s1, b1) in itertools.pairwise(points):
        if working_set <= s1:
            t = math.log(working_set / s0) / math.log(s1 / s0)
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return points[-1][1]


def part_floors(
    w: Workload,
    shapes: dict[str, dict[str, float]],
    bandwidth: dict[str, dict[str, float]],
    elementwise_flops: float,
) -> list[PartFloor]:
    """Every part of `w` with its compute and memory times (see the module docstring)."""

    def memory(nbytes: int) -> float:
        bps = bandwidth_at(bandwidth, nbytes)
        return nbytes / bps if bps else 0.0

    out = []
    for g in w.gemms:
        compute, nbytes = best_seconds(shapes, g)[0], gemm_bytes(g)
        out.append(PartFloor(g.key, GEMM, g.flops, nbytes, compute, memory(nbytes), max(compute, memory(nbytes))))
    for p in w.passes:
        compute = p.flops / elementwise_flops if elementwise_flops else 0.0
        out.append(
            PartFloor(p.name, p.category, p.flops, p.bytes, compute, memory(p.bytes), max(compute, memory(p.bytes)))
        )
    return out


def category_floors(parts: Iterable[PartFloor]) -> dict[str, float]:
    """The full floor by category, in `ROOFLINE_CATEGORIES` order (categories with no part left out)."""
    out = {c: 0.0 for c in ROOFLINE_CATEGORIES}
    for p in parts:
        out[p.category] += p.floor_s
    return {c: v for c, v in out.items() if v > 0}


def summarize_roofline(ceiling: Ceiling, workloads: Iterable[Workload]) -> Roofline:
    """FLOPs, floors and ceilings of every workload, from a measured `Ceiling`."""
    shapes = ceiling.shapes
    train: WorkloadFloor | None = None
    decode: dict[int, WorkloadFloor] = {}
    ew_flops = max(ceiling.elementwise_flops.values(), default=0.0)
    for w in workloads:
        floor = floor_seconds(shapes, w.gemms)
        flops = gemm_flops(w.gemms)
        parts = part_floors(w, shapes, ceiling.bandwidth, ew_flops) if ceiling.bandwidth else None
        summary = WorkloadFloor(
            batch=w.batch,
            spec_flops=w.spec_flops,
            gemm_flops=flops,
            floor_s=floor,
            ceiling_gflops=flops / floor / 1e9,
            floor_by_library_s=library_floors(shapes, w.gemms),
            spec_flops_per_image=w.spec_flops_per_image,
            gemms=[GemmTime(g.key, *best_seconds(shapes, g)) for g in w.gemms] if w.kind == TRAIN_STEP else None,
            full_floor_s=sum(p.floor_s for p in parts) if parts else None,
            bytes=workload_bytes(w),
            category_floor_s=category_floors(parts) if parts else {},
            parts=parts if parts and w.kind == TRAIN_STEP else None,
        )
        if w.kind == TRAIN_STEP:
            train = summary
        elif w.kind == DECODE:
            decode[w.batch] = summary
        else:
            raise ValueError(f"unknown workload kind {w.kind!r}; expected {TRAIN_STEP} or {DECODE}")
    return Roofline(
        libraries=dict(ceiling.libraries),
        shapes=shapes,
        medians=ceiling.medians,
        train_step=train,
        decode=dict(sorted(decode.items())),
        bandwidth=ceiling.bandwidth,
        elementwise_flops=ceiling.elementwise_flops,
    )


def fraction_of_floor(floor_s: float | None, measured_s: float | None) -> float | None:
    """floor / measured: the share of this machine's bare-matmul speed a measurement reaches."""
    if not floor_s or not measured_s:
        return None
    return floor_s / measured_s
