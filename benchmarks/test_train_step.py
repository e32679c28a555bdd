"""train-step: one Adam step at batch 64 on real MNIST already on the device, per backend and mode."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Settings, job_kwargs, record

from cvae_bench.bench.jobs import train_step_job
from cvae_bench.bench.report import train_entry
from cvae_bench.bench.runner import backend_record
from cvae_bench.runtime.worker import RemoteBackend


@pytest.mark.benchmark(group="train-step")
def test_train_step(
    benchmark: Any,
    backend: RemoteBackend,
    roofline: dict[str, Any],
    mnist_path: str,
    bench_settings: Settings,
) -> None:
    timing = backend.run_job(
        train_step_job,
        warmup=bench_settings.warmup,
        data_path=mnist_path,
        **job_kwargs(benchmark, bench_settings),
    )
    rec = {**backend_record(backend), "train_step": timing}
    entry = train_entry(rec, roofline, bench_settings.threads)
    record(benchmark, timing, entry["extra_info"], bench_settings)
