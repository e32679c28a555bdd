"""The anatomy: op names to categories, recorded profiler output read back, and anatomies that add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
        ("torch", "## Call CompiledFxGraph abc ##", OVERHEAD),
        ("xla", "dot", GEMM),
        ("xla", "ynn_fusion.1", GEMM),
        ("xla", "multiply_add_fusion", ELEMENTWISE),
        ("xla", "rng-bit-generator", DATA),
        ("xla", "while", OVERHEAD),
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
