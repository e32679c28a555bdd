"""When a run has diverged: a loss or an evaluation that is not finite, or weights the optimiser has lost.

A non-finite training loss or val −ELBO is plain. Weights can blow up while both stay finite (a saturated
output layer hides them), so the weights are held to a bound too. float32 carries 24 bits of mantissa: above
2^25 · learning rate, a weight's unit in the last place is at least twice the learning rate, so Adam's step
(about one learning rate) rounds away and can no longer change it. Training has lost control of such a
weight; a healthy run of this model keeps its weights some four orders of magnitude below the bound (about
3.4e4 at the recipe's 1e-3).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from cvae_bench.models.spec import ModelSpec
from cvae_bench.training.records import Divergence


def weight_bound(spec: ModelSpec) -> float:
    """The largest weight magnitude that an optimiser step of `spec.learning_rate` can still change (float32)."""
    return float(2**25 * spec.learning_rate)


def blown_weights(weights: Mapping[str, NDArray[np.floating]], spec: ModelSpec, step: int) -> Divergence | None:
    """The divergence of weights that hold a non-finite value or exceed `weight_bound`, else None.

    Names the first such tensor (in name order) and its largest magnitude.
    """
    bound = weight_bound(spec)
    for name in sorted(weights):
        arr = np.asarray(weights[name])
        if arr.size == 0:
            continue
        finite = np.isfinite(arr)
        if not finite.all():
            bad = arr[~finite].flat[0]
            return Divergence(step=step, what=f"weight {name}", value=str(float(bad)))
        largest = float(np.max(np.abs(arr)))
        if largest > bound:
            return Divergence(step=step, what=f"weight {name} (|w| bound {bound:g})", value=f"{largest:g}")
    return None
