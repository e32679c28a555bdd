"""ONNX export: normalisation of odd exporter graphs, the check against the framework, variants, backends.

The synthetic graphs (`cvae_bench.testing.onnx_models`) are built with `onnx.helper` from the float64
reference's weights, named the way exporters name things (`53`, `Identity:0`, `unk__23`), so normalisation is
tested without any framework.
Every backend that declares `onnx_export` gets the same export test (conformance style).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cvae_bench.core.errors import OnnxCheckError, OnnxExportError
from cvae_bench.models import DEFAULT_SPEC, reference
from cvae_bench.onnx import export as onnx_export
from cvae_bench.onnx.check import TOLERANCES, _summary, check_structure, interface_problems, verify
from cvae_bench.onnx.interface import normalize_interface, rename_tensor, tensor_names
from cvae_bench.onnx.options import ExportCommand, ExportSettings
from cvae_bench.onnx.sessions import make_session as session
from cvae_bench.runtime.files import save_weights
from cvae_bench.testing.onnx_models import SyntheticExporter, dense_model, export_synthetic
from cvae_bench.testing.support import WorkerPool, backend_params, biased_weights

SPEC = DEFAULT_SPEC
ROOT = Path(__file__).resolve().parent.parent
KERAS_ENGINES = {"keras-torch": "torch", "keras-tensorflow": "tensorflow", "keras-jax": "jax"}


weights = biased_weights


def _z_label(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, SPEC.latent_dim)).astype(np.float32)
    return z, np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]


def _decoded(model: onnx.ModelProto, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    out: np.ndarray = session(model).run(["x_mean"], {"z": z, "label": y})[0]
    return out


def _dims(v: onnx.ValueInfoProto) -> list[Any]:
    return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]


# -- normalisation --------------------------------------------------------------------------------------
def test_odd_names_reversed_inputs_and_flat_output_are_normalised() -> None:
    w = weights()
    raw = dense_model(
        w,
        inputs=("53", "input_1"),
        reverse_inputs=True,
        outputs=("Identity:0",),
        batch=("unk__24", "unk__23", "unk__25"),
        flat_image=True,
        concat_name="z",  # an intermediate tensor already called like an interface name
    )
    model = normalize_interface(raw, "decoder", SPEC, 18)
    assert interface_problems(model, "decoder") == []
    assert [v.name for v in model.graph.input] == ["z", "label"]
    assert [_dims(v) for v in model.graph.input] == [["batch", 2], ["batch", 10]]
    assert [(v.name, _dims(v)) for v in model.graph.output] == [("x_mean", ["batch", 28, 28])]
    check_structure(model, "decoder")
    z, y = _z_label(9)
    np.testing.assert_allclose(_decoded(model, z, y), reference.decode(w, z, y), atol=1e-5)
    original = session(raw).run(None, {"53": z, "input_1": y})[0]
    np.testing.assert_array_equal(_decoded(model, z, y), original.reshape(9, 28, 28))
    assert "z" in tensor_names(model.graph) and "z_orig" in tensor_names(model.graph)


def test_torchscript_style_output_name_and_axis_are_normalised() -> None:
    w = weights()
    raw = dense_model(w, outputs=("53",), batch=("batch", "batch", "Sigmoid53_dim_0"))
    model = normalize_interface(raw, "decoder")
    assert [(v.name, _dims(v)) for v in model.graph.output] == [("x_mean", ["batch", 28, 28])]
    check_structure(model, "decoder")
    z, y = _z_label(3)
    np.testing.assert_allclose(_decoded(model, z, y), reference.decode(w, z, y), atol=1e-5)


def test_encoder_with_flat_image_and_one_output_is_split() -> None:
    w = weights()
    raw = dense_model(w, "encoder", inputs=("image", "label"), outputs=("StatefulPartitionedCall:0",), flat_image=True)
    model = normalize_interface(raw, "encoder")
    assert interface_problems(model, "encoder") == []
    check_structure(model, "encoder")
    x = np.random.default_rng(1).random((5, 28, 28), dtype=np.float32)
    _, y = _z_label(5)
    z_mean, z_log_var = session(model).run(["z_mean", "z_log_var"], {"x": x, "label": y})
    ref_mean, ref_log_var = reference.encode(w, x, y)
    np.testing.assert_allclose(z_mean, ref_mean, atol=1e-5)
    np.testing.assert_allclose(z_log_var, ref_log_var, atol=1e-5)


def test_initializers_listed_as_inputs_are_dropped_and_opset_converted() -> None:
    w = weights()
    raw = dense_model(w, opset=17)
    raw.graph.input.extend(
        helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in raw.graph.initializer
    )
    model = normalize_interface(raw, "decoder", opset=18)
    assert [v.name for v in model.graph.input] == ["z", "label"]
    assert [o.version for o in model.opset_import if o.domain == ""] == [18]
    check_structure(model, "decoder")
    z, y = _z_label(4)
    np.testing.assert_allclose(_decoded(model, z, y), reference.decode(w, z, y), atol=1e-5)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.graph.input.append(helper.make_tensor_value_info("extra", 1, ["b", 3])), "inputs"),
        (lambda m: m.graph.input[0].type.tensor_type.__setattr__("elem_type", TensorProto.INT64), "not float32"),
        (lambda m: m.graph.output[0].type.tensor_type.shape.dim[2].__setattr__("dim_value", 27), "cannot match"),
    ],
    ids=["three-inputs", "int64-input", "wrong-output-size"],
)
def test_unfixable_graphs_are_refused(mutate: Callable[[onnx.ModelProto], None], message: str) -> None:
    raw = dense_model(weights(), inputs=("a", "b"), outputs=("c",))
    mutate(raw)
    with pytest.raises(OnnxExportError, match=message) as info:
        normalize_interface(raw, "decoder")
    assert "expected" in str(info.value)


def test_rename_reaches_subgraphs_and_moves_a_clash_aside() -> None:
    then = helper.make_graph(
        [helper.make_node("Identity", ["53"], ["t_out"])], "then", [], [helper.make_tensor_value_info("t_out", 1, [1])]
    )
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["53"], ["z"]),
            helper.make_node("If", ["cond"], ["o"], then_branch=then, else_branch=then),
        ],
        "g",
        [helper.make_tensor_value_info("53", 1, [1]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("o", 1, [1]), helper.make_tensor_value_info("z", 1, [1])],
    )
    rename_tensor(graph, "53", "z")
    assert graph.input[0].name == "z"
    assert list(graph.node[0].input) == ["z"] and list(graph.node[0].output) == ["z_orig"]
    assert graph.output[1].name == "z_orig"
    assert list(graph.node[1].attribute[0].g.node[0].input) == ["z"]


def _with_noop_casts(model: onnx.ModelProto) -> onnx.ModelProto:
    """Keras-on-torch style: a Cast(to=FLOAT) in front of every node input that is not a weight."""
    graph = model.graph
    weights_ = {i.name for i in graph.initializer}
    nodes = []
    for k, node in enumerate(graph.node):
        for j, name in enumerate(node.input):
            if name not in weights_:
                nodes.append(helper.make_node("Cast", [name], [f"cast_{k}_{j}"], to=TensorProto.FLOAT))
                node.input[j] = f"cast_{k}_{j}"
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_variants_of_a_graph_with_noop_casts_pass_the_checker(precision: str) -> None:
    from cvae_bench.onnx.variants import make_variant

    w = weights()
    model = normalize_interface(_with_noop_casts(dense_model(w)), "decoder")
    check_structure(model, "decoder")
    variant = make_variant(model, precision)
    check_structure(variant, "decoder")
    z, y = _z_label(64)
    np.testing.assert_allclose(
        _decoded(variant, z, y), reference.decode(w, z, y), atol=TOLERANCES["decoder", precision]
    )


def test_checker_failures_are_one_line() -> None:
    # What onnxconverter-common alone makes of Keras-on-torch's Casts: float16 tensors out of Cast(to=FLOAT).
    bad = normalize_interface(_with_noop_casts(dense_model(weights())), "decoder")
    casts = [n.output[0] for n in bad.graph.node if n.op_type == "Cast"]
    bad.graph.value_info.extend(helper.make_tensor_value_info(c, TensorProto.FLOAT16, None) for c in casts[:3])
    with pytest.raises(OnnxExportError) as info:
        check_structure(bad, "decoder")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("onnx.checker rejects the decoder: [ShapeInferenceError] ")
    assert _summary(RuntimeError("first\nsecond\nthird")) == "first (and 2 more)"


# -- the check ------------------------------------------------------------------------------------------
class _FakeSession:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self.fn(feeds["z"], feeds["label"])]


def _decode_ref(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return reference.decode(weights(), z, y).astype(np.float32)


def test_verify_collects_every_failure_and_names_the_largest() -> None:
    def off(z: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = _decode_ref(z, y)
        out[-1, 3, 4] += 1e-3 if len(z) > 1 else 2e-5
        return out

    cases = {"random": _z_label(1024)}
    with pytest.raises(OnnxCheckError) as info:
        verify(_FakeSession(off), _decode_ref, cases, part="decoder", reference_name="ref")
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "3 of 3 checks failed" in msg and "atol 1e-05" in msg
    assert "largest |difference| 0.001 at x_mean[1023, 3, 4] on random inputs at batch 1024" in msg


def test_verify_reports_runtime_failures_and_bad_shapes() -> None:
    def failing(z: np.ndarray, y: np.ndarray) -> np.ndarray:
        if len(z) == 7:
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions")
        return _decode_ref(z, y)[:, :27]

    with pytest.raises(OnnxCheckError) as info:
        verify(_FakeSession(failing), _decode_ref, {"real": _z_label(1024)}, part="decoder")
    msg = str(info.value)
    assert "onnxruntime failed on real inputs at batch 7: [ONNXRuntimeError]" in msg
    assert "x_mean on real inputs at batch 1: shape [1, 27, 28], framework [1, 28, 28]" in msg


def test_verify_passes_within_tolerance() -> None:
    verdict = verify(_FakeSession(_decode_ref), _decode_ref, {"random": _z_label(1024)}, part="decoder")
    assert verdict.passed and verdict.max_abs_err == 0.0 and verdict.batches == (1, 7, 1024)
    assert json.loads(verdict.compact())["passed"] is True
    assert type(verdict).from_compact(verdict.compact()) == verdict


# -- the export pipeline with a synthetic exporter (no framework) ---------------------------------------
@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temp folder, made private to this test, so that leftovers can be counted."""
    import tempfile

    folder = tmp_path / "systemp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_export_writes_typed_metadata_that_reads_back(tmp_path: Path, private_tmp: Path) -> None:
    from cvae_bench.onnx.metadata import OnnxMetadata

    out = tmp_path / "decoder.onnx"
    result = export_synthetic(SyntheticExporter(), out)
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    meta = OnnxMetadata.from_props(props)
    assert meta.to_props() == props and meta.verification == result.verdicts["fp32"]
    assert dataclasses.replace(meta, val_elbo_onnx=result.metadata.val_elbo_onnx) == result.metadata
    assert list(props)[:3] == ["cvae_bench_version", "part", "backend"]
    assert (props["val_elbo"], props["val_examples"], props["image_shape"]) == ("250.000000", "200", "[28, 28]")
    assert json.loads(props["verification"])["passed"] is True and "verification_fp32" not in props
    assert meta.model_spec == SPEC and meta.exporter_details["note"] == "helper graph"
    lines = result.lines()
    assert lines[0] == "decoder.onnx: decoder of synthetic, exported by synthetic [0], opset 18"
    assert lines[1].startswith("verified: max |onnxruntime - synthetic| ")
    assert lines[2].startswith("decoder.onnx: fp32, ") and "speed not measured" in lines[2]
    assert type(result).from_json(json.loads(json.dumps(result.to_json()))) == result
    assert list(private_tmp.iterdir()) == []


