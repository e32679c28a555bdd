"""What cvae-bench's tests and a plugin's share: backend parameters, worker pools, data and probe builders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache

import numpy as np
import pytest

from cvae_bench.backends import registry
from cvae_bench.conformance.checks import Probe, probe_weights
from cvae_bench.core.errors import DataError
from cvae_bench.models import DEFAULT_SPEC
from cvae_bench.runtime.worker import RemoteBackend, Worker

#: CI sets this so that a backend or data set that is missing fails the run instead of skipping.
REQUIRE_ALL = os.environ.get("CVAE_BENCH_REQUIRE_ALL") == "1"

MnistArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def backend_params(names: Sequence[str] | None = None) -> list[pytest.param]:  # type: ignore[valid-type]
    """One pytest param per registered backend (or per name in `names`); unavailable ones skip with their reason.

    Raises:
        UnknownBackendError: a name in `names` is not registered (the message lists the known ones).
    """
    infos = registry.all_backends() if names is None else {n: registry.get(n) for n in names}
    params = []
    for name, info in infos.items():
        marks = []
        if not info.available:
            if REQUIRE_ALL and (info.origin == "builtin" or names is not None):
                marks.append(pytest.mark.xfail(reason=info.unavailable_reason(), run=False, strict=True))
            else:
                marks.append(pytest.mark.skip(reason=info.unavailable_reason()))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def available_names(names: Sequence[str] | None = None) -> list[str]:
    """Names of the backends (of `names`, or all registered) that can run here."""
    infos = registry.all_backends() if names is None else {n: registry.get(n) for n in names}
    return [n for n, info in infos.items() if info.available]


def require_or_skip(reason: str) -> None:
    """Skip with `reason`, or fail when CI demands everything."""
    if REQUIRE_ALL:
        pytest.fail(reason)
    pytest.skip(reason)


def biased_weights(seed: int = 7) -> dict[str, np.ndarray]:
    """Reference weights with non-zero biases, so that bias handling is exercised."""
    return probe_weights(seed)


@cache
def _load_mnist() -> MnistArrays | str:
    from cvae_bench.data.loading import as_float, load_dataset

    try:
        return as_float(load_dataset("mnist", download=False))
    except DataError as exc:
        return f"real MNIST not available locally ({exc}); run `cvae-bench data fetch`"


def load_mnist() -> MnistArrays:
    """Real MNIST as float arrays (x_train, y_train one-hot, x_test, y_test one-hot), loaded once; skips
    (fails under CVAE_BENCH_REQUIRE_ALL) where it is not cached."""
    data = _load_mnist()
    if isinstance(data, str):
        require_or_skip(data)
        raise AssertionError("unreachable")
    return data


@cache
def _probe() -> Probe:
    x, y, _, _ = load_mnist()
    return Probe(x, y, DEFAULT_SPEC)


def mnist_probe() -> Probe:
    """The conformance checks' probe on real MNIST, built once per process (its reference runs are cached)."""
    return _probe()


class WorkerPool:
    """One live worker per (backend name, seed), created on first use and closed by `close`."""

    def __init__(self) -> None:
        self._backends: dict[tuple[str, int], RemoteBackend] = {}
        self._initial: dict[tuple[str, int], dict[str, np.ndarray]] = {}

    def get(self, name: str, seed: int = 0) -> RemoteBackend:
        """The backend `name` built with `seed`, in a worker of its own."""
        if (name, seed) not in self._backends:
            worker = Worker(registry.get(name), idle_timeout=600)
            try:
                backend = RemoteBackend(worker, DEFAULT_SPEC, seed)
                self._initial[name, seed] = backend.get_weights()
            except BaseException:
                worker.close()
                raise
            self._backends[name, seed] = backend
        return self._backends[name, seed]

    def initial_weights(self, name: str, seed: int = 0) -> dict[str, np.ndarray]:
        """The weights the backend was built with (read before any test changed them)."""
        self.get(name, seed)
        return self._initial[name, seed]

    def close(self) -> None:
        """Close every worker."""
        for backend in self._backends.values():
            backend.worker.close()
        self._backends.clear()
