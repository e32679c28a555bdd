"""Equal, explicit thread counts for every framework, set before a worker imports it, and the audit that shows them.

How a thread count reaches each framework (all set by the parent in the worker's environment, so they
are in place before the framework's first import; `apply_process_threads` runs first thing in the worker):

- CPU affinity: when fewer threads than schedulable cores are asked for, the worker pins itself to that
  many cores. This is the one limit every runtime honours (XLA and TF size their pools from the
  affinity mask), and it keeps a framework from spinning threads on cores it was not given.
- torch: `OMP_NUM_THREADS` (its intra-op pool; `torch.get_num_threads()` reports it).
- TensorFlow: `TF_NUM_INTRAOP_THREADS` and `TF_NUM_INTEROP_THREADS`, read when its runtime starts.
- jax/XLA: the affinity mask; for one thread also `XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
  intra_op_parallelism_threads=1`, XLA's documented single-thread switch.
- NumPy's BLAS (the matmul ceiling): `OPENBLAS_NUM_THREADS`/`MKL_NUM_THREADS`.
- onnxruntime: `SessionOptions.intra_op_num_threads` (see `onnx.sessions.session_options`).

Nothing else. A thread count is set only when one is asked for (`--threads`); without it every framework runs
with its own defaults, as its users run it. In particular no OpenMP wait policy is set: `OMP_WAIT_POLICY=PASSIVE`
(once set here for every worker) is read by torch's OpenMP pool alone and made a plain torch loop 1.3–1.9×
slower on a 2-vCPU VM; that an idle worker's spinning threads cost the timed one nothing is the rounds
engine's business (it stops idle workers: `bench.rounds`), and `+env:OMP_WAIT_POLICY=PASSIVE` is a tuning knob
for whoever wants it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

# Declared in core (the option checks need it, below this wing); the name stays importable from here.
from cvae_bench.core.checks import available_cores as available_cores

#: The worker reads this to pin its CPU affinity before any framework is imported.
THREADS_ENV = "CVAE_BENCH_THREADS"

#: Environment variables that carry a thread count, reported by the audit.
THREAD_VARS = (
    THREADS_ENV,
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "XLA_FLAGS",
    "OMP_WAIT_POLICY",
    "KMP_BLOCKTIME",
)


def thread_env(threads: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a worker needs so that every framework in it uses `threads` threads.

    Args:
        threads: the thread count (≥ 1), the same for every framework.
        base: the environment it will be merged into (for `XLA_FLAGS`, which is extended, not replaced);
            defaults to this process's.

    Returns:
        Variables to add to the worker's environment.

    Raises:
        ValueError: `threads` < 1.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    n = str(threads)
    env = {
        THREADS_ENV: n,
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": n,
    }
    if threads == 1:
        xla = (base if base is not None else os.environ).get("XLA_FLAGS", "")
        extra = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["XLA_FLAGS"] = f"{xla} {extra}".strip() if extra not in xla else xla
    return env


def apply_process_threads() -> int | None:
    """Pin this process to the first `$CVAE_BENCH_THREADS` of its cores; call before importing frameworks.

    Returns:
        The thread count in force, or None when the variable is not set.
    """
    value = os.environ.get(THREADS_ENV)
    if not value:
        return None
    threads = int(value)
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if threads < len(cores):
            os.sched_setaffinity(0, cores[:threads])
    return threads


def threads_in_force() -> dict[str, Any]:
    """The thread counts this process really runs with, as result files record them.

    `requested` is `$CVAE_BENCH_THREADS` (None: each framework's default); `affinity_cores` the cores the
    process may run on; then each framework already imported, asked for its own pool sizes (asking would
    import the others). TensorFlow reports 0 for "the runtime's choice", which it takes from
    `TF_NUM_*_THREADS`; those are given instead then.
    """
    requested = os.environ.get(THREADS_ENV)
    out: dict[str, Any] = {
        "requested": int(requested) if requested else None,
        "affinity_cores": available_cores(),
    }
    if "torch" in sys.modules:
        import torch

        out["torch_intra_op"] = torch.get_num_threads()
        out["torch_inter_op"] = torch.get_num_interop_threads()
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        intra = tf.config.threading.get_intra_op_parallelism_threads()
        inter = tf.config.threading.get_inter_op_parallelism_threads()
        out["tensorflow_intra_op"] = intra or int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or None
        out["tensorflow_inter_op"] = inter or int(os.environ.get("TF_NUM_INTEROP_THREADS") or 0) or None
    if "jax" in sys.modules:
        single = "intra_op_parallelism_threads=1" in os.environ.get("XLA_FLAGS", "")
        out["xla_cpu_threads"] = 1 if single else out["affinity_cores"]
    return out


def process_audit() -> dict[str, Any]:
    """What this process's frameworks really use: threads, precision, devices.

    Only frameworks already imported are asked (asking would import them).
    """
    out: dict[str, Any] = {
        "affinity_cores": available_cores(),
        "env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
    }
    if "torch" in sys.modules:
        import torch

        out["torch"] = {
            "intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        }
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        out["tensorflow"] = {
            # 0 means "the runtime's choice", which TF takes from TF_NUM_*_THREADS when they are set.
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "tf32_execution": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
        }
    if "jax" in sys.modules:
        import jax

        out["jax"] = {
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "default_matmul_precision": str(getattr(jax.config, "jax_default_matmul_precision", None)),
            "platform": jax.devices()[0].platform,
            "device_count": jax.device_count(),
        }
    if "onnxruntime" in sys.modules:
        import onnxruntime

        out["onnxruntime"] = {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}
    from cvae_bench.runtime.allocators import allocator_audit

    out["allocators"] = allocator_audit()  # what each framework pre-allocates: read beside the memory figures
    return out


def audit_job(backend: Any, emit: Any) -> dict[str, Any]:
    """Worker job: `process_audit()` of the worker, after its backend is built."""
    return process_audit()
