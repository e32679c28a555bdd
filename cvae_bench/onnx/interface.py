"""The one ONNX interface (docs/design.md), and bringing any exporter's graph to it with onnx's own protos.

The decoder has inputs `z` float32
[batch, 2] and `label` float32 [batch, 10] and output `x_mean` float32 [batch, 28, 28]; the encoder `x`, `label`
→ `z_mean`, `z_log_var`. Exporters name things `53`, `Identity:0` or `unk__23`, flatten images, or reorder
inputs: `normalize_interface` matches by name, size and position and edits names consistently everywhere.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cvae_bench.core.errors import OnnxExportError
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec

# Declared with the export's options (a light module the command line reads); named here too, where they act.
from cvae_bench.onnx.options import DEFAULT_OPSET as DEFAULT_OPSET
from cvae_bench.onnx.options import PARTS as PARTS

#: The name of the dynamic batch axis on every input and output.
BATCH = "batch"


@dataclass(frozen=True)
class TensorSpec:
    """One float32 input or output: its name and its shape per example (without the batch axis)."""

    name: str
    shape: tuple[int, ...]

    def describe(self) -> str:
        """E.g. `z float32[batch, 2]`."""
        return f"{self.name} float32[{', '.join([BATCH, *map(str, self.shape)])}]"


@dataclass(frozen=True)
class Interface:
    """The inputs and outputs, in order, that an exported part must have."""

    part: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def interface(part: str, spec: ModelSpec = DEFAULT_SPEC) -> Interface:
    """The one interface of `part` ("decoder" or "encoder") for this model spec."""
    label = TensorSpec("label", (spec.num_classes,))
    latent = (spec.latent_dim,)
    if part == "decoder":
        return Interface(part, (TensorSpec("z", latent), label), (TensorSpec("x_mean", spec.image_shape),))
    if part == "encoder":
        return Interface(
            part,
            (TensorSpec("x", spec.image_shape), label),
            (TensorSpec("z_mean", latent), TensorSpec("z_log_var", latent)),
        )
    raise OnnxExportError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")


# -- reading shapes -------------------------------------------------------------------------------------
def _dims(v: onnx.ValueInfoProto) -> list[int | str | None]:
    """Each axis as its size, its symbolic name, or None where unknown."""
    if not v.type.tensor_type.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in v.type.tensor_type.shape.dim]


def _features(v: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    """The per-example shape (axes after the first) when every one of them is a known size."""
    dims = _dims(v)
    if len(dims) < 2 or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
        return None
    return tuple(int(d) for d in dims[1:])  # type: ignore[arg-type]


def describe_value(v: onnx.ValueInfoProto) -> str:
    """E.g. `Identity:0 float[unk__25, 28, 28]`."""
    elem = v.type.tensor_type.elem_type
    try:
        dtype = str(helper.tensor_dtype_to_np_dtype(elem))
    except (KeyError, ValueError):  # no NumPy twin (bfloat16, float8…) or not a tensor
        dtype = helper.tensor_dtype_to_string(elem).removeprefix("TensorProto.").lower() if elem else "untyped"
    return f"{v.name} {dtype}[{', '.join('?' if d is None else str(d) for d in _dims(v))}]"


def _set_shape(v: onnx.ValueInfoProto, features: tuple[int, ...]) -> None:
    shape = v.type.tensor_type.shape
    del shape.dim[:]
    shape.dim.add().dim_param = BATCH
    for size in features:
        shape.dim.add().dim_value = size


# -- renaming tensors consistently ----------------------------------------------------------------------
def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    out = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            out.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            out.extend(attr.graphs)
    return out


def tensor_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name the graph (and its subgraphs) uses."""
    names = {v.name for v in itertools.chain(graph.input, graph.output, graph.value_info)}
    names.update(i.name for i in graph.initializer)
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        for sub in _subgraphs(node):
            names.update(tensor_names(sub))
    names.discard("")
    return names


