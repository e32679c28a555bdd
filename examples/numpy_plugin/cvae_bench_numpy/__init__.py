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
        self._w = {k: v.astype(np.float64) for k, v in reference.init_weights(seed, spec).items()}
        self._reset_adam()
        self._losses: list[float] = []

    def _reset_adam(self) -> None:
        self._m = {k: np.zeros_like(v) for k, v in self._w.items()}
        self._v = {k: np.zeros_like(v) for k, v in self._w.items()}
        self._t = 0

    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        return {"numpy": np.__version__, "python": platform.python_version()}

    def get_weights(self) -> WeightDict:
        return {k: v.astype(np.float32) for k, v in self._w.items()}

    def set_weights(self, weights: Mapping[str, NDArray[np.floating]]) -> None:
        self._w = {k: np.asarray(weights[k], np.float32).astype(np.float64) for k in self._w}
        self._reset_adam()

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
        eps = self._rng.standard_normal((self.spec.kl_samples, len(rows), self.spec.latent_dim))
        self._step(self._x[rows], self._y[rows], eps)

    def train_step_with_eps(self, x: F32, y: F32, eps: F32) -> None:
        self._step(x, y, eps)

    def _step(self, x: NDArray[np.floating], y: NDArray[np.floating], eps: NDArray[np.floating]) -> None:
        s = self.spec
        self._losses.append(float(reference.loss_parts(self._w, x, y, eps, s).total.mean()))
        grads = reference.gradients(self._w, x, y, eps, s)
        self._t += 1
        # Keras's Adam: ε added to sqrt(v) before the bias-corrected step size is applied.
        alpha = s.learning_rate * np.sqrt(1 - s.adam_beta_2**self._t) / (1 - s.adam_beta_1**self._t)
        for k, g in grads.items():
            self._m[k] = s.adam_beta_1 * self._m[k] + (1 - s.adam_beta_1) * g
            self._v[k] = s.adam_beta_2 * self._v[k] + (1 - s.adam_beta_2) * g * g
            self._w[k] -= alpha * self._m[k] / (np.sqrt(self._v[k]) + s.adam_epsilon)

    def take_loss(self) -> float:
        value = float(np.mean(self._losses)) if self._losses else float("nan")
        self._losses = []
        return value
