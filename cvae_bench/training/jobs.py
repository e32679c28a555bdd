"""Jobs that run inside a backend's worker process, next to the backend (see harness.worker)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cvae_bench.backends.base import Backend
from cvae_bench.data.loading import load_arrays
from cvae_bench.data.specs import DEFAULT_DATASET
from cvae_bench.models.evaluator import Evaluator
from cvae_bench.runtime.machine import environment
from cvae_bench.training.loop import EventSink, TrainConfig, train
from cvae_bench.training.records import DataUsed, TrainOutcome


@dataclass(frozen=True)
class TrainJobResult:
    """What a training job sends back from the worker: the outcome, the trained weights, the machine."""

    outcome: TrainOutcome
    weights: dict[str, np.ndarray]
    environment: dict[str, Any]


def train_job(
    backend: Backend,
    emit: EventSink,
    *,
    config: TrainConfig,
    dataset: str = DEFAULT_DATASET,
    data_path: str | None = None,
    train_subset: int | None = None,
    val_subset: int | None = None,
) -> TrainJobResult:
    """Train to target in the worker."""
    x_train, y_train, x_val, y_val = load_arrays(dataset, data_path, train_subset, val_subset, model=backend.spec)
    evaluator = Evaluator(x_val, y_val, backend.spec)
    outcome = train(backend, x_train, y_train, evaluator, config, emit)
    used = DataUsed(dataset=dataset, train_examples=len(x_train), val_examples=len(x_val))
    return TrainJobResult(replace(outcome, data=used), backend.get_weights(), environment())


def evaluate_job(
    backend: Backend,
    emit: EventSink,
    *,
    weights: dict[str, np.ndarray] | None = None,
    dataset: str = DEFAULT_DATASET,
    data_path: str | None = None,
    val_subset: int | None = None,
) -> dict[str, float]:
    """The shared evaluator on `weights` (or the backend's current ones)."""
    if weights is not None:
        backend.set_weights(weights)
    _, _, x_val, y_val = load_arrays(dataset, data_path, 0, val_subset, model=backend.spec)
    return Evaluator(x_val, y_val, backend.spec)(backend).to_dict()
