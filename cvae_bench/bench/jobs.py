"""Benchmark measurements that run inside a worker process, next to what they time.

Every figure is timed in the process that does the work (`harness.timing.time_rounds`, `perf_counter`
around whole rounds), never across the worker pipe: a job returns the rounds' durations and the parent
(the `cvae-bench bench` command or pytest-benchmark) only computes statistics from them.

- `train_step_job`: one optimiser step at the spec's batch (64) on real MNIST batches already in the
  backend's memory/device (`load_train_data`, `set_order`, then `train_step(i)`); `synchronize()` ends
  every round. The backend's build, the data upload, the first step (compilation) and the warm-up are
  timed apart and never enter the per-step figures.
- `sample_native_job`: the backend's own decoder (`Backend.decode`, NumPy in and out, so host/device
  copies are included) at each batch size; the first call at each size is timed apart.
- `export_decoder_job` + `sample_onnxruntime_job`: the exported decoder (fp32, and fp16/int8 variants) in
  onnxruntime, in a worker with no framework loaded, with IO binding to pre-allocated host buffers.
"""

from __future__ import annotations

import functools
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from cvae_bench.bench.timing import per_call, time_rounds

#: Sampling batch sizes of the `sample-*` groups.
DEFAULT_BATCH_SIZES = (1, 64, 1024, 8192)
#: onnxruntime precisions benchmarked.
ORT_PRECISIONS = ("fp32", "fp16", "int8")
#: Which onnxruntime providers map to which device kind.
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def _load_train(dataset: str, data_path: str | None, train_subset: int | None) -> tuple[np.ndarray, np.ndarray]:
    from cvae_bench.training.jobs import load_arrays

    x, y, _, _ = load_arrays(dataset, data_path, train_subset, 0)
    return x, y


