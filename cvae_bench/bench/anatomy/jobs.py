"""The anatomy's worker jobs: next to a backend (its framework's profiler), and in a bare onnxruntime worker."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cvae_bench.bench.anatomy.records import Anatomy, Profiled, build_anatomy
from cvae_bench.bench.roofline import DECODE, TRAIN_STEP
from cvae_bench.bench.timing import time_rounds
from cvae_bench.core.records import Record

#: Which adapter profiles which backend (a backend not listed is reported as not profiled).
ADAPTERS = {"torch": "torch", "keras-torch": "torch", "keras-jax": "jax", "keras-tensorflow": "tensorflow"}
MEASURE_ROUNDS = 9
#: Seconds of calls profiled per anatomy, at least (small calls are repeated up to this).
PROFILE_SECONDS = 0.3


@dataclass(frozen=True)
class AnatomyResult(Record):
    """Every anatomy one worker measured, and why any was not (by workload)."""

    anatomies: list[Anatomy] = field(default_factory=list)
    unsupported: dict[str, str] = field(default_factory=dict)


def _profile(adapter: str, call: Callable[[], None], calls: int, sync: Callable[[], None]) -> Profiled:
    with tempfile.TemporaryDirectory(prefix="cvae-bench-anatomy-") as workdir:
        if adapter == "torch":
            from cvae_bench.bench.anatomy import torch as torch_adapter

            return torch_adapter.profile(call, calls, sync, workdir)
        if adapter == "jax":
            from cvae_bench.bench.anatomy import jax as jax_adapter

            return jax_adapter.profile(call, calls, sync, workdir)
        from cvae_bench.bench.anatomy import tensorflow as tf_adapter

        return tf_adapter.profile(call, calls, sync, workdir)


def _noop() -> None:
    pass


def _measure_and_profile(
    workload: str,
    batch: int,
    call: Callable[[], None],
    profile: Callable[[int], Profiled],
    *,
    calls: int,
    warmup: int,
    sync: Callable[[], None] = _noop,
) -> Anatomy:
    """Time `call` unprofiled, then profile enough calls to fill PROFILE_SECONDS, and build its anatomy."""
    for _ in range(warmup):
        call()
    sync()
    # Nine rounds: the fewest that give the median a 95 % interval (`core.stats`), so the figure says how sure it is.
    timing = time_rounds(call, rounds=MEASURE_ROUNDS, min_time=0.05, warmup=2, sync=sync)
    measured = timing.median_call()
    n = max(calls, min(5000, int(PROFILE_SECONDS / max(measured, 1e-9))))
    p = profile(n)
    return build_anatomy(
        workload=workload,
        batch=batch,
        framework=p.framework,
        profiler=p.profiler,
        calls=n,
        measured_s=measured,
        profiled_s=p.wall_s,
        ops=p.ops,
        extra=p.extra,
        note=p.note,
        timing=timing,
    )


def _one(
    adapter: str, workload: str, batch: int, call: Callable[[], None], sync: Callable[[], None], calls: int
) -> Anatomy:
    return _measure_and_profile(
        workload, batch, call, lambda n: _profile(adapter, call, n, sync), calls=calls, warmup=3, sync=sync
    )


def anatomy_job(
    backend: Any,
    emit: Any,
    *,
    calls: int = 20,
    decode_batches: tuple[int, ...] = (1, 1024),
    dataset: str = "mnist",
    data_path: str | None = None,
    train_subset: int | None = None,
) -> AnatomyResult:
    """Worker job, next to the backend: the anatomy of its training step and of its decoder at each batch."""
    from cvae_bench.bench.groups.base import decoder_inputs
    from cvae_bench.data.loading import load_arrays

    adapter = ADAPTERS.get(backend.name)
    if adapter is None:
        why = f"no profiler adapter for backend {backend.name!r} (adapters: {', '.join(ADAPTERS)})"
        return AnatomyResult(unsupported={TRAIN_STEP: why, DECODE: why})
    out: list[Anatomy] = []
    batch = backend.spec.batch_size
    x, y, _, _ = load_arrays(dataset, data_path, train_subset, 0, model=backend.spec)
    backend.load_train_data(x, y)
    backend.set_order(np.random.default_rng(0).permutation(len(x)))
    backend.synchronize()
    full_batches = len(x) // batch
    state = {"i": 0}

    def step() -> None:
        backend.train_step(state["i"] % full_batches)
        state["i"] += 1

    out.append(_one(adapter, TRAIN_STEP, batch, step, backend.synchronize, calls))
    emit({"type": "bench", "what": "anatomy train step", "median_s": out[-1].measured_s})
    backend.take_loss()
    for b in decode_batches:
        z, labels = decoder_inputs(backend.spec, b)
        out.append(_one(adapter, DECODE, b, functools.partial(backend.decode, z, labels), backend.synchronize, calls))
        emit({"type": "bench", "what": f"anatomy decode batch {b}", "median_s": out[-1].measured_s})
    return AnatomyResult(anatomies=out)


def ort_anatomy_job(
    backend: Any,
    emit: Any,
    *,
    path: str,
    threads: int,
    calls: int = 20,
    decode_batches: tuple[int, ...] = (1, 1024),
) -> AnatomyResult:
    """Worker job (no backend): the anatomy of the fp32 decoder in onnxruntime (CPU, IO binding) at each batch."""
    from cvae_bench.bench.anatomy import onnxruntime as ort_adapter
    from cvae_bench.bench.groups.sample_onnxruntime import ORT_PROVIDERS, bound_call
    from cvae_bench.models.spec import DEFAULT_SPEC
    from cvae_bench.onnx.sessions import make_session

    spec = backend.spec if backend is not None else DEFAULT_SPEC
    out = []
    with tempfile.TemporaryDirectory(prefix="cvae-bench-anatomy-ort-") as workdir:
        for b in decode_batches:
            cpu = ORT_PROVIDERS["cpu"]
            # Two sessions, bound as the timed group binds them: "measured" from one without the profiler (a
            # session with profiling on records every run, which at batch 1 is several times the call), the
            # categories from one with it. The `_out` buffers stay alive while their calls run.
            run, _, _, _out = bound_call(make_session(path, [cpu], threads), spec, b, cpu)
            sess = ort_adapter.profiled_session(path, [cpu], threads, f"{workdir}/b{b}")
            profiled_run, _, _, _profiled_out = bound_call(sess, spec, b, cpu)
            profile = functools.partial(ort_adapter.profile, profiled_run, session=sess)  # n profiled runs
            out.append(_measure_and_profile(DECODE, b, run, profile, calls=calls, warmup=10))
            emit({"type": "bench", "what": f"anatomy onnxruntime batch {b}", "median_s": out[-1].measured_s})
    return AnatomyResult(anatomies=out)
