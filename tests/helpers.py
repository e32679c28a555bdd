"""Small helpers shared by test modules (importable inside worker and check subprocesses too)."""

from __future__ import annotations

import numpy as np

from cvae_bench.models import reference


def biased_weights(seed: int = 7) -> dict[str, np.ndarray]:
    """Reference weights with non-zero biases, so that bias handling is exercised."""
    rng = np.random.default_rng(seed)
    w = reference.init_weights(seed)
    for k in w:
        if k.endswith(".bias"):
            w[k] = rng.normal(scale=0.05, size=w[k].shape).astype(np.float32)
    return w
