"""The shared evaluator on a data set's validation split, in a backend's worker or from the parent."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cvae_bench.backends.base import Backend
from cvae_bench.backends.registry import BackendInfo
from cvae_bench.core.defaults import DEFAULT_IDLE_TIMEOUT
from cvae_bench.core.errors import BackendUnavailableError, CvaeBenchError
from cvae_bench.core.events import SILENT, Reporter
from cvae_bench.data.loading import load_arrays, load_dataset
from cvae_bench.data.specs import DEFAULT_DATASET
from cvae_bench.models.evaluator import Evaluation, Evaluator
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec
from cvae_bench.runtime.files import load_weights
from cvae_bench.runtime.worker import RemoteBackend, Worker


def evaluate_job(
    backend: Backend,
    emit: Any,
    *,
    weights: dict[str, np.ndarray] | None = None,
    dataset: str = DEFAULT_DATASET,
    data_path: str | None = None,
    val_subset: int | None = None,
) -> Evaluation:
    """Worker job: the shared evaluator on `weights` (or the backend's current ones) and the first
    `val_subset` validation images."""
    if weights is not None:
        backend.set_weights(weights)
    _, _, x_val, y_val = load_arrays(dataset, data_path, 0, val_subset, model=backend.spec)
    return Evaluator(x_val, y_val, backend.spec)(backend)


def evaluate_weights(
    info: BackendInfo,
    weights_path: str | Path,
    *,
    device: str = "cpu",
    dataset: str = DEFAULT_DATASET,
    data_path: str | None = None,
    val_subset: int | None = None,
    spec: ModelSpec = DEFAULT_SPEC,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    reporter: Reporter = SILENT,
) -> Evaluation:
    """Score a canonical weights file with `info`'s networks in a worker of its own.

    The weights are read first, then the data set is fetched if needed (`reporter` hears its progress), then
    the worker starts.

    Raises:
        BackendUnavailableError: the backend's framework is missing.
        CvaeBenchError: unreadable or mismatched weights, missing data, or weights whose evaluation is not
            finite (they overflow the networks).
        WorkerError: the worker died or hung.
    """
    if not info.available:
        raise BackendUnavailableError(info.unavailable_reason())
    weights = load_weights(weights_path, spec)
    ds = load_dataset(dataset, data_path, reporter=reporter)
    with Worker(info, idle_timeout=idle_timeout) as worker:
        backend = RemoteBackend(worker, spec, 0, device)
        ev: Evaluation = backend.run_job(
            evaluate_job, weights=weights, dataset=dataset, data_path=str(ds.path), val_subset=val_subset
        )
    if not all(math.isfinite(v) for v in (ev.val_elbo, ev.kl, ev.nll)):
        # A number people copy: never print one that is not a score.
        raise CvaeBenchError(
            f"weights {weights_path} give a non-finite val -ELBO ({ev.val_elbo}; KL {ev.kl}, NLL {ev.nll}): "
            "the networks overflow with them; these weights come from a run that diverged"
        )
    return ev
