"""Shared fixtures: the registry's available backends, real MNIST when present, worker pools."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from cvae_bench.backends import registry
from cvae_bench.backends.registry import BackendInfo
from cvae_bench.errors import DataError
from cvae_bench.models import DEFAULT_SPEC
from cvae_bench.runtime.worker import RemoteBackend, Worker

#: CI sets this so that a backend or data set that is missing fails the run instead of skipping.
REQUIRE_ALL = os.environ.get("CVAE_BENCH_REQUIRE_ALL") == "1"


def backend_params() -> list[pytest.param]:  # type: ignore[valid-type]
    """One pytest param per registered backend; unavailable ones skip with their reason."""
    params = []
    for name, info in registry.all_backends().items():
        marks = []
        if not info.available:
            if REQUIRE_ALL and info.origin == "builtin":
                marks.append(pytest.mark.xfail(reason=info.unavailable_reason(), run=False, strict=True))
            else:
                marks.append(pytest.mark.skip(reason=info.unavailable_reason()))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def available_names() -> list[str]:
    """Names of the backends that can run here."""
    return [n for n, info in registry.all_backends().items() if info.available]


def require_or_skip(reason: str) -> None:
    """Skip with `reason`, or fail when CI demands everything."""
    if REQUIRE_ALL:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Real MNIST as float arrays (x_train, y_train one-hot, x_test, y_test one-hot)."""
    from cvae_bench.data.loading import as_float, load_dataset

    try:
        ds = load_dataset("mnist", download=False)
    except DataError as exc:
        require_or_skip(f"real MNIST not available locally ({exc}); run `cvae-bench data fetch`")
    return as_float(ds)


class WorkerPool:
    """One live worker per backend name, created on first use and closed at teardown."""

    def __init__(self) -> None:
        self._backends: dict[str, RemoteBackend] = {}

    def get(self, name: str, seed: int = 0) -> RemoteBackend:
        if name not in self._backends:
            info: BackendInfo = registry.get(name)
            self._backends[name] = RemoteBackend(Worker(info, idle_timeout=600), DEFAULT_SPEC, seed)
        return self._backends[name]

    def close(self) -> None:
        for backend in self._backends.values():
            backend.worker.close()


@pytest.fixture(scope="module")
def workers() -> Iterator[WorkerPool]:
    pool = WorkerPool()
    yield pool
    pool.close()