def _replace(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
        for sub in _subgraphs(node):  # a subgraph may read the outer tensor by name
            _replace(sub, old, new)
    for v in itertools.chain(graph.input, graph.output, graph.value_info):
        if v.name == old:
            v.name = new
    for init in graph.initializer:
        if init.name == old:
            init.name = new


def fresh_name(graph: onnx.GraphProto, base: str) -> str:
    """`base`, or `base_1`, `base_2`… : the first one that the graph does not use."""
    used = tensor_names(graph)
    for k in itertools.count():
        name = base if k == 0 else f"{base}_{k}"
        if name not in used:
            return name
    raise AssertionError("unreachable")


def fresh_node_name(graph: onnx.GraphProto, base: str) -> str:
    """`base`, or `base_1`, `base_2`… : the first node name that the graph does not use."""
    used = {n.name for n in graph.node}
    return next(name for k in itertools.count() if (name := base if k == 0 else f"{base}_{k}") not in used)


def rename_tensor(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename tensor `old` to `new` in every node, graph input/output, value_info and initializer.

    A different tensor already called `new` is first moved out of the way to a fresh name.
    """
    if old == new:
        return
    if new in tensor_names(graph):
        _replace(graph, new, fresh_name(graph, f"{new}_orig"))
    _replace(graph, old, new)


def _const(graph: onnx.GraphProto, base: str, values: list[int]) -> str:
    name = fresh_name(graph, base)
    graph.initializer.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
    return name


# -- normalisation --------------------------------------------------------------------------------------
def _check_float(v: onnx.ValueInfoProto, kind: str) -> None:
    if v.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise OnnxExportError(
            f"the exporter's {kind} {describe_value(v)} is not float32; expected float32, as the interface"
        )


def _match(values: list[onnx.ValueInfoProto], want: tuple[TensorSpec, ...], kind: str) -> list[TensorSpec]:
    """The spec each value plays, matched by name, else by per-example size, else by position."""
    got = ", ".join(describe_value(v) for v in values)
    expected = ", ".join(s.describe() for s in want)
    if len(values) != len(want):
        raise OnnxExportError(f"the exporter wrote {kind}s [{got}]; expected [{expected}]")
    for v in values:
        _check_float(v, kind)
    by_name = {s.name: s for s in want}
    if {v.name for v in values} == set(by_name):
        return [by_name[v.name] for v in values]
    sizes = [math.prod(f) if (f := _features(v)) is not None else None for v in values]
    matched = []
    for size in sizes:
        candidates = [s for s in want if math.prod(s.shape) == size]
        matched.append(candidates[0] if len(candidates) == 1 else None)
    if all(m is not None for m in matched) and len({m.name for m in matched if m}) == len(want):
        return [m for m in matched if m is not None]
    # Same sizes (the encoder's two outputs): the exporters keep the model's order.
    if any(size is not None and size != math.prod(s.shape) for size, s in zip(sizes, want, strict=True)):
        raise OnnxExportError(f"cannot match the exporter's {kind}s [{got}]; expected [{expected}]")
    return list(want)


def _adopt_input(graph: onnx.GraphProto, v: onnx.ValueInfoProto, s: TensorSpec) -> None:
    features = _features(v)
    if features is None or features == s.shape:
        rename_tensor(graph, v.name, s.name)
        _set_shape(v, s.shape)
        return
    # Same size, other layout (e.g. x as [batch, 784]): a new input, reshaped to what the graph reads.
    inner = fresh_name(graph, f"{s.name}_{'x'.join(map(str, features))}")
    rename_tensor(graph, v.name, inner)
    v.name = s.name
    _set_shape(v, s.shape)
    shape = _const(graph, f"{s.name}_reshape_shape", [-1, *features])
    graph.node.insert(
        0, helper.make_node("Reshape", [s.name, shape], [inner], name=fresh_node_name(graph, f"{s.name}_reshape"))
    )


def _adopt_output(graph: onnx.GraphProto, v: onnx.ValueInfoProto, s: TensorSpec) -> None:
    features = _features(v)
    if features is None or features == s.shape:
        rename_tensor(graph, v.name, s.name)
        _set_shape(v, s.shape)
        return
    # Same size, other layout (e.g. x_mean as [batch, 784]): reshape what the graph computes.
    if v.name == s.name:
        rename_tensor(graph, v.name, fresh_name(graph, f"{s.name}_flat"))
    elif s.name in tensor_names(graph):
        rename_tensor(graph, s.name, fresh_name(graph, f"{s.name}_orig"))
    shape = _const(graph, f"{s.name}_reshape_shape", [-1, *s.shape])
    graph.node.append(
        helper.make_node("Reshape", [v.name, shape], [s.name], name=fresh_node_name(graph, f"{s.name}_reshape"))
    )
    v.name = s.name
    _set_shape(v, s.shape)


def _split_single_output(graph: onnx.GraphProto, want: tuple[TensorSpec, ...]) -> None:
    """One [batch, Σ] output where several are wanted (the encoder's [batch, 4]): slice it, in order."""
    (v,) = graph.output
    features = _features(v)
    if features is None or len(features) != 1 or features[0] != sum(math.prod(s.shape) for s in want):
        return
    axes = _const(graph, "split_axes", [1])
    outputs, start = [], 0
    for s in want:
        stop = start + math.prod(s.shape)
        name = fresh_name(graph, f"{v.name}_{start}_{stop}")
        begin, end = _const(graph, f"{name}_start", [start]), _const(graph, f"{name}_end", [stop])
        graph.node.append(
            helper.make_node("Slice", [v.name, begin, end, axes], [name], name=fresh_node_name(graph, f"{name}_slice"))
        )
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, stop - start]))
        start = stop
    del graph.output[:]
    graph.output.extend(outputs)


