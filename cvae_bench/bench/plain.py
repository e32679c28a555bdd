"""Plain-loop reference rows: each framework's own training loop, written as its users write it.

The rows answer "does the harness slow a framework down?": they are timed in the same interleaved sweeps as
the harness's backends, in a bare worker (`backend=None`) whose only environment is the framework's own
(`KERAS_BACKEND`), and they share no code with `cvae_bench.backends`: the model, the loss and the loop are
written again here the way the framework's tutorials write them, with the framework's defaults (torch's
default Adam implementation and init, Keras's `jit_compile="auto"`, `fit`'s data pipeline). The model, the
loss and the recipe's numbers still come from the spec. Frameworks are imported inside the setups only, so
importing this module imports none.
"""

from __future__ import annotations

import importlib
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.backends.builtin import KERAS_JAX, KERAS_TENSORFLOW, KERAS_TORCH, TORCH
from cvae_bench.backends.registry import BackendInfo
from cvae_bench.bench.rounds import Setup, Timed
from cvae_bench.core.records import Record
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class PlainLoopInfo(Record):
    """What a plain-loop setup measured apart from the rounds, and what it is.

    Attributes:
        framework: "torch" or "keras".
        keras_backend: the framework under Keras ("jax", …); None for torch.
        steps_per_call: optimiser steps in one timed call (the harness divides per-call time by it).
        batch: images per step.
        first_call_s: the first call (Keras: tracing and compilation), timed apart.
        first_loss: the loss of that first call (Keras: its mean over the call's steps).
        versions: the imported frameworks' versions, by module name.
        loop: what one call is, in one sentence.
    """

    framework: str
    keras_backend: str | None
    steps_per_call: int
    batch: int
    first_call_s: float
    first_loss: float
    versions: dict[str, str]
    loop: str


@dataclass(frozen=True)
class PlainLoopEnd(Record):
    """What a plain loop returns after its last round (`Timed.finish`).

    Attributes:
        loss: the last call's loss (Keras: its mean over the call's steps).
        steps: optimiser steps taken in all, as the optimiser counts them.
        calls: calls of the loop in all (the first call, warm-up, calibration and rounds).
    """

    loss: float
    steps: int
    calls: int


def _train_arrays(dataset: str, data_path: str | None, train_subset: int | None, need: int) -> tuple[F32, F32]:
    """The training images and one-hot labels as float32, as every row of the benchmark reads them."""
    from cvae_bench.data.loading import as_float, load_dataset

    x, y, _, _ = as_float(load_dataset(dataset, data_path, download=False))
    x, y = x[:train_subset], y[:train_subset]
    if len(x) < need:
        raise ValueError(f"the plain loop needs at least {need} training images per call, got {len(x)}")
    return x, y


def _finite(loss: float, calls: int) -> float:
    if not math.isfinite(loss):
        raise RuntimeError(f"plain loop: training loss is {loss} after {calls} calls")
    return loss


# -- torch ---------------------------------------------------------------------------------------------------
def torch_model(spec: ModelSpec = DEFAULT_SPEC) -> Any:
    """The CVAE as a torch user writes it: two `nn.Sequential` MLPs with torch's default init.

    Returns:
        An `nn.Module` whose `forward(x, y, eps=None)` returns `(x_mean, z, z_mean, z_log_var)`, z of shape
        (kl_samples, B, latent_dim); ε is drawn with `torch.randn` unless given.
    """
    import torch
    from torch import nn

    act = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}

    def mlp(dims: list[int], *last: nn.Module) -> nn.Sequential:
        mods: list[nn.Module] = []
        for d_in, d_out in itertools.pairwise(dims):
            mods += [nn.Linear(d_in, d_out), act[spec.hidden_activation]()]
        return nn.Sequential(*mods[:-1], *last)  # no hidden activation after the last layer

    class CVAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = mlp(spec.encoder_dims)
            self.decoder = mlp(spec.decoder_dims, act[spec.output_activation]())

        def forward(self, x: Any, y: Any, eps: Any = None) -> tuple[Any, Any, Any, Any]:
            z_mean, z_log_var = self.encoder(torch.cat([x.flatten(1), y], 1)).chunk(2, dim=1)
            if eps is None:
                eps = torch.randn(spec.kl_samples, *z_mean.shape, device=x.device)
            z = z_mean + torch.exp(0.5 * z_log_var) * eps
            x_mean = self.decoder(torch.cat([z[0], y], 1)).view_as(x)
            return x_mean, z, z_mean, z_log_var

    return CVAE()


