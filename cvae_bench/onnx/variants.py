"""Reduced-precision variants of an exported part (fp16, int8) and what they cost: size, speed, val −ELBO."""

from __future__ import annotations

import itertools
import logging
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import helper, numpy_helper

from cvae_bench.backends.base import Backend
from cvae_bench.core.defaults import PRECISIONS
from cvae_bench.core.errors import OnnxExportError
from cvae_bench.models.evaluator import Evaluation, Evaluator
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec
from cvae_bench.onnx.interface import fresh_name, interface
from cvae_bench.onnx.scratch import scratch_dir

#: The batch size that speeds are measured at.
SPEED_BATCH = 1024
#: MatMuls with fewer weights than this stay float32 in the int8 variant (see `to_int8`).
INT8_MIN_WEIGHTS = 4096

F32 = NDArray[np.float32]


def _attr(node: onnx.NodeProto, name: str, default: float) -> float:
    for a in node.attribute:
        if a.name == name:
            return float(helper.get_attribute_value(a))
    return default


def _unused(base: str, taken: set[str]) -> str:
    return next(name for k in itertools.count() if (name := f"{base}_{k}" if k else base) not in taken)


def gemm_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where each plain Gemm (alpha = beta = 1, A not transposed, B a constant) is MatMul + Add.

    onnxruntime's dynamic quantiser handles MatMul but not Gemm, which torch's exporter emits for Linear.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        plain = _attr(node, "alpha", 1.0) == 1.0 and _attr(node, "beta", 1.0) == 1.0 and not _attr(node, "transA", 0)
        if node.op_type != "Gemm" or node.domain not in ("", "ai.onnx") or not plain or node.input[1] not in inits:
            nodes.append(node)
            continue
        b_name = node.input[1]
        if _attr(node, "transB", 0):
            b = numpy_helper.to_array(inits[b_name]).T
            b_name = fresh_name(graph, f"{b_name}_t")
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(b), b_name))
        has_bias = len(node.input) > 2 and node.input[2] != ""
        product = fresh_name(graph, f"{node.output[0]}_matmul") if has_bias else node.output[0]
        base = node.name or "gemm"
        taken = {n.name for n in graph.node} | {n.name for n in nodes}
        matmul, add = (_unused(f"{base}_{op}", taken) for op in ("matmul", "add"))
        nodes.append(helper.make_node("MatMul", [node.input[0], b_name], [product], name=matmul))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=add))
    del graph.node[:]
    graph.node.extend(nodes)
    # Drop initializers no node reads any more (the untransposed B).
    used = {name for n in graph.node for name in n.input} | {v.name for v in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return out


def drop_noop_casts(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy without Cast nodes whose input already has the target type (Keras-on-torch emits many).

    onnxconverter-common turns their tensors into float16 but leaves their `to=FLOAT`, which the checker
    then rejects; removing them first changes nothing in the maths.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inferred = onnx.shape_inference.infer_shapes(out)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *graph.input)}
    types.update({i.name: i.data_type for i in graph.initializer})
    outputs = {v.name for v in graph.output}
    alias: dict[str, str] = {}
    kept = []
    for node in graph.node:
        node.input[:] = [alias.get(n, n) for n in node.input]
        to = int(_attr(node, "to", -1)) if node.op_type == "Cast" else None
        if to is not None and types.get(node.input[0]) == to and node.output[0] not in outputs:
            alias[node.output[0]] = node.input[0]
            continue
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return out


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weights and arithmetic in float16, float32 inputs and outputs (onnxconverter-common)."""
    try:
        from onnxconverter_common import float16  # type: ignore[import-untyped]
    except ImportError as exc:
        raise OnnxExportError("--precision fp16 needs onnxconverter-common: pip install 'cvae-bench[onnx]'") from exc
    with warnings.catch_warnings():
        # It warns when it clamps weights below 1e-7 to that value: expected for fp16, and measured below.
        warnings.simplefilter("ignore", UserWarning)
        converted: onnx.ModelProto = float16.convert_float_to_float16(drop_noop_casts(model), keep_io_types=True)
    return converted


def to_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """int8 weights, activations quantised per call (onnxruntime.quantization.quantize_dynamic).

    Weights are quantised per output channel, and MatMuls with fewer than `INT8_MIN_WEIGHTS` weights stay
    float32: the decoder's first layer (12 × 32) reads z itself, whose per-batch uint8 quantisation cost
    most of the error (max |Δx_mean| at batch 1024 on trained weights: 0.060 per-tensor with every layer,
    0.046 per-channel, 0.026 per-channel without it), for 1.5 KB of savings.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    plain = gemm_to_matmul(model)
    sizes = {i.name: int(np.prod(i.dims)) for i in plain.graph.initializer}
    small = [n.name for n in plain.graph.node if n.op_type == "MatMul" and sizes.get(n.input[1], 0) < INT8_MIN_WEIGHTS]

    # The quantiser logs advice ("run pre-processing…") at WARNING on the root logger; it is not ours to act on.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with scratch_dir("int8") as tmp:
            path = tmp / "int8.onnx"
            quantize_dynamic(plain, path, weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=small)
            return onnx.load(path)
    finally:
        root.setLevel(level)


