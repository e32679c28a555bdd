"""ONNX builders the tests share: the reference as an exporter-like graph, a reference decoder file, and a
synthetic exporter for `export_verified` (docs/design.md, "The ONNX interface").

The graphs are built with `onnx.helper` from the float64 reference's weights (`biased_weights`), named the way
exporters name things (`53`, `Identity:0`, `unk__23`), so that no framework is needed. This module imports
onnx; `support` and `conformance` do not import it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cvae_bench.models import DEFAULT_SPEC, reference
from cvae_bench.onnx import export as onnx_export
from cvae_bench.onnx.interface import normalize_interface, set_metadata
from cvae_bench.onnx.options import ExportSettings
from cvae_bench.testing.support import biased_weights

SPEC = DEFAULT_SPEC


def dense_model(
    w: dict[str, np.ndarray],
    part: str = "decoder",
    *,
    inputs: tuple[str, str] = ("z", "label"),
    reverse_inputs: bool = False,
    outputs: tuple[str, ...] = ("x_mean",),
    batch: tuple[str, ...] = ("batch", "batch", "batch", "batch"),
    flat_image: bool = False,
    concat_name: str = "concat_out",
    opset: int = 18,
    metadata: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """The reference's decoder or encoder as an ONNX graph, with the names and layouts an exporter might use.

    Decoder: Concat(z, label) → 3 × Gemm (ReLU between) → Sigmoid → Reshape to 28×28 unless `flat_image`.
    Encoder: x (flattened if `flat_image`) → Concat with label → 3 × Gemm → one [b, 4] output when
    `outputs` has one name, else Slice into z_mean and z_log_var.
    """
    nodes, inits = [], []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr, name))
        return name

    first_shape: list[Any]
    if part == "decoder":
        first_shape = [batch[0], SPEC.latent_dim]
        first = inputs[0]
    else:
        first_shape = [batch[0], SPEC.image_size] if flat_image else [batch[0], *SPEC.image_shape]
        first = inputs[0]
        if not flat_image:
            nodes.append(helper.make_node("Reshape", [first, const("flat_shape", np.array([-1, 784]))], ["x_flat"]))
            first = "x_flat"
    nodes.append(helper.make_node("Concat", [first, inputs[1]], [concat_name], axis=1))
    h = concat_name
    for i in range(3):
        k = const(f"{part}.dense_{i}.kernel", w[f"{part}.dense_{i}.kernel"])
        b = const(f"{part}.dense_{i}.bias", w[f"{part}.dense_{i}.bias"])
        nodes.append(helper.make_node("Gemm", [h, k, b], [f"gemm_{i}"]))
        h = f"gemm_{i}"
        if i < 2:
            nodes.append(helper.make_node("Relu", [h], [f"relu_{i}"]))
            h = f"relu_{i}"
    out_vis = []
    if part == "decoder":
        if flat_image:
            nodes.append(helper.make_node("Sigmoid", [h], [outputs[0]]))
            out_vis.append(helper.make_tensor_value_info(outputs[0], TensorProto.FLOAT, [batch[2], 784]))
        else:
            nodes.append(helper.make_node("Sigmoid", [h], ["sig"]))
            nodes.append(helper.make_node("Reshape", ["sig", const("img_shape", np.array([-1, 28, 28]))], [outputs[0]]))
            out_vis.append(helper.make_tensor_value_info(outputs[0], TensorProto.FLOAT, [batch[2], 28, 28]))
    elif len(outputs) == 1:
        nodes.append(helper.make_node("Identity", [h], [outputs[0]]))
        out_vis.append(helper.make_tensor_value_info(outputs[0], TensorProto.FLOAT, [batch[2], 4]))
    else:
        axes = const("axes", np.array([1]))
        for name, (lo, hi) in zip(outputs, ((0, 2), (2, 4)), strict=True):
            starts, ends = const(f"{name}_s", np.array([lo])), const(f"{name}_e", np.array([hi]))
            nodes.append(helper.make_node("Slice", [h, starts, ends, axes], [name]))
            out_vis.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch[2], 2]))
    in_vis = [
        helper.make_tensor_value_info(inputs[0], TensorProto.FLOAT, first_shape),
        helper.make_tensor_value_info(inputs[1], TensorProto.FLOAT, [batch[1], SPEC.num_classes]),
    ]
    if reverse_inputs:
        in_vis.reverse()
    graph = helper.make_graph(nodes, "exported", in_vis, out_vis, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="synthetic")
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    return model


def write_reference_decoder(path: Path, metadata: dict[str, str]) -> Path:
    """The reference's decoder (`biased_weights`), normalised to the interface, with `metadata`, written to
    `path`; returns `path`."""
    model = normalize_interface(dense_model(biased_weights()), "decoder")
    set_metadata(model, metadata)
    path.write_bytes(model.SerializeToString())
    return path


class SyntheticExporter:
    """What `export_verified` needs of a backend, from the float64 reference and a hand-built graph.

    `fail`: the exporter raises after writing its raw file. `hold`: it prints READY after writing and sleeps
    60 s (for a test that kills the export while it runs).
    """

    def __init__(self, fail: bool = False, hold: bool = False) -> None:
        self.w = biased_weights()
        self.fail, self.hold = fail, hold

    def export_onnx(self, path: str, part: str = "decoder", opset: int | None = None) -> dict[str, str]:
        Path(path).write_bytes(dense_model(self.w, part, outputs=("53",)).SerializeToString())
        if self.hold:  # for the kill test: the raw file is written, the export still running
            print("READY", flush=True)
            time.sleep(60)
        if self.fail:
            raise RuntimeError("the exporter crashed after writing its file")
        return {"exporter": "synthetic", "exporter_version": "0", "note": "helper graph"}

    def encode(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m, v = reference.encode(self.w, x, y)
        return m.astype(np.float32), v.astype(np.float32)

    def decode(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        return reference.decode(self.w, z, y).astype(np.float32)


def _synthetic_data(n: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.random((n, 28, 28), dtype=np.float32), np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]


def export_synthetic(backend: SyntheticExporter, out: Path, **settings: Any) -> onnx_export.ExportResult:
    """`export_verified` of `backend` to `out` on fixed random data (val -ELBO 250, 200 examples, no timing);
    `settings`: other fields of its `ExportSettings`."""
    x, y = _synthetic_data()
    return onnx_export.export_verified(
        backend,
        out,
        ExportSettings(**{"val_subset": 200, "measure_speed": False, **settings}),
        backend_name="synthetic",
        versions={"numpy": np.__version__},
        x_test=x,
        y_test=y,
        val_elbo=250.0,
        weights_sha256="ab" * 32,
    )