def torch_loss(x: Any, x_mean: Any, z: Any, z_mean: Any, z_log_var: Any, spec: ModelSpec = DEFAULT_SPEC) -> Any:
    """−ELBO, the batch mean: Gaussian NLL (σ_x of the spec) plus the Monte Carlo KL over the z samples."""
    import torch

    def log_normal(v: Any, mean: Any, log_var: Any) -> Any:
        return -0.5 * ((v - mean) ** 2 * torch.exp(-log_var) + log_var + math.log(2 * math.pi))

    zero = torch.zeros_like(z_mean)
    kl = (log_normal(z, z_mean, z_log_var) - log_normal(z, zero, zero)).sum(-1).mean(0)
    nll = 0.5 * (((x - x_mean) / spec.sigma_x) ** 2).flatten(1).sum(1) + spec.nll_constant
    return (kl + nll).mean()


def plain_torch_setup(
    backend: Any,
    emit: Any,
    *,
    dataset: str = "mnist",
    data_path: str | None = None,
    train_subset: int | None = None,
    seed: int = 0,
    warmup: int = 20,
    spec: ModelSpec = DEFAULT_SPEC,
    device: str = "cpu",
) -> tuple[Timed, PlainLoopInfo]:
    """Rounds-engine setup (bare worker): one call is one step of a plain torch loop.

    A step is zero_grad, forward, loss, backward, `optimizer.step()` on the next slice of one shuffled epoch
    held in tensors, wrapping round to its start: the shuffle's gather is done once, as the harness's
    train-step does, so both time the same work. Each round ends on `loss.item()` of its last step.
    """
    import torch

    b = spec.batch_size
    x_np, y_np = _train_arrays(dataset, data_path, train_subset, b)
    torch.manual_seed(seed)
    model = torch_model(spec).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=spec.learning_rate, betas=(spec.adam_beta_1, spec.adam_beta_2), eps=spec.adam_epsilon
    )
    perm = torch.randperm(len(x_np)).to(device)
    x, y = torch.as_tensor(x_np, device=device)[perm], torch.as_tensor(y_np, device=device)[perm]
    full_batches = len(x) // b
    state: dict[str, Any] = {"calls": 0, "loss": None}

    def step() -> None:
        i = state["calls"] % full_batches
        xb, yb = x[i * b : (i + 1) * b], y[i * b : (i + 1) * b]
        optimizer.zero_grad()
        x_mean, z, z_mean, z_log_var = model(xb, yb)
        loss = torch_loss(xb, x_mean, z, z_mean, z_log_var, spec)
        loss.backward()
        optimizer.step()
        state["loss"] = loss
        state["calls"] += 1

    def last_loss() -> float:
        return float(state["loss"].item())

    def finish() -> PlainLoopEnd:
        counts = {int(s["step"]) for s in optimizer.state.values()}  # every parameter's own step count
        if len(counts) != 1:
            raise RuntimeError(f"plain torch loop: parameters disagree on Adam's step count: {sorted(counts)}")
        return PlainLoopEnd(loss=_finite(last_loss(), state["calls"]), steps=counts.pop(), calls=state["calls"])

    t0 = time.perf_counter()
    step()
    first_loss = last_loss()
    first_call_s = time.perf_counter() - t0
    emit({"type": "bench", "what": "first step", "seconds": first_call_s})
    info = PlainLoopInfo(
        framework="torch",
        keras_backend=None,
        steps_per_call=1,
        batch=b,
        first_call_s=first_call_s,
        first_loss=first_loss,
        versions={"torch": torch.__version__},
        loop="one step of an nn.Module with torch.optim.Adam at torch's defaults (implementation, init): "
        "zero_grad, forward, loss, backward, step on a batch sliced from tensors",
    )
    return Timed(fn=step, sync=last_loss, warmup=warmup, finish=finish), info


