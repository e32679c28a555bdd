"""Worker jobs of the ONNX wing: run inside a backend's worker, next to the backend."""

from __future__ import annotations

from typing import Any

from cvae_bench.backends.base import Backend
from cvae_bench.data.loading import as_float, load_dataset
from cvae_bench.models.evaluator import Evaluation, Evaluator


def evaluate_job(
    backend: Backend,
    emit: Any,
    *,
    dataset: str = "mnist",
    data_path: str | None = None,
    val_subset: int | None = None,
) -> Evaluation:
    """The shared evaluator on the backend's current weights and the first `val_subset` validation images.

    The export's own copy of the evaluation job, so that the ONNX wing needs nothing from training/.
    """
    _, _, x_val, y_val = as_float(load_dataset(dataset, data_path, download=False))
    return Evaluator(x_val[:val_subset], y_val[:val_subset], backend.spec)(backend)
