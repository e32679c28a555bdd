"""Prove an ONNX part: its interface, the ONNX checker, and onnxruntime's outputs against the framework's."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray

from cvae_bench.core.errors import OnnxCheckError, OnnxExportError
from cvae_bench.core.records import Record
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec
from cvae_bench.onnx.interface import describe_value, interface

#: Batch sizes every check runs at: one example, an odd size, and a large one.
CHECK_BATCHES: tuple[int, ...] = (1, 7, 1024)
#: Largest |onnxruntime − framework| accepted, by part and precision. fp32 is the contract (measured over
#: the torch and the three Keras exporters: ≤ 5.1e-7 decoder, ≤ 1.2e-6 encoder). The variants' bounds are
#: 2–6× the largest difference measured on 5-epoch torch weights over all checks (decoder pixels in [0, 1]:
#: fp16 0.0017, int8 0.025; encoder outputs, z_log_var down to −5: fp16 0.0026, int8 0.057). int8
#: quantises activations per call, so its error grows with the batch's range: it is largest at batch 1024.
TOLERANCES: dict[tuple[str, str], float] = {
    ("decoder", "fp32"): 1e-5,
    ("decoder", "fp16"): 1e-2,
    ("decoder", "int8"): 5e-2,
    ("encoder", "fp32"): 1e-5,
    ("encoder", "fp16"): 2e-2,
    ("encoder", "int8"): 0.15,
}

Arrays = tuple[NDArray[np.float32], ...]
Reference = Callable[..., Any]


def interface_problems(model: onnx.ModelProto, part: str, spec: ModelSpec = DEFAULT_SPEC) -> list[str]:
    """What differs between the model's inputs/outputs and the interface (empty when it conforms)."""
    want = interface(part, spec)
    problems = []
    graph = model.graph
    for kind, values, specs in (("inputs", graph.input, want.inputs), ("outputs", graph.output, want.outputs)):
        got = [describe_value(v) for v in values]
        expected = [s.describe() for s in specs]
        if got != expected:
            problems.append(f"{kind} are [{', '.join(got)}], expected [{', '.join(expected)}]")
    return problems


def check_structure(model: onnx.ModelProto, part: str, spec: ModelSpec = DEFAULT_SPEC) -> None:
    """The interface, `onnx.checker` (full check) and strict shape inference with type checks.

    Raises:
        OnnxExportError: the first of these that fails, with its message.
    """
    problems = interface_problems(model, part, spec)
    if problems:
        raise OnnxExportError(f"the {part} does not have the interface: {'; '.join(problems)}")
    try:
        # full_check runs strict shape inference too, which raises InferenceError rather than ValidationError.
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxExportError(f"onnx.checker rejects the {part}: {_summary(exc)}") from exc
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError) as exc:
        raise OnnxExportError(f"strict shape inference fails on the {part}: {_summary(exc)}") from exc


