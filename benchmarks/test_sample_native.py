"""sample-native: each framework's own decoder (NumPy in and out) at each sampling batch size."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Settings, identity, record

from cvae_bench.bench.groups.sample_native import SampleNative
from cvae_bench.bench.roofline import Roofline
from cvae_bench.runtime.worker import RemoteBackend

GROUP = SampleNative()


@pytest.mark.benchmark(group=GROUP.name)
def test_sample_native(
    benchmark: Any,
    backend: RemoteBackend,
    batch: int,
    roofline: Roofline,
    bench_settings: Settings,
) -> None:
    result = GROUP.measure(backend, bench_settings.options(benchmark, batch_sizes=(batch,)))
    (entry,) = GROUP.entries(identity(backend), result, roofline, bench_settings.threads)
    record(benchmark, result.batches[batch].timing, entry, bench_settings, host=backend)
