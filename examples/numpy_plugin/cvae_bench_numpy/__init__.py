"""An example third-party backend: cvae-bench's float64 NumPy reference, trained with a NumPy Adam."""

from __future__ import annotations

import platform
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from cvae_bench.backends import Backend, Capabilities
from cvae_bench.backends.base import F32, WeightDict
from cvae_bench.models import reference
from cvae_bench.models.spec import ModelSpec


class NumpyBackend(Backend):
    """Pure NumPy (float64 maths, float32 at the interface); slow, exact, CPU only."""

    name = "numpy"
    framework = "numpy"
    capabilities = Capabilities(devices=("cpu",), modes=("eager",), gradient_atol=1e-6)

    def __init__(self, spec: ModelSpec, seed: int, device: str = "cpu", mode: str | None = None) -> None:
        super().__init__(spec, seed, device, mode)
        self._rng = np.random.default_rng(seed)
        self._adam = reference.KerasAdam(reference.init_weights(seed, spec), spec)
        self._losses: list[float] = []
        self._last_eps: NDArray[np.float32] | None = None

    @property
    def _w(self) -> dict[str, NDArray[np.float64]]:
        return self._adam.weights

    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        return {"numpy": np.__version__, "python": platform.python_version()}

    def get_weights(self) -> WeightDict:
        return {k: v.astype(np.float32) for k, v in self._w.items()}

    def set_weights(self, weights: Mapping[str, NDArray[np.floating]]) -> None:
        # Through float32, as every other backend stores them; a fresh optimiser state.
        self._adam = reference.KerasAdam({k: np.asarray(weights[k], np.float32) for k in self._w}, self.spec)

    def encode(self, x: F32, y: F32) -> tuple[F32, F32]:
        m, lv = reference.encode(self._w, x, y, self.spec)
        return m.astype(np.float32), lv.astype(np.float32)

    def decode(self, z: F32, y: F32) -> F32:
        return reference.decode(self._w, z, y, self.spec).astype(np.float32)

    def loss_parts(self, x: F32, y: F32, eps: F32) -> tuple[F32, F32]:
        parts = reference.loss_parts(self._w, x, y, eps, self.spec)
        return parts.kl.astype(np.float32), parts.nll.astype(np.float32)

    def gradients(self, x: F32, y: F32, eps: F32) -> WeightDict:
        return {k: g.astype(np.float32) for k, g in reference.gradients(self._w, x, y, eps, self.spec).items()}

    def load_train_data(self, x: F32, y: F32) -> None:
        self._x, self._y = x, y
        self._order = np.arange(len(x))

    def set_order(self, order: NDArray[np.int64]) -> None:
        self._order = np.asarray(order)

    def train_step(self, index: int) -> None:
        b = self.spec.batch_size
        rows = self._order[index * b : (index + 1) * b]
        shape = (self.spec.kl_samples, len(rows), self.spec.latent_dim)
        self._last_eps = self._rng.standard_normal(shape).astype(np.float32)  # float32, as ε crosses the interface
        self._step(self._x[rows], self._y[rows], self._last_eps)

    def last_train_noise(self) -> F32:
        if self._last_eps is None:
            raise RuntimeError("no train_step has run yet")
        return self._last_eps

    def first_train_noise(self, seed: int, batch: int) -> F32:
        shape = (self.spec.kl_samples, batch, self.spec.latent_dim)
        return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)  # as __init__ seeds _rng

    def train_step_with_eps(self, x: F32, y: F32, eps: F32) -> None:
        self._step(x, y, eps)

    def _step(self, x: NDArray[np.floating], y: NDArray[np.floating], eps: NDArray[np.floating]) -> None:
        self._losses.append(self._adam.train_step(x, y, eps))  # the reference's Keras Adam

    def adam_state(self) -> dict[str, NDArray[np.generic]]:
        return self._adam.get_state()  # the reference's own Adam: already in its terms

    def get_train_state(self) -> dict[str, NDArray[np.generic]]:
        return {**self._adam.get_state(), "noise_rng": reference.generator_state(self._rng)}

    def set_train_state(self, state: Mapping[str, NDArray[np.generic]]) -> None:
        self._adam.set_state(state)
        reference.set_generator_state(self._rng, state["noise_rng"])

    def take_loss(self) -> float:
        value = float(np.mean(self._losses)) if self._losses else float("nan")
        self._losses = []
        return value
