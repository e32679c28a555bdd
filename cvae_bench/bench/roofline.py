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
`{"libraries", "shapes", "medians", "train_step": {...} | null, "decode": {batch: {...}}}`.
"""

from __future__ import annotations

import functools
import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cvae_bench.models.spec import ModelSpec
from cvae_bench.records import Record


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
    """

    kind: str
    batch: int
    gemms: tuple[Gemm, ...]
    spec_flops: int
    spec_flops_per_image: int | None = None


def train_step_workload(spec: ModelSpec, batch: int | None = None) -> Workload:
    """One optimiser step at `batch` (default: the spec's)."""
    b = spec.batch_size if batch is None else batch
    return Workload(TRAIN_STEP, b, tuple(train_step_gemms(spec, b)), spec.train_step_flops(b))


def decode_workload(spec: ModelSpec, batch: int) -> Workload:
    """One decoder forward pass at `batch`."""
    gemms = tuple(decoder_gemms(spec, batch))
    return Workload(DECODE, batch, gemms, spec.flops("decoder", batch), spec.flops("decoder", 1))


def needed_shapes(workloads: Iterable[Workload]) -> list[tuple[int, int, int]]:
    """Every distinct GEMM shape of `workloads`, in first-seen order."""
    return [(g.m, g.k, g.n) for g in unique(g for w in workloads for g in w.gemms)]


# -- the ceiling: measured in a worker ---------------------------------------------------------------------
#: Libraries of the matmul ceiling, each timed in a worker of its own (`bench.runner.measure_ceiling`).
CEILING_LIBRARIES = ("numpy", "torch", "onnxruntime")
#: Every column a ceiling may have, in table order ("onnxruntime-const": B a pre-packed constant).
CEILING_COLUMNS = ("numpy", "torch", "onnxruntime", "onnxruntime-const")


@dataclass(frozen=True)
class Ceiling(Record):
    """Seconds per fp32 GEMM of each shape, per library: the fastest round, and the median round."""

    libraries: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, dict[str, float]] = field(default_factory=dict)
    medians: dict[str, dict[str, float]] = field(default_factory=dict)

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
    return Ceiling(libraries=versions, shapes=result, medians=medians)


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
class WorkloadFloor(Record):
    """FLOPs, the bare-matmul floor and the ceiling of one workload.

    Attributes:
        batch: images per call.
        spec_flops: the spec's FLOP count; gemm_flops: the GEMMs' own.
        floor_s: the sum of the GEMMs' best times; ceiling_gflops: GEMM FLOPs per second of the floor.
        floor_by_library_s: the floor with each library alone.
        spec_flops_per_image: decode workloads only; gemms: train-step only (each GEMM's best library).
    """

    batch: int
    spec_flops: int
    gemm_flops: int
    floor_s: float
    ceiling_gflops: float
    floor_by_library_s: dict[str, float] = field(default_factory=dict)
    spec_flops_per_image: int | None = None
    gemms: list[GemmTime] | None = None

    def to_json(self) -> dict[str, Any]:
        """As a record, leaving out the optional fields this kind of workload has not."""
        out = super().to_json()
        for key in ("spec_flops_per_image", "gemms"):
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


def summarize_roofline(ceiling: Ceiling, workloads: Iterable[Workload]) -> Roofline:
    """FLOPs, floors and ceilings of every workload, from a measured `Ceiling`."""
    shapes = ceiling.shapes
    train: WorkloadFloor | None = None
    decode: dict[int, WorkloadFloor] = {}
    for w in workloads:
        floor = floor_seconds(shapes, w.gemms)
        flops = gemm_flops(w.gemms)
        summary = WorkloadFloor(
            batch=w.batch,
            spec_flops=w.spec_flops,
            gemm_flops=flops,
            floor_s=floor,
            ceiling_gflops=flops / floor / 1e9,
            floor_by_library_s=library_floors(shapes, w.gemms),
            spec_flops_per_image=w.spec_flops_per_image,
            gemms=[GemmTime(g.key, *best_seconds(shapes, g)) for g in w.gemms] if w.kind == TRAIN_STEP else None,
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
    )


def fraction_of_floor(floor_s: float | None, measured_s: float | None) -> float | None:
    """floor / measured: the share of this machine's bare-matmul speed a measurement reaches."""
    if not floor_s or not measured_s:
        return None
    return floor_s / measured_s