def _set_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if current == opset:
        return model
    try:
        return onnx.version_converter.convert_version(model, opset)
    except Exception as exc:  # the converter raises RuntimeError, ValueError, …: all mean "cannot"
        raise OnnxExportError(
            f"the exporter wrote opset {current}, and converting it to opset {opset} failed ({exc}); "
            f"pass --opset {current}"
        ) from exc


def normalize_interface(
    model: onnx.ModelProto, part: str, spec: ModelSpec = DEFAULT_SPEC, opset: int | None = DEFAULT_OPSET
) -> onnx.ModelProto:
    """A copy of `model` with the one interface: names, order, float32, `batch` axes, opset.

    Inputs and outputs are matched by name, else by per-example size, else by position; a different
    layout of the same size gets a Reshape node; one concatenated encoder output gets split. Intermediate
    value_info (which may carry the exporter's axis names, e.g. `unk__25`) is dropped: shape inference
    recomputes it.

    Raises:
        OnnxExportError: the model cannot be brought to the interface (say why: counts, dtypes, sizes).
    """
    want = interface(part, spec)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    initializers = {i.name for i in graph.initializer}
    # Old exporters list initializers among the inputs; the interface has only the real ones.
    real_inputs = [v for v in graph.input if v.name not in initializers]
    if len(real_inputs) != len(graph.input):
        del graph.input[:]
        graph.input.extend(real_inputs)
    for v, s in zip(list(graph.input), _match(list(graph.input), want.inputs, "input"), strict=True):
        _adopt_input(graph, v, s)
    if len(graph.output) == 1 and len(want.outputs) > 1:
        _split_single_output(graph, want.outputs)
    for v, s in zip(list(graph.output), _match(list(graph.output), want.outputs, "output"), strict=True):
        _adopt_output(graph, v, s)
    for field, specs in ((graph.input, want.inputs), (graph.output, want.outputs)):
        ordered = sorted(field, key=lambda v: [s.name for s in specs].index(v.name))
        copies = [onnx.ValueInfoProto() for _ in ordered]
        for c, v in zip(copies, ordered, strict=True):
            c.CopyFrom(v)
        del field[:]
        field.extend(copies)
    del graph.value_info[:]
    return _set_opset(out, opset) if opset is not None else out


# -- metadata -------------------------------------------------------------------------------------------
def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    """Add (or overwrite) metadata_props; the exporter's own stay."""
    merged = {p.key: p.value for p in model.metadata_props}
    merged.update(props)
    helper.set_model_props(model, merged)
