"""The anatomy: op names to categories, recorded profiler output read back, and anatomies that add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvae_bench.bench.anatomy import hlo
from cvae_bench.bench.anatomy import jax as jax_adapter
from cvae_bench.bench.anatomy import onnxruntime as ort_adapter
from cvae_bench.bench.anatomy import tensorflow as tf_adapter
from cvae_bench.bench.anatomy.categories import CATEGORIES, IDLE, OVERHEAD, categorize
from cvae_bench.bench.anatomy.records import build_anatomy, from_spans, op_times, union_length
from cvae_bench.bench.anatomy.trace import read_chrome_trace
from cvae_bench.bench.roofline import DATA, ELEMENTWISE, GEMM, OPTIMIZER

DATA_DIR = Path(__file__).parent / "data" / "anatomy"


@pytest.mark.parametrize(
    ("framework", "name", "category"),
    [
        ("torch", "aten::mm", GEMM),
        ("torch", "aten::addmm", GEMM),
        ("torch", "aten::linear", OVERHEAD),  # its self time is dispatch; the GEMM is its child addmm
        ("torch", "aten::_fused_adam_", OPTIMIZER),
        ("torch", "Optimizer.step#Adam.step", OPTIMIZER),
        ("torch", "aten::randn", DATA),
        ("torch", "aten::sigmoid_backward", ELEMENTWISE),
        ("torch", "aten::threshold_backward", ELEMENTWISE),
        ("torch", "aten::sum", ELEMENTWISE),
        ("torch", "aten::view", OVERHEAD),
        ("torch", "autograd::engine::evaluate_function: AddmmBackward0", OVERHEAD),
        ("torch", "cpp_fused_add_mul_0", ELEMENTWISE),
        ("torch", "## Call CompiledFxGraph abc ##", ELEMENTWISE),  # the self time of inductor's C++ kernels
        ("torch", "Torch-Compiled Region: 0/0", OVERHEAD),
        ("torch", "TorchDynamo Cache Lookup", OVERHEAD),
        ("xla", "dot", GEMM),
        ("xla", "ynn_fusion.1", GEMM),
        ("xla", "multiply_add_fusion", ELEMENTWISE),
        ("xla", "rng-bit-generator", DATA),
        ("xla", "while", OVERHEAD),
        # names seen in a keras-tensorflow jit step: TF's XLA names a dot after its TF op
        ("xla", "MatMul.24", GEMM),
        ("xla", "MatMul_1.18", GEMM),
        ("xla", "wrapped_dynamic-slice", DATA),  # keras-jax jit: XLA:CPU's fusion of one dynamic-slice
        ("xla", "wrapped_reduce-window.3", ELEMENTWISE),
        ("xla", "copy.11", ELEMENTWISE),
        ("tensorflow", "MatMul", GEMM),
        ("tensorflow", "_MklMatMul", GEMM),
        ("tensorflow", "ResourceApplyAdam", OPTIMIZER),
        ("tensorflow", "ReadVariableOp", OVERHEAD),
        ("tensorflow", "BiasAdd", ELEMENTWISE),
        ("onnxruntime", "Gemm", GEMM),
        ("onnxruntime", "FusedGemm", GEMM),
        ("onnxruntime", "Sigmoid", ELEMENTWISE),
    ],
)
def test_op_names_map_to_one_category(framework: str, name: str, category: str) -> None:
    assert categorize(framework, name) == category


def test_unknown_framework_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: onnxruntime, tensorflow, torch, xla"):
        categorize("mxnet", "dot")


def test_every_pattern_category_is_a_category() -> None:
    from cvae_bench.bench.anatomy.categories import PATTERNS

    assert {c for _, _, c in PATTERNS} <= set(CATEGORIES)
    assert IDLE in CATEGORIES


def test_union_and_overlapping_spans() -> None:
    assert union_length([(0, 1), (0.5, 2), (3, 4)]) == pytest.approx(3.0)
    # two thunks at once on two threads share the busy time; a runtime span outside them is overhead
    ops, extra = from_spans("xla", [("dot", 0.0, 1.0), ("add_fusion", 0.0, 1.0)], [(0.0, 1.5)], calls=1)
    assert sum(o.seconds for o in ops) == pytest.approx(1.0)
    assert extra[OVERHEAD] == pytest.approx(0.5)


def test_torch_recorded_events_add_up() -> None:
    rec = json.loads((DATA_DIR / "torch_eager_step_events.json").read_text())
    calls = rec["calls"]
    events = [(n, us * 1e-6) for n, us in rec["events_self_us"]]
    ops = op_times("torch", events, calls)
    total = sum(s for _, s in events) / calls
    profiled = total * 1.25  # a wall time with 20 % outside any op
    a = build_anatomy(
        workload="train_step",
        batch=64,
        framework="torch",
        profiler="torch.profiler",
        calls=calls,
        measured_s=total,
        profiled_s=profiled,
        ops=ops,
    )
    assert a.explained_s + a.remainder_s == pytest.approx(a.profiled_s)
    assert a.remainder_s == pytest.approx(profiled - total)
    names = {o.name for o in ops}
    assert {"aten::addmm", "aten::mm", "aten::_fused_adam_"} <= names
    assert a.categories[GEMM] > 0 and a.categories[OPTIMIZER] > 0 and a.categories[ELEMENTWISE] > 0
    assert a.top[0].seconds >= a.top[-1].seconds


def test_jax_recorded_trace() -> None:
    events = read_chrome_trace(DATA_DIR / "jax_perfetto_trace.json")
    kernels, runtime = jax_adapter.split_events(events)
    assert {n for n, _, _ in kernels} >= {"dot", "ynn_fusion"}
    ops, extra = from_spans("xla", kernels, runtime, calls=2)
    busy = union_length((s, e) for _, s, e in kernels) / 2
    assert sum(o.seconds for o in ops) == pytest.approx(busy)
    a = build_anatomy(
        workload="train_step",
        batch=64,
        framework="xla",
        profiler="jax.profiler",
        calls=2,
        measured_s=busy,
        profiled_s=busy + extra[OVERHEAD] + 1e-4,
        ops=ops,
        extra=extra,
    )
    assert a.categories[GEMM] > 0
    assert a.remainder_s == pytest.approx(1e-4)


def test_onnxruntime_recorded_profile() -> None:
    events = read_chrome_trace(DATA_DIR / "onnxruntime_profile.json")
    kernels, runtime = ort_adapter.split_events(events)
    # onnxruntime fuses each Gemm with its activation: the recorded graph (Gemm, Relu, Gemm, Sigmoid) runs as two
    assert [n for n, _, _ in kernels[:2]] == ["FusedGemm", "FusedGemm"]
    assert len(runtime) == 4  # four runs recorded
    ops, extra = from_spans("onnxruntime", kernels, runtime, calls=4)
    run_s = sum(e - s for s, e in runtime) / 4
    assert sum(o.seconds for o in ops) + extra[OVERHEAD] == pytest.approx(run_s)
    assert {o.category for o in ops} == {GEMM}


def test_tensorflow_split_prefers_xla_thunks() -> None:
    events = [
        ("__inference_one_step_on_data_123", 0.0, 1.0, {"tf_op": "x:__inference"}),
        ("dot.3", 0.1, 0.4, {"hlo_op": "dot.3"}),
        ("fusion", 0.4, 0.6, {"hlo_op": "fusion"}),
    ]
    framework, kernels, runtime = tf_adapter.split_events(events)
    assert framework == "xla" and [k[0] for k in kernels] == ["dot.3", "fusion"] and runtime == [(0.0, 1.0)]
    graph = [("MatMul", 0.0, 0.2, {"tf_op": "model/dense/MatMul:MatMul"}), ("Exec", 0.0, 0.5, {})]
    framework, kernels, runtime = tf_adapter.split_events(graph)
    assert framework == "tensorflow" and kernels == [("MatMul", 0.0, 0.2)]


def test_anatomy_rows_show_each_category_and_its_floor() -> None:
    from cvae_bench.bench.groups.anatomy import ANATOMY_HEADERS, AnatomyInfo, anatomy_row

    info = AnatomyInfo(
        backend="torch",
        mode="eager",
        device="cpu",
        versions={},
        threads=2,
        batch_size=64,
        flops_per_call=1,
        floor_s=1e-3,
        median_s=4e-3,
        gflops=1.0,
        images_per_s=1.0,
        fraction_of_floor=0.25,
        warmup_s=None,
        warmup_calls=None,
        workload="train_step",
        framework="torch",
        profiler="torch.profiler",
        calls=10,
        profiled_s=5e-3,
        categories={GEMM: 2e-3, OVERHEAD: 1e-3},
        remainder_s=2e-3,
        category_floor_s={GEMM: 1e-3},
        full_floor_s=2e-3,
    )
    row = anatomy_row(info)
    assert len(row) == len(ANATOMY_HEADERS)
    assert "2.00 ms (1.00 ms)" in row and row[-1] == "2.0×"


@pytest.mark.slow
def test_a_real_torch_anatomy_adds_up(tmp_path: Path) -> None:
    """One real anatomy of the torch backend (in-process, a small data set): categories + remainder = profiled."""
    import numpy as np

    from cvae_bench.backends.torch_backend import TorchBackend
    from cvae_bench.bench.anatomy import torch as torch_adapter
    from cvae_bench.models.spec import DEFAULT_SPEC

    b = TorchBackend(DEFAULT_SPEC, 0, "cpu", "eager")
    rng = np.random.default_rng(0)
    b.load_train_data(rng.random((256, 28, 28), dtype=np.float32), np.eye(10, dtype=np.float32)[np.arange(256) % 10])
    b.set_order(np.arange(256))
    state = {"i": 0}

    def step() -> None:
        b.train_step(state["i"] % 4)
        state["i"] += 1

    for _ in range(3):
        step()
    p = torch_adapter.profile(step, 10, b.synchronize, str(tmp_path))
    a = build_anatomy(
        workload="train_step",
        batch=64,
        framework=p.framework,
        profiler=p.profiler,
        calls=10,
        measured_s=p.wall_s,
        profiled_s=p.wall_s,
        ops=p.ops,
        extra=p.extra,
    )
    assert a.explained_s + a.remainder_s == pytest.approx(a.profiled_s)
    assert a.categories[GEMM] > 0 and a.categories[OPTIMIZER] > 0
    assert a.remainder_s > -0.1 * a.profiled_s  # the profiler's self times never exceed the wall time much


# -- XLA thunks by what their HLO computes ---------------------------------------------------------------
# (opcode, metadata.op_name) of the instructions of real thunks, recorded from the HloProtos that the
# profilers stored in a keras-tensorflow jit step ("adam/…", TF op names) and a keras-jax jit step
# ("jit(train_step)/…"); parameters are left out, one CSE'd constant kept (it carries an RNG op's name).
_TF = "gradient_tape/cvae_1"
_JAX = "jit(train_step)"
RECORDED_THUNKS = [
    ("MatMul.36", "dot", [("dot", f"{_TF}/decoder_1/dense_2_1/MatMul/MatMul")], GEMM),
    (
        "divide_subtract_fusion.11",
        "fusion",
        [
            ("multiply", "adam/Mul_3"),
            ("multiply", "adam/Mul_3"),
            ("sqrt", "adam/Sqrt_1"),
            ("constant", "cvae_1/stateless_random_normal/StatelessRandomNormalV2"),
            ("add", "adam/Add_1"),
            ("add", "adam/Add_1"),
            ("divide", "adam/truediv_1"),
            ("subtract", "adam/AssignSubVariableOp"),
        ],
        OPTIMIZER,
    ),
    ("wrapped_add.1", "fusion", [("add", "adam/Add")], OPTIMIZER),  # the iteration count
    ("ynn_fusion.1", "fusion", [("reduce", f"{_TF}/encoder_1/dense_0_1/BiasAdd/BiasAddGrad")] * 4, ELEMENTWISE),
    (
        "add_divide_fusion",
        "fusion",
        [
            ("subtract", "adam/sub_1"),
            ("reshape", "cvae_1/decoder_1/reshape_1/Reshape"),
            ("add", "cvae_1/decoder_1/dense_2_1/BiasAdd"),
            ("add", "cvae_1/decoder_1/dense_2_1/BiasAdd"),
            ("logistic", "cvae_1/decoder_1/x_mean_1/Sigmoid"),
        ],
        ELEMENTWISE,
    ),
    (
        "bitcast_concatenate_fusion.1",
        "fusion",
        [("multiply", "cvae_1/stateless_random_normal/StatelessRandomNormalV2")] * 3
        + [("xor", "cvae_1/stateless_random_normal/StatelessRandomGetKeyCounter")] * 2,
        DATA,
    ),
    ("ynn_fusion.7", "fusion", [("dot", f"{_JAX}/transpose(jvp(decoder))/dense_2/dot_general")], GEMM),
    (
        "ynn_fusion.8",
        "fusion",
        [("divide", f"{_JAX}/jvp()/div"), ("multiply", f"{_JAX}/jvp()/square"), ("reduce", "reduce_sum")],
        ELEMENTWISE,
    ),
    (
        "multiply_add_fusion.22",
        "fusion",
        [
            ("multiply", f"{_JAX}/adam/square"),
            ("subtract", f"{_JAX}/adam/sub"),
            ("multiply", f"{_JAX}/adam/mul"),
            ("multiply", f"{_JAX}/adam/mul"),
            ("add", f"{_JAX}/adam/add"),
        ],
        OPTIMIZER,
    ),
    ("copy.34", "copy", [("copy", "")], None),  # no HLO verdict: its name decides
    ("while.28", "while", [("while", f"{_JAX}/jvp(jit(_normal))/jit(_normal_real)/jit(_uniform)")], None),
]


@pytest.mark.parametrize(("name", "opcode", "inner", "category"), RECORDED_THUNKS)
def test_recorded_xla_thunks_are_filed_by_their_hlo(
    name: str, opcode: str, inner: list[tuple[str, str]], category: str | None
) -> None:
    assert hlo.category(hlo.Instruction(name, opcode, tuple(inner))) == category


def _field(number: int, value: bytes | int | str) -> bytes:
    """One protobuf field: a varint, or length-delimited bytes/text."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def _instruction(name: str, opcode: str, op_name: str = "", called: tuple[int, ...] = ()) -> bytes:
    packed = b"".join(_field(0, c)[1:] for c in called)  # the varints alone: a packed repeated field
    return (
        _field(1, name)
        + _field(2, opcode)
        + (_field(7, _field(2, op_name)) if op_name else b"")
        + (_field(38, packed) if called else b"")
    )


