"""Jobs that run inside a backend's worker process, next to the backend (see runtime.worker)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cvae_bench.backends.base import Backend
from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.core.events import Emit
from cvae_bench.data.loading import load_arrays
from cvae_bench.data.specs import DEFAULT_DATASET
from cvae_bench.models.evaluator import Evaluator
from cvae_bench.runtime.machine import environment
from cvae_bench.training.checkpoint import Checkpoint
from cvae_bench.training.loop import TrainConfig, train
from cvae_bench.training.recipe import check_recipe
from cvae_bench.training.records import DataUsed, TrainOutcome


@dataclass(frozen=True)
class TrainJobResult:
    """What a training job sends back from the worker: the outcome, the trained weights, the machine."""

    outcome: TrainOutcome
    weights: dict[str, np.ndarray]
    environment: dict[str, Any]
    resumable: bool = False


def train_job(
    backend: Backend,
    emit: Emit,
    *,
    config: TrainConfig,
    dataset: str = DEFAULT_DATASET,
    data_path: str | None = None,
    train_subset: int | None = None,
    val_subset: int | None = None,
    checkpoint_to: str | None = None,
    resume: Checkpoint | None = None,
) -> TrainJobResult:
    """Train to target in the worker, checkpointing into `checkpoint_to` (a run folder) when the backend can.

    A backend without `get_train_state` trains without checkpoints (and cannot be resumed); asking to
    resume one is an error.
    """
    emit({"type": "stage", "what": "data load"})  # silent work: see runtime.worker
    x_train, y_train, x_val, y_val = load_arrays(dataset, data_path, train_subset, val_subset, model=backend.spec)
    evaluator = Evaluator(x_val, y_val, backend.spec)
    resumable = _can_checkpoint(backend)
    if resume is not None and not resumable:
        raise CvaeBenchError(f"backend {backend.name!r} cannot restore a training state, so it cannot be resumed")
    folder = Path(checkpoint_to) if checkpoint_to and resumable else None
    recipe = None
    if config.recipe_check:
        emit({"type": "stage", "what": "recipe check"})
        recipe = check_recipe(backend, x_train, y_train)
    outcome = train(backend, x_train, y_train, evaluator, config, emit, checkpoint_to=folder, resume=resume)
    outcome = replace(outcome, recipe_check=recipe)
    used = DataUsed(dataset=dataset, train_examples=len(x_train), val_examples=len(x_val))
    return TrainJobResult(replace(outcome, data=used), backend.get_weights(), environment(), resumable)


def _can_checkpoint(backend: Backend) -> bool:
    try:
        backend.get_train_state()
    except NotImplementedError:
        return False
    return True
