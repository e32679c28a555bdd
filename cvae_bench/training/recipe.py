"""The recipe check of every run: the conformance suite's checks on the backend, in its worker, before training.

A backend that trains unlike the tutorial's recipe (another β2, ε = 0 in its training path, a dropped last
batch…) can still reach the target — sometimes sooner. The convergence band catches gross deviations; this
catches the small ones, with the same checks and tolerances as the conformance suite, so that a run of a
deviating plugin is marked `deviant` even where nobody ran the suite. The backend is returned to its initial
weights and training state afterwards, so the run trains exactly as it would have without the check.
"""

from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray

from cvae_bench.backends.base import Backend
from cvae_bench.conformance.checks import TOLERANCES, Probe, check_initialisation, recipe_checks
from cvae_bench.training.records import RecipeCheck


def probe_examples(batch_size: int) -> int:
    """Training examples the probe needs (the trajectory check's batches)."""
    return TOLERANCES.trajectory_steps * batch_size


def check_recipe(backend: Backend, x_train: NDArray[np.float32], y_train: NDArray[np.float32]) -> RecipeCheck:
    """Run the recipe checks on `backend`, then put back its initial weights and training state."""
    need = probe_examples(backend.spec.batch_size)
    if len(x_train) < need:
        return RecipeCheck([], [], 0.0, skipped=f"{len(x_train)} training examples; the probe needs {need}")
    t0 = time.perf_counter()
    initial = backend.get_weights()
    try:
        state = backend.get_train_state()
    except NotImplementedError:
        state = None
    results = [check_initialisation([initial], backend.spec, backend=backend.name)]
    results += recipe_checks(backend, Probe(x_train[:need], y_train[:need], backend.spec))
    backend.set_weights(initial)
    if state is not None:
        backend.set_train_state(state)
    failed = [str(r) for r in results if not r.ok]
    return RecipeCheck([r.check for r in results], failed, time.perf_counter() - t0)
