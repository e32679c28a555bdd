"""What each loaded framework pre-allocates, read from its settings (never changed): for the fairness audit.

A framework that reserves memory up front, or keeps what it freed in an arena, shows a larger resident set
(or device footprint) than its model needs; the audit says so beside the memory figures, so that a peak is
read as "this framework's allocator" and not "this backend's model". Only frameworks already imported are
asked, as in `runtime.threads.process_audit`. The defaults quoted are each project's documented ones:

- jax/XLA: on a GPU, `XLA_PYTHON_CLIENT_PREALLOCATE` (default true) reserves `XLA_PYTHON_CLIENT_MEM_FRACTION`
  (default 0.75) of the device at the first operation; on the CPU, XLA allocates on demand.
- tensorflow: on a GPU, without memory growth (`set_memory_growth`, `TF_FORCE_GPU_ALLOW_GROWTH`) its BFC
  allocator maps nearly all of the device at start; on the CPU it allocates on demand and caches.
- torch: the CUDA caching allocator keeps freed blocks reserved (`PYTORCH_CUDA_ALLOC_CONF`); on the CPU it
  uses the C allocator with no arena of its own.
- onnxruntime: a CPU memory arena (`enable_cpu_mem_arena`, default on) grows and keeps its chunks, and the
  memory-pattern planner (`enable_mem_pattern`, default on) pre-plans one buffer per input shape.
- glibc malloc, under all of them: `MALLOC_ARENA_MAX` and friends when set (freed memory often stays resident).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

#: Environment variables that change a framework's or the C library's allocator.
ALLOCATOR_VARS = (
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "XLA_PYTHON_CLIENT_ALLOCATOR",
    "TF_FORCE_GPU_ALLOW_GROWTH",
    "TF_GPU_ALLOCATOR",
    "PYTORCH_CUDA_ALLOC_CONF",
    "MALLOC_ARENA_MAX",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
)


def _truthy(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def allocator_audit() -> dict[str, str]:
    """One line per loaded framework: what it pre-allocates or keeps, under the settings in force."""
    env = os.environ
    out: dict[str, str] = {}
    jax = sys.modules.get("jax")
    if jax is not None:
        platform = "cpu"
        with contextlib.suppress(Exception):
            platform = jax.devices()[0].platform
        if platform == "cpu":
            out["jax"] = "CPU: XLA allocates on demand (no pre-allocation)"
        elif _truthy(env.get("XLA_PYTHON_CLIENT_PREALLOCATE"), True):
            fraction = env.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.75")
            out["jax"] = f"{platform}: XLA pre-allocates {fraction} of device memory at the first operation"
        else:
            out["jax"] = f"{platform}: XLA pre-allocation off (grows on demand)"
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        gpus: list[Any] = []
        with contextlib.suppress(Exception):
            gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            out["tensorflow"] = "CPU: BFC allocator on demand, caches what it freed"
        else:
            growth = _truthy(env.get("TF_FORCE_GPU_ALLOW_GROWTH"), False)
            with contextlib.suppress(Exception):
                growth = growth or all(tf.config.experimental.get_memory_growth(g) for g in gpus)
            out["tensorflow"] = (
                "GPU: memory growth on (allocates on demand)"
                if growth
                else "GPU: maps nearly all device memory at start (no memory growth)"
            )
    torch = sys.modules.get("torch")
    if torch is not None:
        cuda = False
        with contextlib.suppress(Exception):
            cuda = bool(torch.cuda.is_available())
        conf = env.get("PYTORCH_CUDA_ALLOC_CONF")
        out["torch"] = (
            "CUDA caching allocator keeps freed blocks reserved" + (f" ({conf})" if conf else "")
            if cuda
            else "CPU: the C allocator, no arena of its own"
        )
    if "onnxruntime" in sys.modules:
        out["onnxruntime"] = _ort_line()
    malloc = {k: env[k] for k in ALLOCATOR_VARS if k.startswith("MALLOC_") and k in env}
    if malloc:
        out["malloc"] = ", ".join(f"{k}={v}" for k, v in sorted(malloc.items()))
    return out


def _ort_line() -> str:
    """onnxruntime's arena and memory pattern: its defaults, which `onnx.sessions.session_options` keeps (a test
    holds the two together; this layer may not import that one)."""
    arena = pattern = True
    with contextlib.suppress(Exception):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        arena, pattern = bool(options.enable_cpu_mem_arena), bool(options.enable_mem_pattern)
    return f"CPU arena {'on' if arena else 'off'} (keeps its chunks), memory pattern {'on' if pattern else 'off'}"


def memory_cell(audit: dict[str, Any]) -> str:
    """The fairness table's cell: what each framework of the process pre-allocates ('-': nothing recorded)."""
    lines = audit.get("allocators") or {}
    return "; ".join(f"{k}: {v}" for k, v in lines.items()) or "-"
