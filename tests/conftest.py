"""Shared fixtures: real MNIST when present, worker pools (the builders live in cvae_bench.testing.support)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from cvae_bench.testing.support import WorkerPool, load_mnist


@pytest.fixture(scope="session")
def mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Real MNIST as float arrays (x_train, y_train one-hot, x_test, y_test one-hot)."""
    return load_mnist()


@pytest.fixture(scope="module")
def workers() -> Iterator[WorkerPool]:
    pool = WorkerPool()
    yield pool
    pool.close()