# -- Keras ---------------------------------------------------------------------------------------------------
def keras_model(spec: ModelSpec = DEFAULT_SPEC, seed: int = 0) -> Any:
    """The tutorial's CVAE as a Keras 3 user writes it: functional encoder and decoder in a `keras.Model`
    subclass whose `call` adds the loss with `add_loss`.

    Keras 3 has no `add_loss` on a functional model's symbolic tensors (the Keras 2 tutorials' way), and a
    custom `train_step` is framework-specific code (GradientTape, `.backward()`, `jax.grad`); `add_loss` in
    `call` is the portable form closest to the tutorials' (the harness's Keras backends override
    `compute_loss` instead, so the row also shows what that choice is worth).
    ε comes from a `SeedGenerator`, as keras.io's VAE draws it (tracked state, so it works under jax.jit).
    """
    import keras
    from keras import layers, ops

    def mlp(h: Any, widths: list[int], last_activation: str | None) -> Any:
        for width in widths[:-1]:
            h = layers.Dense(width, activation=spec.hidden_activation)(h)
        return layers.Dense(widths[-1], activation=last_activation)(h)

    image, label = keras.Input(spec.image_shape), keras.Input((spec.num_classes,))
    out = mlp(layers.Concatenate()([layers.Flatten()(image), label]), spec.encoder_dims[1:], None)
    encoder = keras.Model([image, label], [out[:, : spec.latent_dim], out[:, spec.latent_dim :]], name="encoder")
    z_in, label = keras.Input((spec.latent_dim,)), keras.Input((spec.num_classes,))
    h = mlp(layers.Concatenate()([z_in, label]), spec.decoder_dims[1:], spec.output_activation)
    decoder = keras.Model([z_in, label], layers.Reshape(spec.image_shape)(h), name="decoder")

    def log_normal(v: Any, mean: Any, log_var: Any) -> Any:
        return -0.5 * (ops.square(v - mean) * ops.exp(-log_var) + log_var + math.log(2 * math.pi))

    class CVAE(keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(name="cvae")
            self.encoder, self.decoder = encoder, decoder
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, inputs: Any) -> Any:
            x, y = inputs
            z_mean, z_log_var = self.encoder([x, y])
            eps = keras.random.normal((spec.kl_samples, *ops.shape(z_mean)), seed=self.seed_generator)
            z = z_mean + ops.exp(0.5 * z_log_var) * eps
            zero = ops.zeros_like(z_mean)
            kl = ops.mean(ops.sum(log_normal(z, z_mean, z_log_var) - log_normal(z, zero, zero), -1), 0)
            x_mean = self.decoder([z[0], y])
            sq = ops.reshape(ops.square((x - x_mean) / spec.sigma_x), (-1, spec.image_size))
            self.add_loss(ops.mean(kl + 0.5 * ops.sum(sq, 1) + spec.nll_constant))
            return x_mean

    return CVAE()


