"""The worker protocol: results, events, foreign stdout, errors, death and hangs reported as such."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cvae_bench.backends import registry
from cvae_bench.errors import BackendUnavailableError, DataError, WorkerError
from cvae_bench.models import DEFAULT_SPEC
from cvae_bench.runtime.worker import RemoteBackend, Worker
from tests.worker_jobs import chatty, die, hang, raise_other, raise_ours

ROOT = str(Path(__file__).resolve().parent.parent)
ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}

pytestmark = pytest.mark.skipif(not registry.get("torch").available, reason="torch is not installed")


@pytest.fixture
def remote() -> Iterator[RemoteBackend]:
    worker = Worker(registry.get("torch"), idle_timeout=60, extra_env=ENV)
    try:
        yield RemoteBackend(worker, DEFAULT_SPEC, seed=0)
    finally:
        worker.close()


def test_calls_return_numpy_results(remote: RemoteBackend) -> None:
    z = np.zeros((3, 2), np.float32)
    y = np.eye(10, dtype=np.float32)[:3]
    out = remote.decode(z, y)
    assert out.shape == (3, 28, 28) and out.dtype == np.float32
    assert remote.info["backend"] == "torch" and remote.info["build_s"] > 0


def test_events_stream_and_stdout_noise_is_harmless(remote: RemoteBackend) -> None:
    seen: list[int] = []
    assert remote.run_job(chatty, lambda e: seen.append(e["i"]), n=5) == 5
    assert seen == [0, 1, 2, 3, 4]
    assert "noise 4" in remote.worker.stderr_path.read_text()


def test_our_errors_keep_their_type(remote: RemoteBackend) -> None:
    with pytest.raises(DataError, match="the data went missing"):
        remote.run_job(raise_ours)
    # the worker survives an error and keeps serving
    assert remote.get_weights()["decoder.dense_2.bias"].shape == (784,)


def test_foreign_errors_are_named(remote: RemoteBackend) -> None:
    with pytest.raises(
        WorkerError, match=r"backend 'torch' failed in tests.worker_jobs.raise_other: ValueError: bad value"
    ):
        remote.run_job(raise_other)


def test_a_dead_worker_is_reported_with_its_stderr(remote: RemoteBackend) -> None:
    with pytest.raises(WorkerError, match=r"worker for backend 'torch' died \(exit code -9\).*about to be killed"):
        remote.run_job(die)
    with pytest.raises(WorkerError, match="is not running"):
        remote.get_weights()


def test_a_hung_worker_is_killed_and_reported() -> None:
    with Worker(registry.get("torch"), idle_timeout=2, extra_env=ENV) as worker:
        remote = RemoteBackend(worker, DEFAULT_SPEC, seed=0)
        with pytest.raises(WorkerError, match=r"hung: no answer for 2 s, killed"):
            remote.run_job(hang, seconds=60)


def test_bad_device_is_a_clear_error() -> None:
    with Worker(registry.get("torch"), extra_env=ENV) as worker, pytest.raises(BackendUnavailableError):
        RemoteBackend(worker, DEFAULT_SPEC, seed=0, device="cuda")


def test_bad_mode_is_a_clear_error() -> None:
    with (
        Worker(registry.get("torch"), extra_env=ENV) as worker,
        pytest.raises(BackendUnavailableError, match="no mode 'turbo'"),
    ):
        RemoteBackend(worker, DEFAULT_SPEC, seed=0, mode="turbo")