def test_a_failing_exporter_leaves_no_raw_file_nor_output(tmp_path: Path, private_tmp: Path) -> None:
    out = tmp_path / "out" / "decoder.onnx"
    with pytest.raises(RuntimeError, match="crashed after writing"):
        export_synthetic(SyntheticExporter(fail=True), out)
    assert list(private_tmp.iterdir()) == []
    assert not out.exists()


_KILLED = """
import sys
sys.path.insert(0, {root!r})
import tempfile
tempfile.tempdir = {tmp!r}
from pathlib import Path
from cvae_bench.testing.onnx_models import SyntheticExporter, export_synthetic
export_synthetic(SyntheticExporter(hold=True), Path({out!r}))
"""


def test_a_killed_exports_scratch_is_removed_by_the_next_export(tmp_path: Path, private_tmp: Path) -> None:
    import signal

    out = tmp_path / "decoder.onnx"
    script = _KILLED.format(root=str(ROOT), tmp=str(private_tmp), out=str(out))
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
            left = [p.name for p in private_tmp.rglob("raw-decoder.onnx")]
            assert left == ["raw-decoder.onnx"]
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    with pytest.raises(RuntimeError, match="crashed after writing"):
        export_synthetic(SyntheticExporter(fail=True), out)
    assert list(private_tmp.iterdir()) == []
    assert not out.exists()