def make_variant(model: onnx.ModelProto, precision: str) -> onnx.ModelProto:
    """`model` at `precision` ("fp32" returns it unchanged)."""
    if precision == "fp32":
        return model
    if precision == "fp16":
        return to_fp16(model)
    if precision == "int8":
        return to_int8(model)
    raise OnnxExportError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")


def ms_per_call(sess: Any, feeds: dict[str, F32], min_time_s: float = 0.5, max_calls: int = 200) -> float:
    """Median wall time of one `sess.run` in milliseconds (after two warm-up calls)."""
    for _ in range(2):
        sess.run(None, feeds)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < min_time_s and len(times) < max_calls):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def compare_speed(sessions: dict[str, Any], feeds: dict[str, F32], rounds: int = 3) -> dict[str, float]:
    """Median ms per call of each session, measured in alternating rounds.

    Alternating (fp32, variant, fp32, …) exposes every session to the same machine load, so their ratio
    stays meaningful on a shared machine even when the absolute times drift.
    """
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, sess in sessions.items():
            times[name].append(ms_per_call(sess, feeds, min_time_s=0.2))
    return {name: statistics.median(t) for name, t in times.items()}


def speed_feeds(part: str, spec: ModelSpec = DEFAULT_SPEC, batch: int = SPEED_BATCH) -> dict[str, F32]:
    """Random inputs for the speed measurement."""
    rng = np.random.default_rng(0)
    want = interface(part, spec)
    return {s.name: rng.random((batch, *s.shape), dtype=np.float32) for s in want.inputs}


class Hybrid:
    """Encoder from one place and decoder from another, for the shared Evaluator.

    Scoring an ONNX decoder pairs it with the framework's encoder (and an ONNX encoder with the
    framework's decoder), so the val −ELBO moves only by what the ONNX part changes.
    """

    def __init__(
        self,
        encode: Callable[[F32, F32], tuple[F32, F32]],
        decode: Callable[[F32, F32], F32],
    ) -> None:
        self.encode = encode
        self.decode = decode


def onnx_evaluation(
    part: str, sess: Any, framework: Any, x_val: F32, y_val: F32, spec: ModelSpec = DEFAULT_SPEC
) -> Evaluation:
    """The shared evaluator's val −ELBO with `sess` as `part` and the framework's other part."""

    def ort_decode(z: F32, y: F32) -> F32:
        out: F32 = sess.run(["x_mean"], {"z": z, "label": y})[0]
        return out

    def ort_encode(x: F32, y: F32) -> tuple[F32, F32]:
        z_mean, z_log_var = sess.run(["z_mean", "z_log_var"], {"x": x, "label": y})
        return z_mean, z_log_var

    hybrid = Hybrid(framework.encode, ort_decode) if part == "decoder" else Hybrid(ort_encode, framework.decode)
    # The Evaluator needs only encode and decode of a Backend, which Hybrid provides.
    return Evaluator(x_val, y_val, spec)(cast(Backend, hybrid))