def plain_keras_setup(
    backend: Any,
    emit: Any,
    *,
    dataset: str = "mnist",
    data_path: str | None = None,
    train_subset: int | None = None,
    seed: int = 0,
    steps_per_call: int = 50,
    warmup: int = 1,
    spec: ModelSpec = DEFAULT_SPEC,
) -> tuple[Timed, PlainLoopInfo]:
    """Rounds-engine setup (bare worker, `KERAS_BACKEND` set): one call is one `model.fit` over
    `steps_per_call` batches.

    Call j fits the j-th block of `steps_per_call` full batches of the training set (wrapping round), as
    NumPy arrays, `epochs=1, shuffle=True, verbose=0`: fit's own data pipeline and callbacks are part of
    the call, as they are for its users. The first call (tracing, compilation) is timed apart; `warmup`
    more calls follow untimed. No sync is needed: fit returns a History of host floats, read from the
    finished last step.
    """
    import keras

    b = spec.batch_size
    block = steps_per_call * b
    x, y = _train_arrays(dataset, data_path, train_subset, block)
    blocks = len(x) // block
    keras.utils.set_random_seed(seed)
    model = keras_model(spec, seed)
    adam = keras.optimizers.Adam(
        learning_rate=spec.learning_rate, beta_1=spec.adam_beta_1, beta_2=spec.adam_beta_2, epsilon=spec.adam_epsilon
    )
    model.compile(optimizer=adam)
    state: dict[str, Any] = {"calls": 0, "loss": math.nan}

    def fit() -> None:
        j = state["calls"] % blocks
        xs, ys = x[j * block : (j + 1) * block], y[j * block : (j + 1) * block]
        history = model.fit((xs, ys), batch_size=b, epochs=1, shuffle=True, verbose=0)
        state["loss"] = history.history["loss"][-1]
        state["calls"] += 1

    def finish() -> PlainLoopEnd:
        steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        return PlainLoopEnd(loss=_finite(state["loss"], state["calls"]), steps=steps, calls=state["calls"])

    t0 = time.perf_counter()
    fit()
    first_call_s = time.perf_counter() - t0
    emit({"type": "bench", "what": "first fit call", "seconds": first_call_s})
    name = keras.backend.backend()
    info = PlainLoopInfo(
        framework="keras",
        keras_backend=name,
        steps_per_call=steps_per_call,
        batch=b,
        first_call_s=first_call_s,
        first_loss=float(state["loss"]),
        versions={"keras": keras.__version__, name: importlib.import_module(name).__version__},
        loop=f"one model.fit(epochs=1, shuffle=True) over {steps_per_call} batches of NumPy arrays: a keras.Model "
        f"subclass with add_loss, compiled with Adam at Keras's defaults (jit_compile={model.jit_compile})",
    )
    return Timed(fn=fit, warmup=warmup, finish=finish), info


# -- the rows ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlainLoop:
    """A plain-loop reference row: its setup, and the harness backend it stands beside.

    Attributes:
        name: the row's name ("plain:keras-jax").
        setup: the rounds-engine setup, run in a bare worker.
        shadows: the registry backend it is compared with ("keras-jax").
        env: what its worker needs in its environment before any import (KERAS_BACKEND), nothing else.
        requires: modules it imports.
    """

    name: str
    setup: Setup
    shadows: str
    env: dict[str, str] = field(default_factory=dict)
    requires: tuple[str, ...] = ()

    def worker_info(self) -> BackendInfo:
        """The entry a `Worker` is started from: the row's name, environment and requirements, no backend."""
        return BackendInfo(name=self.name, target="", requires=self.requires, env=dict(self.env))


def _row(setup: Setup, shadows: BackendInfo) -> PlainLoop:
    # The environment and requirements are the shadowed backend's: declared once, in backends/builtin.py.
    return PlainLoop(f"plain:{shadows.name}", setup, shadows.name, dict(shadows.env), shadows.requires)


#: The plain-loop rows by name.
PLAIN_LOOPS: dict[str, PlainLoop] = {
    row.name: row
    for row in (
        _row(plain_torch_setup, TORCH),
        _row(plain_keras_setup, KERAS_TORCH),
        _row(plain_keras_setup, KERAS_TENSORFLOW),
        _row(plain_keras_setup, KERAS_JAX),
    )
}
