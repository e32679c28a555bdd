"""One training step replayed with the float64 reference, and what the backend did against it.

The run-time audit (`training.audit`) reads the backend before and after a training step (`Snapshot`) and
calls `replay_step`: the reference's loss and gradients on the step's batch and ε, Keras Adam's update from
the backend's own state, and the distances between the two, before any tolerance (`StepComparison`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.backends.base import Backend
from cvae_bench.models import reference
from cvae_bench.models.spec import ModelSpec

Array = NDArray[Any]
WeightMap = Mapping[str, Array]


@dataclass(frozen=True)
class Snapshot:
    """The backend's weights and Adam state (in the reference's terms) at one point."""

    weights: dict[str, Array]
    adam: dict[str, Array]

    @classmethod
    def of(cls, backend: Backend) -> Snapshot:
        """Read `backend` (syncs it)."""
        return cls(dict(backend.get_weights()), dict(backend.adam_state()))

    def same_as(self, other: Snapshot) -> list[str]:
        """The tensors that differ from `other`'s, by name."""
        return [k for k in (*self.weights, *self.adam) if not np.array_equal(self._get(k), other._get(k))]

    def _get(self, key: str) -> Array:
        return self.weights[key] if key in self.weights else self.adam[key]


@dataclass(frozen=True)
class StepComparison:
    """One audited step against the reference's replay of it: what was measured, before any tolerance.

    `weights`, `m` and `v` are (relative distance, the tensor where it is largest); `iterations` is Adam's
    step count before and after the step.
    """

    loss: float
    reference_loss: float
    weights: tuple[float, str]
    m: tuple[float, str]
    v: tuple[float, str]
    shrink: float
    iterations: tuple[int, int]


def replay_step(
    before: Snapshot,
    after: Snapshot,
    x: Array,
    y: Array,
    eps: Array,
    loss: float,
    spec: ModelSpec,
    scratch: Scratch | None = None,
) -> StepComparison:
    """Replay one training step with the float64 reference from `before` and compare it with `after`.

    Args:
        before: the backend's weights and Adam state before the step.
        after: the same after it.
        x, y: the step's batch (the rows of the epoch's order).
        eps: the ε the backend reported for the step.
        loss: the loss the backend reported for the step alone.
        spec: the model spec (the recipe's hyper-parameters).
        scratch: float64 buffers to reuse from one replay to the next (`Scratch`); None: fresh ones.

    Raises:
        KeyError: `before.adam` lacks a moment of some weight.
    """
    parts, grads = reference.loss_and_gradients(before.weights, x, y, eps, spec)
    t = int(before.adam["iterations"]) + 1
    scratch = scratch or Scratch()
    worst: dict[str, tuple[float, str]] = {"weights": (0.0, ""), "m": (0.0, ""), "v": (0.0, "")}
    fit = np.zeros(5)  # Σ Δ·Δ, Δ·w₀, w₀·w₀, Δ·r, w₀·r over the kernels (see _shrink)
    # Tensor by tensor, with the reference's own Adam update, in buffers that outlive the step.
    for k, g in grads.items():
        w0, m0, v0, w1, m1, v1, tmp, off = scratch.buffers(np.shape(g), 8)
        for buffer, value in ((w0, before.weights[k]), (m0, before.adam[f"m/{k}"]), (v0, before.adam[f"v/{k}"])):
            np.copyto(buffer, value)
        reference.adam_update(w0, m0, v0, g, t, spec, out=(w1, m1, v1, tmp))
        got = (after.weights[k], after.adam[f"m/{k}"], after.adam[f"v/{k}"])
        for what, mine, want, origin in zip(("weights", "m", "v"), got, (w1, m1, v1), (w0, m0, v0), strict=True):
            np.subtract(mine, want, out=off)
            np.subtract(want, origin, out=tmp)
            d, r = tmp.reshape(-1), off.reshape(-1)
            rel = _ratio(math.sqrt(float(r @ r)), math.sqrt(float(d @ d)))
            if rel > worst[what][0] or not worst[what][1]:
                worst[what] = (rel, k)
            if what == "weights" and k.endswith(".kernel"):  # biases start at zero: their decay is no signal
                w = origin.reshape(-1)
                fit += (d @ d, d @ w, w @ w, d @ r, w @ r)
    return StepComparison(
        loss=float(loss),
        reference_loss=float(parts.total.mean()),
        weights=worst["weights"],
        m=worst["m"],
        v=worst["v"],
        shrink=_shrink(*fit),
        iterations=(int(before.adam["iterations"]), int(after.adam["iterations"])),
    )


class Scratch:
    """float64 buffers for one tensor at a time, kept from one replay to the next.

    Fresh multi-megabyte arrays at every audited step cost the replay more in page faults than its
    arithmetic (about 70 against 25 ms on the 2-core development machine).
    """

    def __init__(self) -> None:
        self._flat: list[NDArray[np.float64]] = []

    def buffers(self, shape: tuple[int, ...], count: int) -> list[NDArray[np.float64]]:
        """`count` float64 arrays of `shape` (their contents are whatever they held)."""
        size = math.prod(shape)
        if len(self._flat) < count or self._flat[0].size < size:
            self._flat = [np.empty(max(size, self._flat[0].size if self._flat else 0)) for _ in range(count)]
        return [flat[:size].reshape(shape) for flat in self._flat[:count]]


def _ratio(off: float, travelled: float) -> float:
    if not math.isfinite(off):
        return math.inf
    return off / travelled if travelled > 0 else (0.0 if off == 0 else math.inf)


def _shrink(dd: float, dw: float, ww: float, dr: float, wr: float) -> float:
    """The share of its kernels a step removed beyond the reference's step: −c of the fit r ≈ a·Δ + c·w₀.

    r = w − w_ref is what the backend did beyond the reference, Δ = w_ref − w₀ the reference's step; the
    arguments are the sums of their products over the kernels. A float32 step computed with a uniform
    relative error (the step size α_t rounded once) leaks into a plain projection of r on w₀ wherever the
    step correlates with the weights (Keras: up to 1.3e-8); fitted together with Δ, that error goes to a, and
    c keeps only what is proportional to the weights themselves — decoupled weight decay's −lr·decay.
    """
    det = dd * ww - dw * dw
    if det > 1e-12 * dd * ww:
        return -(dd * wr - dw * dr) / det
    return -wr / ww if ww > 0 else 0.0
