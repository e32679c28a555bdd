"""Jobs that run inside a backend's worker process, next to the backend (see harness.worker)."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np

from cvae_bench.backends.base import Backend
from cvae_bench.data.loading import load_arrays
from cvae_bench.models.evaluator import Evaluator
from cvae_bench.training.loop import EventSink, TrainConfig, train


def train_job(
    backend: Backend,
    emit: EventSink,
    *,
    config: dict[str, Any],
    dataset: str = "mnist",
    data_path: str | None = None,
    train_subset: int | None = None,
    val_subset: int | None = None,
) -> dict[str, Any]:
    """Train to target in the worker; returns {"record": …, "weights": …, "environment": …}."""
    x_train, y_train, x_val, y_val = load_arrays(dataset, data_path, train_subset, val_subset)
    evaluator = Evaluator(x_val, y_val, backend.spec)
    record = train(backend, x_train, y_train, evaluator, TrainConfig(**config), emit)
    record["data"] = {"dataset": dataset, "train_examples": len(x_train), "val_examples": len(x_val)}
    return {"record": record, "weights": backend.get_weights(), "environment": environment()}


def evaluate_job(
    backend: Backend,
    emit: EventSink,
    *,
    weights: dict[str, np.ndarray] | None = None,
    dataset: str = "mnist",
    data_path: str | None = None,
    val_subset: int | None = None,
) -> dict[str, float]:
    """The shared evaluator on `weights` (or the backend's current ones)."""
    if weights is not None:
        backend.set_weights(weights)
    _, _, x_val, y_val = load_arrays(dataset, data_path, 0, val_subset)
    return Evaluator(x_val, y_val, backend.spec)(backend).to_dict()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """The machine and process a measurement ran on."""
    threads = {k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS")}
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numpy": np.__version__,
        "thread_env": threads,
    }
