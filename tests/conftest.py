"""Shared fixtures: real MNIST when present, worker pools, a reference decoder file (the builders live in
cvae_bench.testing: `support`, `onnx_models`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cvae_bench.testing.support import WorkerPool, load_mnist

# The suite runs in two processes on two cores, each starting framework workers: thread pools that spin while
# they wait (torch's OpenMP default) then fight over the cores and slow a test by many times. Tests check
# behaviour, never speed, so the suite's workers wait passively. cvae-bench itself sets no such thing
# (runtime/threads.py: every framework at its own defaults), and the tests of those defaults remove it
# (tests/test_pause.py, tests/test_bench.py's end-to-end bench).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# `run` and `bench` append to a history store by default: the suite's go to a temporary one, never the user's
# (inherited by the CLI subprocesses the tests start).
os.environ["CVAE_BENCH_HISTORY"] = tempfile.mkdtemp(prefix="cvae-bench-test-history-")


@pytest.fixture(scope="session")
def mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Real MNIST as float arrays (x_train, y_train one-hot, x_test, y_test one-hot)."""
    return load_mnist()


@pytest.fixture(scope="module")
def workers() -> Iterator[WorkerPool]:
    pool = WorkerPool()
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def decoder_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference's decoder as an ONNX file with the interface and deploy.py's metadata, one per module."""
    from cvae_bench.testing.onnx_models import write_reference_decoder

    meta = {"part": "decoder", "latent_dim": "2", "num_classes": "10", "backend": "reference"}
    return write_reference_decoder(tmp_path_factory.mktemp("deploy") / "decoder.onnx", meta)