def _summary(exc: BaseException, limit: int = 400) -> str:
    """An error message on one line: its first line, and how many more there were."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()] or [type(exc).__name__]
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    first = lines[0] if len(lines[0]) <= limit else lines[0][: limit - 1] + "…"
    return first + more


def check_inputs(
    part: str,
    x_real: NDArray[np.float32],
    y_real: NDArray[np.float32],
    encode: Callable[[NDArray[np.float32], NDArray[np.float32]], tuple[NDArray[np.float32], NDArray[np.float32]]],
    n: int = max(CHECK_BATCHES),
    spec: ModelSpec = DEFAULT_SPEC,
    seed: int = 0,
) -> dict[str, Arrays]:
    """The inputs the checks use, `n` of each: "random" and "real" (MNIST test images).

    For the decoder, random is z ~ N(0, I) with random labels, and real is z drawn from the framework's
    encoder posterior of real images, with their labels. For the encoder, random is uniform noise images
    with random labels, and real is the images and their labels.
    """
    rng = np.random.default_rng(seed)
    eye = np.eye(spec.num_classes, dtype=np.float32)
    labels = eye[rng.integers(0, spec.num_classes, n)]
    x, y = x_real[:n], y_real[:n]
    if part == "encoder":
        noise = rng.random((n, *spec.image_shape), dtype=np.float32)
        return {"random": (noise, labels), "real": (x, y)}
    z_mean, z_log_var = encode(x, y)
    eps = rng.standard_normal(z_mean.shape)
    z = (z_mean + np.exp(0.5 * z_log_var.astype(np.float64)) * eps).astype(np.float32)
    prior = rng.standard_normal((n, spec.latent_dim)).astype(np.float32)
    return {"random": (prior, labels), "real": (z, y)}


@dataclass(frozen=True)
class Verdict(Record):
    """The outcome of comparing onnxruntime with the framework (what the metadata records)."""

    part: str
    precision: str
    atol: float
    max_abs_err: float
    where: str
    batches: tuple[int, ...]
    cases: tuple[str, ...]
    checks: int
    failures: tuple[str, ...]
    reference: str

    @property
    def passed(self) -> bool:
        """True when every check was within `atol`."""
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        """The record, with `passed` spelled out for readers of the metadata (`from_json` ignores it)."""
        return {**super().to_json(), "passed": self.passed}

    def compact(self) -> str:
        """`to_json()` as one compact JSON line: the value of the `verification` metadata key."""
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_compact(cls, text: str) -> Verdict:
        """The verdict of a `verification` metadata value."""
        return cls.from_json(json.loads(text))

    def line(self) -> str:
        """E.g. `verified: max |onnxruntime - torch| 2.4e-07 <= 1e-05 (fp32; random, real inputs; batch 1, 7, 1024)`."""
        word = "verified" if self.passed else "FAILED"
        rel = "<=" if self.max_abs_err <= self.atol else ">"
        return (
            f"{word}: max |onnxruntime - {self.reference}| {self.max_abs_err:.2g} {rel} {self.atol:g} "
            f"({self.precision} {self.part}; {', '.join(self.cases)} inputs; batch {', '.join(map(str, self.batches))})"
        )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def verify(
    sess: Any,
    reference: Reference,
    cases: Mapping[str, Arrays],
    *,
    part: str,
    precision: str = "fp32",
    atol: float | None = None,
    batches: Sequence[int] = CHECK_BATCHES,
    reference_name: str = "framework",
    spec: ModelSpec = DEFAULT_SPEC,
) -> Verdict:
    """Run `sess` and `reference` on every case at every batch size and compare all outputs.

    Shapes are checked first, then values; every failure is collected before raising.

    Args:
        sess: an onnxruntime session of the part, with the interface's names.
        reference: the framework's function (decode(z, y) or encode(x, y)) on the same inputs.
        cases: named input tuples, each at least max(batches) long.
        atol: the largest accepted absolute difference (default: `TOLERANCES[part, precision]`).

    Returns:
        The verdict (passed).

    Raises:
        OnnxCheckError: some output differs by more than `atol`, has the wrong shape, or onnxruntime failed;
            the message gives the count, the largest difference and where it was.
    """
    want = interface(part, spec)
    tol = TOLERANCES[part, precision] if atol is None else atol
    in_names = [s.name for s in want.inputs]
    out_names = [s.name for s in want.outputs]
    failures: list[str] = []
    worst, where, checks = 0.0, "nowhere", 0
    for case, arrays in cases.items():
        for b in batches:
            checks += len(out_names)
            inputs = tuple(np.ascontiguousarray(a[:b]) for a in arrays)
            at = f"{case} inputs at batch {b}"
            try:
                got = sess.run(out_names, dict(zip(in_names, inputs, strict=True)))
            except Exception as exc:  # onnxruntime's own exception types vary by build
                failures.append(f"onnxruntime failed on {at}: {_first_line(exc)}")
                worst, where = float("inf"), at
                continue
            expected = reference(*inputs)
            expected = expected if isinstance(expected, tuple | list) else (expected,)
            if len(expected) != len(out_names):
                raise OnnxCheckError(f"the framework returned {len(expected)} outputs, expected {len(out_names)}")
            for s, g, e in zip(want.outputs, got, expected, strict=True):
                shape = (b, *s.shape)
                if g.shape != shape or np.shape(e) != shape:
                    failures.append(f"{s.name} on {at}: shape {list(g.shape)}, framework {list(np.shape(e))}")
                    worst, where = float("inf"), at
                    continue
                diff = np.abs(g.astype(np.float64) - np.asarray(e, np.float64))
                diff[np.isnan(diff)] = np.inf
                i = np.unravel_index(int(np.argmax(diff)), diff.shape)
                err = float(diff[i])
                if err >= worst:
                    idx = ", ".join(map(str, i))
                    worst = err
                    where = f"{s.name}[{idx}] on {at} (onnxruntime {g[i]:.6g}, framework {e[i]:.6g})"
                if err > tol:
                    failures.append(f"{s.name} on {at}: max |difference| {err:.3g}")
    verdict = Verdict(
        part, precision, tol, worst, where, tuple(batches), tuple(cases), checks, tuple(failures), reference_name
    )
    if failures:
        raise OnnxCheckError(
            f"the {precision} ONNX {part} differs from {reference_name}: {len(failures)} of {checks} "
            f"checks failed (atol {tol:g}); largest |difference| {worst:.3g} at {where}; "
            f"failures: {'; '.join(failures)}"
        )
    return verdict
