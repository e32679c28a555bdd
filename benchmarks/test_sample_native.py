"""sample-native: each framework's own decoder (NumPy in and out) at batch 1, 64, 1024, 8192."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Settings, job_kwargs, record

from cvae_bench.bench.jobs import sample_native_job
from cvae_bench.bench.report import native_entries
from cvae_bench.bench.runner import backend_record
from cvae_bench.runtime.worker import RemoteBackend


@pytest.mark.benchmark(group="sample-native")
def test_sample_native(
    benchmark: Any,
    backend: RemoteBackend,
    batch: int,
    roofline: dict[str, Any],
    bench_settings: Settings,
) -> None:
    timings = backend.run_job(sample_native_job, batch_sizes=[batch], **job_kwargs(benchmark, bench_settings))
    rec = {**backend_record(backend), "sample_native": timings}
    (entry,) = native_entries(rec, roofline, bench_settings.threads)
    record(benchmark, timings[batch], entry["extra_info"], bench_settings)