def _hlo_proto(*computations: tuple[int, list[bytes]]) -> bytes:
    comps = b"".join(_field(3, b"".join(_field(2, i) for i in instrs) + _field(5, cid)) for cid, instrs in computations)
    return _field(1, _field(1, "jit_train_step") + comps)


def _xspace(*protos: bytes) -> bytes:
    stat_meta = _field(5, _field(1, 7) + _field(2, _field(1, 7) + _field(2, "Hlo Proto")))
    events = b"".join(
        _field(4, _field(1, i) + _field(2, _field(1, i) + _field(2, f"m{i}") + _field(5, _field(1, 7) + _field(6, p))))
        for i, p in enumerate(protos, 1)
    )
    metadata = _field(2, "/host:metadata") + stat_meta + events
    return _field(1, _field(2, "/host:CPU")) + _field(1, metadata)


def test_categories_read_from_an_xspace() -> None:
    """The wire-format reader finds each module's HLO and files its thunks (field numbers of xplane/hlo.proto)."""
    adam = [_instruction(f"m{i}", "multiply", f"{_JAX}/adam/mul") for i in range(3)]
    step = _hlo_proto(
        (
            1,
            [
                _instruction("dot", "dot", f"{_JAX}/dense_0/dot_general"),
                _instruction("multiply_add_fusion.2", "fusion", called=(2,)),
                _instruction("copy", "copy"),
            ],
        ),
        (2, [_instruction("p0", "parameter"), *adam, _instruction("c", "constant", "cvae/random")]),
    )
    helper = _hlo_proto((1, [_instruction("dot", "dot")]), (3, []))
    other = _hlo_proto(
        (1, [_instruction("multiply_add_fusion.2", "fusion", called=(4,))]), (4, [_instruction("a", "add")])
    )
    xspace = _xspace(step, helper)
    assert len(hlo.hlo_protos(xspace)) == 2
    # the plain instructions inside the fusion, parameters and copies have no verdict of their own
    assert hlo.categories_from_xspace(xspace) == {"dot": GEMM, "multiply_add_fusion.2": OPTIMIZER}
    # one name, two modules, two verdicts: neither is trusted, the name decides
    assert "multiply_add_fusion.2" not in hlo.categories_from_xspace(_xspace(step, other))


def test_known_categories_override_names() -> None:
    ops, _ = from_spans(
        "xla",
        [("multiply_add_fusion.2", 0.0, 1.0), ("ynn_fusion.8", 1.0, 2.0)],
        [],
        calls=1,
        known={"multiply_add_fusion.2": OPTIMIZER, "ynn_fusion.8": ELEMENTWISE},
    )
    assert {o.name: o.category for o in ops} == {"multiply_add_fusion.2": OPTIMIZER, "ynn_fusion.8": ELEMENTWISE}
    ops, _ = from_spans("xla", [("multiply_add_fusion.2", 0.0, 1.0)], [], calls=1)
    assert ops[0].category == ELEMENTWISE  # without the HLO, Adam's fusion is element-wise by its name
