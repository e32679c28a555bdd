"""The one validation evaluator: fixed-ε NLL plus analytic KL, identical for every backend."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from cvae_bench.models import reference
from cvae_bench.models.spec import ModelSpec

#: The evaluator's own seed; independent of every training seed and the same for all backends.
EVAL_SEED = 0


@dataclass(frozen=True)
class Evaluation:
    """Mean validation terms in nats; `val_elbo` is −ELBO = KL + NLL (lower is better)."""

    val_elbo: float
    kl: float
    nll: float

    def to_dict(self) -> dict[str, float]:
        """Plain dict for JSON."""
        return asdict(self)


class EncoderDecoder(Protocol):
    """What the evaluator needs of a backend (any Backend, or a worker's proxy of one)."""

    def encode(self, x: NDArray[np.float32], y: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(z_mean, z_log_var)."""
        ...

    def decode(self, z: NDArray[np.float32], y: NDArray[np.float32]) -> NDArray[np.float32]:
        """x_mean (B, *image_shape)."""
        ...


class Evaluator:
    """Scores a backend on the validation set with the backend's own encoder and decoder.

    The networks run in the backend; everything after them (reparameterisation with the fixed ε,
    Gaussian NLL, analytic KL) runs here in float64 NumPy, so the arithmetic is shared by all backends.
    """

    def __init__(self, x: NDArray[np.float32], y: NDArray[np.float32], spec: ModelSpec, batch_size: int = 2000) -> None:
        self.x, self.y, self.spec, self.batch_size = x, y, spec, batch_size
        # One standard-normal draw per validation example, fixed once for all backends.
        self.eps = np.random.default_rng(EVAL_SEED).standard_normal((len(x), spec.latent_dim))

    def per_example(self, backend: EncoderDecoder) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per-example (KL, NLL) over the whole validation set."""
        kls, nlls = [], []
        for start in range(0, len(self.x), self.batch_size):
            sl = slice(start, start + self.batch_size)
            z_mean, z_log_var = backend.encode(self.x[sl], self.y[sl])
            z = z_mean.astype(np.float64) + np.exp(0.5 * z_log_var.astype(np.float64)) * self.eps[sl]
            x_mean = backend.decode(z.astype(np.float32), self.y[sl])
            kls.append(reference.analytic_kl(z_mean, z_log_var))
            nlls.append(reference.gaussian_nll(self.x[sl], x_mean, self.spec))
        return np.concatenate(kls), np.concatenate(nlls)

    def __call__(self, backend: EncoderDecoder) -> Evaluation:
        """Mean validation −ELBO and its parts."""
        kl, nll = self.per_example(backend)
        return Evaluation(val_elbo=float(np.mean(kl + nll)), kl=float(np.mean(kl)), nll=float(np.mean(nll)))
