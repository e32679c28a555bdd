"""train-step: one Adam step at batch 64 on real MNIST already on the device, per backend and mode."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Settings, identity, record

from cvae_bench.bench.groups.train_step import TrainStep
from cvae_bench.bench.roofline import Roofline
from cvae_bench.runtime.worker import RemoteBackend

GROUP = TrainStep()


@pytest.mark.benchmark(group=GROUP.name)
def test_train_step(
    benchmark: Any,
    backend: RemoteBackend,
    roofline: Roofline,
    mnist_path: str,
    bench_settings: Settings,
) -> None:
    result = GROUP.measure(backend, bench_settings.options(benchmark, data_path=mnist_path))
    (entry,) = GROUP.entries(identity(backend), result, roofline, bench_settings.threads)
    record(benchmark, result.timing, entry, bench_settings, host=backend)
