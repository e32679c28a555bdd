"""The one table that maps profiler op names to the anatomy's categories, for every framework.

Each adapter (`torch.py`, `jax.py`, `tensorflow.py`, `onnxruntime.py`) reports the ops its framework's
profiler saw; `categorize(framework, name)` puts each in one category by the first pattern of `PATTERNS`
that matches (patterns of the framework first, then the shared ones). The first four categories are the
byte-aware roofline's, so each has a floor; `overhead` (dispatch, autograd, the optimiser's Python, the
runtime between kernels) and `idle` (waiting, synchronisation) have none.
"""

from __future__ import annotations

import re
from functools import cache

from cvae_bench.bench.roofline import DATA, ELEMENTWISE, GEMM, OPTIMIZER

OVERHEAD = "overhead"
IDLE = "idle"
#: Every category, in table order.
CATEGORIES = (GEMM, ELEMENTWISE, OPTIMIZER, DATA, OVERHEAD, IDLE)
#: How each category reads in a table.
LABELS = {
    GEMM: "GEMMs",
    ELEMENTWISE: "element-wise/loss",
    OPTIMIZER: "optimizer",
    DATA: "data/batching",
    OVERHEAD: "framework overhead",
    IDLE: "idle/sync",
}
#: (framework or "*", regular expression matched against the op name from its start, category), first match wins.
PATTERNS: tuple[tuple[str, str, str], ...] = (
    # torch (torch.profiler op names; torch and keras-torch)
    ("torch", r"aten::(mm|addmm|bmm|baddbmm|_addmm_activation)$", GEMM),
    (
        "torch",
        r"(aten::_fused_adamw?_|aten::_foreach_|Optimizer\.|aten::addcdiv_|aten::addcmul_|aten::lerp_)",
        OPTIMIZER,
    ),
    ("torch", r"aten::(randn|normal_|random_|uniform_|index_select)$", DATA),
    (
        "torch",
        r"(autograd::|torch::autograd::|aten::(empty|empty_like|empty_strided|view|t|transpose|reshape|as_strided"
        r"|expand|detach|detach_|_unsafe_view|unsqueeze|squeeze|select|slice|alias|permute|contiguous|result_type"
        r"|_to_copy|to|lift_fresh|item|_local_scalar_dense|resize_|ones_like|zeros_like|numpy_T|split|chunk"
        r"|_reshape_alias|unbind|narrow|flatten|set_|is_nonzero|linear|matmul)$"
        r"|CompiledFunction|Torch-Compiled Region|TorchDynamo|ProfilerStep"
        r"|## Guard|Lazy compilation)",
        OVERHEAD,
    ),
    # On the CPU the profiler does not see inductor's fused C++ kernels: they run inside the compiled graph's
    # call, whose self time is theirs (element-wise, loss and, in a compiled step, Adam's arithmetic together).
    ("torch", r"(cpp_fused_|triton_|aten::|## Call CompiledFxGraph)", ELEMENTWISE),
    # XLA (jax, and TensorFlow's jit mode): HLO instruction names of the thunks, for the thunks whose HLO
    # was not read (hlo.py files those by what they compute). TF's XLA names a dot after its TF op
    # ("MatMul.24", "MatMul_1.18"); XLA:CPU wraps a lone op in a fusion named "wrapped_<opcode>".
    ("xla", r"(dot|convolution|ynn_fusion|.*_dot_fusion|.*gemm|.*matmul|(Batch)?MatMul(V\d)?(_\d+)?(\.\d+)?$)", GEMM),
    (
        "xla",
        r"(wrapped_)?(rng|.*random|.*threefry|.*philox|dynamic-slice|dynamic_slice|gather|.*dynamic_slice_fusion)",
        DATA,
    ),
    ("xla", r"(while|conditional|call|copy-start|copy-done|after-all|partition-id|tuple|get-tuple-element)", OVERHEAD),
    ("xla", r".", ELEMENTWISE),
    # TensorFlow ops (graph and eager modes: the op type after the colon of "name:Type")
    ("tensorflow", r"(MatMul|BatchMatMul\w*|_MklMatMul|_FusedMatMul|_MklFusedMatMul|_MklNativeFusedMatMul)$", GEMM),
    (
        "tensorflow",
        r"(ResourceApplyAdam|ApplyAdam|AssignSubVariableOp|AssignAddVariableOp|AssignVariableOp)$",
        OPTIMIZER,
    ),
    ("tensorflow", r"(StatelessRandom\w*|RandomStandardNormal|StridedSlice|GatherV2|Slice)$", DATA),
    (
        "tensorflow",
        r"(ReadVariableOp|Identity\w*|NoOp|_Recv|_Send|Const|Shape|Reshape|Cast|Pack|Unpack|_Arg|_Retval"
        r"|VarHandleOp|__inference\w*|StatefulPartitionedCall|PartitionedCall)$",
        OVERHEAD,
    ),
    ("tensorflow", r".", ELEMENTWISE),
    # onnxruntime (the op type of each node)
    ("onnxruntime", r"(Gemm|MatMul|FusedGemm|FusedMatMul|MatMulInteger\w*|QGemm|DynamicQuantizeMatMul)$", GEMM),
    ("onnxruntime", r"(DynamicQuantizeLinear|QuantizeLinear|DequantizeLinear|Cast)$", ELEMENTWISE),
    ("onnxruntime", r".", ELEMENTWISE),
    # anything else: runtime
    ("*", r"(.*[Ww]ait|.*[Ss]ynchroni[sz]e|.*Await|cudaDeviceSynchronize)", IDLE),
    ("*", r".", OVERHEAD),
)


@cache
def _compiled(framework: str) -> list[tuple[re.Pattern[str], str]]:
    own = [(re.compile(p), c) for f, p, c in PATTERNS if f == framework]
    return own + [(re.compile(p), c) for f, p, c in PATTERNS if f == "*"]


def categorize(framework: str, name: str) -> str:
    """The category of op `name` as `framework`'s profiler names it ("torch", "xla", "tensorflow", "onnxruntime").

    Raises:
        ValueError: an unknown framework.
    """
    if framework not in {f for f, _, _ in PATTERNS} - {"*"}:
        known = ", ".join(sorted({f for f, _, _ in PATTERNS} - {"*"}))
        raise ValueError(f"unknown profiler framework {framework!r}; known: {known}")
    for pattern, category in _compiled(framework):
        if pattern.match(name):
            return category
    return OVERHEAD