def train_step_job(
    backend: Any,
    emit: Any,
    *,
    rounds: int = 15,
    min_time: float = 0.1,
    warmup: int = 20,
    dataset: str = "mnist",
    data_path: str | None = None,
    train_subset: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Time `train_step` at the spec's batch size; see the module docstring.

    Steps walk through one shuffled epoch of full batches (wrapping round to its start, never calling
    `set_order` inside the timed loop, whose one gather per epoch is not a step's cost).

    Returns:
        {"round_s", "iterations" (steps per round), "warmup", "warmup_s", "first_step_s", "data_load_s",
        "loss" (mean training loss over all steps, a sanity check), "steps", "batch"}.
    """
    batch = backend.spec.batch_size
    x, y = _load_train(dataset, data_path, train_subset)
    t0 = time.perf_counter()
    backend.load_train_data(x, y)
    backend.synchronize()
    data_load_s = time.perf_counter() - t0
    backend.set_order(np.random.default_rng(seed).permutation(len(x)))
    backend.synchronize()
    full_batches = len(x) // batch
    if full_batches < 1:
        raise ValueError(f"train-step needs at least {batch} training images, got {len(x)}")
    state = {"i": 0}

    def step() -> None:
        backend.train_step(state["i"] % full_batches)
        state["i"] += 1

    t0 = time.perf_counter()
    step()
    backend.synchronize()
    first_step_s = time.perf_counter() - t0
    emit({"type": "bench", "what": "first step", "seconds": first_step_s})
    timing = time_rounds(step, rounds=rounds, min_time=min_time, warmup=warmup, sync=backend.synchronize)
    loss = backend.take_loss()  # after the clock has stopped: the one host read of the loss
    if not np.isfinite(loss):
        raise RuntimeError(f"training loss is {loss} after {state['i']} benchmark steps")
    return {
        **timing,
        "first_step_s": first_step_s,
        "data_load_s": data_load_s,
        "loss": loss,
        "steps": state["i"],
        "batch": batch,
    }


def _decoder_inputs(spec: Any, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, spec.latent_dim)).astype(np.float32)
    y = np.eye(spec.num_classes, dtype=np.float32)[rng.integers(0, spec.num_classes, batch)]
    return z, y


def sample_native_job(
    backend: Any,
    emit: Any,
    *,
    batch_sizes: list[int],
    rounds: int = 15,
    min_time: float = 0.1,
    warmup: int = 3,
) -> dict[int, Any]:
    """Time `backend.decode` at each batch size; returns {batch: timing + "first_call_s"}."""
    out: dict[int, Any] = {}
    for b in batch_sizes:
        z, y = _decoder_inputs(backend.spec, b)
        t0 = time.perf_counter()
        backend.decode(z, y)
        first = time.perf_counter() - t0
        call = functools.partial(backend.decode, z, y)
        timing = time_rounds(call, rounds=rounds, min_time=min_time, warmup=warmup)
        out[b] = {**timing, "first_call_s": first}
        emit({"type": "bench", "what": f"decode batch {b}", "median_s": _median_call(timing)})
    return out


def _median_call(timing: dict[str, Any]) -> float:
    return statistics.median(per_call(timing["round_s"], timing["iterations"]))


# -- ONNX -------------------------------------------------------------------------------------------------
def _nonzero_biases(backend: Any, seed: int) -> None:
    """Small random biases: an exporter folds away the zero biases of a fresh model, a trained one has none."""
    weights = backend.get_weights()
    rng = np.random.default_rng(seed)
    for name, value in weights.items():
        if name.endswith(".bias"):
            weights[name] = rng.normal(0.0, 0.05, value.shape).astype(np.float32)
    backend.set_weights(weights)


def export_decoder_job(
    backend: Any,
    emit: Any,
    *,
    path: str,
    weights: dict[str, Any] | None = None,
    dataset: str = "mnist",
    data_path: str | None = None,
) -> dict[str, str]:
    """Worker job: the backend's decoder exported, normalised to the one interface and verified against
    the framework by the harness's exporter (`onnx_export.export_decoder`); returns the file's metadata.

    Uses `weights` when given, else the backend's initial weights with non-zero biases.
    """
    from cvae_bench.onnx.export import export_decoder

    if weights is not None:
        backend.set_weights(weights)
    else:
        _nonzero_biases(backend, seed=1)
    meta = export_decoder(backend, path, dataset=dataset, data_path=data_path)
    return {str(k): str(v) for k, v in meta.items()}


def make_variants(fp32_path: str, out_dir: str, precisions: list[str]) -> dict[str, str]:
    """The precisions of an fp32 ONNX decoder, written next to it; returns {precision: path}.

    The variants are the exporter's (`onnx_variants.make_variant`): fp16 weights and arithmetic with
    float32 inputs and output; int8 per-channel weights with activations quantised per call (onnxruntime
    dynamic quantisation), the tiny first layer left in float32.
    """
    import onnx

    from cvae_bench.onnx.variants import make_variant

    model = onnx.load(fp32_path)
    out: dict[str, str] = {}
    for p in precisions:
        if p not in ORT_PRECISIONS:
            raise ValueError(f"unknown precision {p!r}; choose from {', '.join(ORT_PRECISIONS)}")
        if p == "fp32":
            out[p] = fp32_path
            continue
        path = str(Path(out_dir) / f"decoder.{p}.onnx")
        onnx.save(make_variant(model, p), path)
        out[p] = path
    return out


def ort_session(path: str, provider: str, threads: int) -> Any:
    """An onnxruntime session tuned for this model: all graph optimisations, `threads` intra-op threads,
    one inter-op thread and sequential execution (the graph is a chain, there is nothing to overlap)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=[provider])


def sample_onnxruntime_job(
    backend: Any,
    emit: Any,
    *,
    models: dict[str, str],
    providers: list[str],
    batch_sizes: list[int],
    threads: int,
    rounds: int = 15,
    min_time: float = 0.1,
    warmup: int = 10,
) -> dict[str, Any]:
    """Worker job (no backend needed): time each ONNX model on each provider at each batch size.

    Inputs are bound once per batch size (`io_binding` with host arrays, output into a pre-allocated host
    array), so a call is `run_with_iobinding` alone: no per-call allocation or name lookup, which matters
    at batch 1 where a call lasts tens of microseconds.

    Returns:
        {"results": {provider: {precision: {"session_s", "batches": {batch: timing}} | {"error": reason}}},
        "session_options": {...}, "onnxruntime": version}.
    """
    import onnxruntime as ort

    from cvae_bench.models.spec import DEFAULT_SPEC

    spec = backend.spec if backend is not None else DEFAULT_SPEC
    results: dict[str, Any] = {}
    for provider in providers:
        results[provider] = {}
        for precision, path in models.items():
            t0 = time.perf_counter()
            try:
                sess = ort_session(path, provider, threads)
            except Exception as exc:  # a provider that lacks a kernel for this precision: report, go on
                results[provider][precision] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
                continue
            entry: dict[str, Any] = {"session_s": time.perf_counter() - t0, "batches": {}}
            device = "cuda" if provider == ORT_PROVIDERS["cuda"] else "cpu"
            for b in batch_sizes:
                z, y = _decoder_inputs(spec, b)
                out = np.empty((b, *spec.image_shape), np.float32)
                io = sess.io_binding()
                io.bind_cpu_input("z", z)
                io.bind_cpu_input("label", y)
                io.bind_output("x_mean", "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
                t0 = time.perf_counter()
                sess.run_with_iobinding(io)
                first = time.perf_counter() - t0
                sync = io.synchronize_outputs if device == "cuda" else (lambda: None)
                timing = time_rounds(
                    functools.partial(sess.run_with_iobinding, io),
                    rounds=rounds,
                    min_time=min_time,
                    warmup=warmup,
                    sync=sync,
                )
                entry["batches"][b] = {**timing, "first_call_s": first}
                what = f"ort {provider} {precision} batch {b}"
                emit({"type": "bench", "what": what, "median_s": _median_call(timing)})
            results[provider][precision] = entry
    return {
        "results": results,
        "onnxruntime": ort.__version__,
        "session_options": {
            "intra_op_threads": threads,
            "inter_op_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "io_binding": True,
        },
    }