# -- backends (conformance style) -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "weights.safetensors"
    save_weights(path, weights())
    return path


def _exporting(workers: WorkerPool, name: str) -> Any:
    from cvae_bench.backends import registry

    if not registry.get(name).available:
        pytest.skip(registry.get(name).unavailable_reason())
    backend = workers.get(name)
    if not backend.info["capabilities"]["onnx_export"]:
        pytest.skip(f"backend {name!r} does not declare onnx_export")
    backend.set_weights(weights())
    return backend


def _export(backend: Any, out: Path, mnist: tuple, **kwargs: Any) -> onnx_export.ExportResult:
    return onnx_export.export_verified(
        backend,
        out,
        ExportSettings(val_subset=500, measure_speed=False, **kwargs),
        backend_name=backend.name,
        versions=backend.info["versions"],
        x_test=mnist[2],
        y_test=mnist[3],
        val_elbo=float("nan"),
        weights_sha256="0" * 64,
    )


@pytest.mark.parametrize("part", ["decoder", "encoder"])
@pytest.mark.parametrize("name", backend_params())
def test_export_has_the_interface_and_matches_the_framework(
    name: str, part: str, workers: WorkerPool, mnist: tuple, tmp_path: Path
) -> None:
    backend = _exporting(workers, name)
    out = tmp_path / f"{part}.onnx"
    result = _export(backend, out, mnist, part=part)
    model = onnx.load(out)
    assert interface_problems(model, part) == []
    check_structure(model, part)
    meta = {p.key: p.value for p in model.metadata_props}
    for key in ("backend", "framework_versions", "exporter", "exporter_version", "opset", "latent_dim"):
        assert meta[key], key
    assert (meta["backend"], meta["part"], meta["opset"], meta["num_classes"]) == (name, part, "18", "10")
    assert [o.version for o in model.opset_import if o.domain == ""] == [18]
    verdict = json.loads(meta["verification"])
    assert verdict["passed"] and verdict["max_abs_err"] <= 1e-5 and verdict["batches"] == [1, 7, 1024]
    assert result.verdicts["fp32"].max_abs_err <= TOLERANCES[part, "fp32"]
    # Independently of the exporter's own check: the written file against the framework.
    sess = session(str(out))
    rng = np.random.default_rng(3)
    for n in (1, 7, 1024):
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
        if part == "decoder":
            z = rng.standard_normal((n, 2)).astype(np.float32)
            np.testing.assert_allclose(sess.run(None, {"z": z, "label": y})[0], backend.decode(z, y), atol=1e-5)
        else:
            x = mnist[2][:n]
            got, want = sess.run(None, {"x": x, "label": mnist[3][:n]}), backend.encode(x, mnist[3][:n])
            for g, e in zip(got, want, strict=True):
                np.testing.assert_allclose(g, e, atol=1e-5)


