"""The single source of the model's sizes, activations, likelihood and optimiser settings."""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines the tutorial's Conditional VAE and its training recipe.

    Backends, the NumPy reference, FLOP counts and ONNX metadata all read these numbers from here.
    """

    image_shape: tuple[int, int] = (28, 28)
    num_classes: int = 10
    latent_dim: int = 2
    encoder_hidden: tuple[int, ...] = (512, 32)
    decoder_hidden: tuple[int, ...] = (32, 512)
    hidden_activation: str = "relu"
    output_activation: str = "sigmoid"
    sigma_x: float = 0.5
    kl_samples: int = 5
    batch_size: int = 64
    learning_rate: float = 1e-3
    adam_beta_1: float = 0.9
    adam_beta_2: float = 0.999
    adam_epsilon: float = 1e-7

    @property
    def image_size(self) -> int:
        """Pixels per image (784 for MNIST)."""
        return self.image_shape[0] * self.image_shape[1]

    @property
    def encoder_dims(self) -> list[int]:
        """Layer widths of the encoder, input first: [794, 512, 32, 4]."""
        return [self.image_size + self.num_classes, *self.encoder_hidden, 2 * self.latent_dim]

    @property
    def decoder_dims(self) -> list[int]:
        """Layer widths of the decoder, input first: [12, 32, 512, 784]."""
        return [self.latent_dim + self.num_classes, *self.decoder_hidden, self.image_size]

    @property
    def nll_constant(self) -> float:
        """Per-example constant of the Gaussian NLL: 784·(log σ_x + ½ log 2π) ≈ 177.1 nats."""
        return self.image_size * (math.log(self.sigma_x) + 0.5 * math.log(2 * math.pi))

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical weight names and shapes (kernels are (in, out), as Keras stores them)."""
        shapes: dict[str, tuple[int, ...]] = {}
        for part, dims in (("encoder", self.encoder_dims), ("decoder", self.decoder_dims)):
            for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
                shapes[f"{part}.dense_{i}.kernel"] = (d_in, d_out)
                shapes[f"{part}.dense_{i}.bias"] = (d_out,)
        return shapes

    def param_count(self, part: str) -> int:
        """Number of parameters of `part` ("encoder" or "decoder")."""
        return sum(math.prod(s) for n, s in self.weight_shapes().items() if n.startswith(part + "."))

    def flops(self, part: str, batch: int = 1) -> int:
        """Multiply-add FLOPs (2 per MAC) of one forward pass of `part` through its dense layers."""
        dims = self.encoder_dims if part == "encoder" else self.decoder_dims
        return 2 * batch * sum(a * b for a, b in itertools.pairwise(dims))

    def train_step_flops(self, batch: int | None = None) -> int:
        """Dense-layer FLOPs of one training step: forward plus backward (≈ 2× forward) of both nets."""
        b = self.batch_size if batch is None else batch
        return 3 * (self.flops("encoder", b) + self.flops("decoder", b))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Inverse of `to_dict`."""
        kw = dict(data)
        for key in ("image_shape", "encoder_hidden", "decoder_hidden"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)


DEFAULT_SPEC = ModelSpec()