@pytest.mark.parametrize("name", backend_params())
def test_declared_export_matches_implementation(name: str, workers: WorkerPool, tmp_path: Path) -> None:
    """A backend declares onnx_export exactly when it implements export_onnx, so no exporter goes untested."""
    backend = workers.get(name)
    declared = backend.info["capabilities"]["onnx_export"]
    try:
        backend.export_onnx(str(tmp_path / "probe.onnx"), part="no-such-part")
        implemented = True
    except Exception as exc:  # the base class says "does not export"; an exporter rejects the part
        implemented = "does not export ONNX" not in str(exc)
    assert declared == implemented, f"{name}: onnx_export={declared} but export_onnx implemented={implemented}"


def test_broken_export_is_refused_and_leaves_no_file(
    workers: WorkerPool, mnist: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = _exporting(workers, "torch")
    real = onnx_export.normalize_interface

    def corrupt(model: onnx.ModelProto, *args: Any, **kwargs: Any) -> onnx.ModelProto:
        out = real(model, *args, **kwargs)
        big = max(out.graph.initializer, key=lambda i: int(np.prod(i.dims)))
        arr = numpy_helper.to_array(big).copy()
        arr.flat[123] += 0.5
        big.CopyFrom(numpy_helper.from_array(arr, big.name))
        return out

    monkeypatch.setattr(onnx_export, "normalize_interface", corrupt)
    out = tmp_path / "decoder.onnx"
    with pytest.raises(OnnxCheckError, match=r"differs from torch: \d+ of 6 checks failed .* largest \|difference\|"):
        _export(backend, out, mnist)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_variants_are_smaller_and_within_their_tolerance(
    precision: str, workers: WorkerPool, mnist: tuple, tmp_path: Path
) -> None:
    backend = _exporting(workers, "torch")
    result = _export(backend, tmp_path / "decoder.onnx", mnist, precision=precision)
    fp32, variant = result.measurements["fp32"], result.measurements[precision]
    assert variant.size_bytes < (0.55 if precision == "fp16" else 0.3) * fp32.size_bytes
    assert variant.size_bytes == (tmp_path / "decoder.onnx").stat().st_size
    verdict = result.verdicts[precision]
    assert verdict.passed and verdict.atol == TOLERANCES["decoder", precision]
    assert abs(variant.val_elbo - fp32.val_elbo) < 0.1
    model = onnx.load(tmp_path / "decoder.onnx")
    assert interface_problems(model, "decoder") == []
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["precision"] == precision and json.loads(meta["verification_fp32"])["passed"]
    assert any(line.startswith(f"decoder.onnx: {precision}, ") and "vs fp32)" in line for line in result.lines())


def test_export_part_records_the_shared_evaluator_and_the_weights(weights_file: Path, tmp_path: Path) -> None:
    from cvae_bench.backends import registry
    from cvae_bench.runtime.files import file_sha256

    if not registry.get("torch").available:
        pytest.skip("torch is not installed")
    cmd = ExportCommand(backend="torch", weights=str(weights_file), out=str(tmp_path / "d.onnx"), val_subset=300)
    result = onnx_export.export_part(cmd, measure_speed=False)
    ref = reference.evaluator_parts(weights(), *_val(300))
    assert abs(result.val_elbo - float(ref.total.mean())) < 1e-3
    assert abs(result.measurements["fp32"].val_elbo - result.val_elbo) < 1e-3
    assert result.metadata.weights_sha256 == file_sha256(weights_file)
    assert result.metadata.val_examples == 300


def _val(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from cvae_bench.data.loading import as_float, load_dataset
    from cvae_bench.models.evaluator import Evaluator

    _, _, x, y = as_float(load_dataset("mnist", download=False))
    return x[:n], y[:n], Evaluator(x[:n], y[:n], SPEC).eps


def test_backend_that_does_not_export_is_refused(weights_file: Path, tmp_path: Path) -> None:
    from cvae_bench.backends import registry

    names = [n for n, i in registry.all_backends().items() if i.available and n == "numpy"]
    if not names:
        pytest.skip("the example numpy plugin (which does not export) is not installed")
    with pytest.raises(OnnxExportError, match="does not export ONNX"):
        onnx_export.export_part(
            ExportCommand(backend="numpy", weights=str(weights_file), out=str(tmp_path / "x.onnx"), val_subset=10)
        )
    assert not (tmp_path / "x.onnx").exists()


# -- Keras functional models, one process per Keras backend ---------------------------------------------
_KERAS_SCRIPT = r"""
import json, sys
import numpy as np
import keras
from keras import layers
import onnx
from cvae_bench.backends.keras_export import export_keras
from cvae_bench.onnx.check import check_structure, verify
from cvae_bench.onnx.interface import normalize_interface
from cvae_bench.onnx.sessions import make_session as session

path, results = sys.argv[1], {}
keras.utils.set_random_seed(0)
label = keras.Input(shape=(10,), name="label")
z = keras.Input(shape=(2,), name="z")
h = layers.Concatenate()([z, label])
h = layers.Dense(32, activation="relu")(h)
h = layers.Dense(512, activation="relu")(h)
h = layers.Reshape((28, 28))(layers.Dense(784)(h))
decoder = keras.Model([z, label], layers.Activation("sigmoid", name="x_mean")(h))
image = keras.Input(shape=(28, 28), name="image")
h = layers.Concatenate()([layers.Flatten()(image), label])
h = layers.Dense(4)(layers.Dense(32, activation="relu")(layers.Dense(512, activation="relu")(h)))
encoder = keras.Model([image, label], [h[:, :2], h[:, 2:]])
rng = np.random.default_rng(0)
y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 1024)]
cases = {
    "decoder": {"random": (rng.standard_normal((1024, 2)).astype(np.float32), y)},
    "encoder": {"random": (rng.random((1024, 28, 28), dtype=np.float32), y)},
}
for part, model in (("decoder", decoder), ("encoder", encoder)):
    meta = export_keras(model, f"{path}.{part}.raw.onnx", 18, "keras-" + keras.backend.backend())
    normal = normalize_interface(onnx.load(f"{path}.{part}.raw.onnx"), part, opset=18)
    check_structure(normal, part)
    def ref(a, b, model=model):
        out = model([a, b])
        if isinstance(out, (list, tuple)):
            return tuple(keras.ops.convert_to_numpy(o) for o in out)
        return keras.ops.convert_to_numpy(out)
    verdict = verify(session(normal), ref, cases[part], part=part)
    results[part] = {"meta": meta, "max_abs_err": verdict.max_abs_err}
print("RESULT " + json.dumps(results))
"""


@pytest.mark.parametrize(
    "name",
    # jax2onnx's import (flax, orbax) and tracing make the jax case about 20 s.
    [pytest.param(n, marks=[pytest.mark.slow] if n == "keras-jax" else []) for n in KERAS_ENGINES],
)
def test_export_keras_functional_model(name: str, tmp_path: Path) -> None:
    """`export_keras` on a model shaped like the tutorial's, until the Keras backends declare export."""
    from cvae_bench.backends import registry

    info = registry.get(name)
    if not info.available:
        pytest.skip(info.unavailable_reason())
    engine = KERAS_ENGINES[name]
    converter = {"torch": "torch", "tensorflow": "tf2onnx", "jax": "jax2onnx"}[engine]
    if importlib.util.find_spec(converter) is None:
        pytest.skip(f"{converter} is not installed; pip install {converter}")
    proc = subprocess.run(
        [sys.executable, "-c", _KERAS_SCRIPT, str(tmp_path / "m")],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": engine},
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    results = json.loads(line.removeprefix("RESULT "))
    for part in ("decoder", "encoder"):
        assert results[part]["max_abs_err"] <= 1e-5
        assert converter in results[part]["meta"] and results[part]["meta"]["exporter"].startswith("keras.Model.export")


# -- the CLI --------------------------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cvae_bench", *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


def test_cli_export_writes_a_verified_file(weights_file: Path, tmp_path: Path) -> None:
    from cvae_bench.backends import registry

    if not registry.get("torch").available:
        pytest.skip("torch is not installed")
    out = tmp_path / "sub" / "decoder.onnx"
    proc = _cli("export", "--backend", "torch", "--weights", str(weights_file), "-o", str(out), "--val-subset", "200")
    assert proc.returncode == 0, proc.stderr
    assert out.exists()
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("decoder.onnx: decoder of torch, exported by torch.onnx.export")
    assert lines[1].startswith("verified: max |onnxruntime - torch| ")
    assert lines[2].startswith("decoder.onnx: fp32, ") and " ms/call @1024, val -ELBO " in lines[2]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--weights", "missing.safetensors"], "error: --weights: no such file 'missing.safetensors'"),
        (["--backend", "tf"], "error: Unknown backend 'tf'. Known: "),
    ],
    ids=["missing-weights", "unknown-backend"],
)
def test_cli_export_errors_are_one_line(args: list[str], expected: str, weights_file: Path, tmp_path: Path) -> None:
    base = {"--backend": "torch", "--weights": str(weights_file)}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    proc = _cli("export", *[a for kv in base.items() for a in kv], "-o", str(tmp_path / "x.onnx"))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    status = 2 if "Unknown backend" in expected else 1  # bad usage, or a file that cannot be read
    assert proc.returncode == status and len(lines) == 1 and lines[0].startswith(expected), proc.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export_refuses_an_output_that_is_the_input_or_exists(weights_file: Path, tmp_path: Path) -> None:
    from cvae_bench.backends import registry

    if not registry.get("torch").available:
        pytest.skip("torch is not installed")
    copy = tmp_path / "w.safetensors"
    copy.write_bytes(weights_file.read_bytes())
    before = copy.read_bytes()
    missing = tmp_path / "missing.npz"
    for out, force, expected in [
        (copy, [], f"error: -o {copy} is the input {copy}; it is read, so write to another file"),
        (copy, ["--force"], f"error: -o {copy} is the input {copy}; it is read, so write to another file"),
        (tmp_path / "x.onnx", [], f"error: -o {tmp_path / 'x.onnx'} exists; pass --force to replace it"),
        # --force lets an existing file through: the next step (reading the --data file) answers.
        (tmp_path / "x.onnx", ["--force"], f"error: --data {missing} does not exist"),
        # The options are checked before the files: a bad name is answered first, whatever -o is.
        (copy, [], "error: Unknown backend 'tf'. Known: "),
    ]:
        (tmp_path / "x.onnx").write_text("old")
        backend = "tf" if "Unknown backend" in expected else "torch"
        args = ["--backend", backend, "--weights", str(copy), "-o", str(out), "--data", str(missing), *force]
        proc = _cli("export", *args)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert (
            proc.returncode == (2 if "Unknown backend" in expected else 1)
            and len(lines) == 1
            and lines[0].startswith(expected)
        ), proc.stderr
        assert copy.read_bytes() == before and (tmp_path / "x.onnx").read_text() == "old"
