"""Mutant backends: a faithful NumPy port of the recipe, and ports that each make one mistake a real one could.

`PortBackend` runs the tutorial's recipe on the float64 reference, with one method per decision a port
makes (initialisation, forward pass, loss, noise, batch order, optimiser). Every mutant overrides one of
them. The conformance checks and the run-time audit must pass the port and fail every mutant (`kill`: the
checks, then a short audited run), which is what `tests/test_mutants.py` asserts; plugin authors can run the
same to see what the kit catches. Some mutants follow the recipe wherever the checks look and leave it only
where a run goes on (later, on more data, across epochs or seeds): only the audit sees those. The clock
mutants run their steps in a background thread.

The mutants run in-process: they are plain NumPy, and the checks only call Backend methods.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import platform
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.backends.base import F32, Backend, Capabilities, WeightDict
from cvae_bench.conformance.checks import RECIPE_CHECKS, CheckResult, Probe, check_initialisation
from cvae_bench.models import reference
from cvae_bench.models.evaluator import Evaluator
from cvae_bench.models.spec import ModelSpec
from cvae_bench.testing.support import load_mnist
from cvae_bench.training.checkpoint import Checkpoint, LoopState
from cvae_bench.training.loop import TrainConfig, train
from cvae_bench.training.records import AuditRecord

F64 = NDArray[np.float64]
Array = NDArray[np.floating]


class PortBackend(Backend):
    """A faithful port of the recipe in NumPy: the reference's maths, one overridable method per decision."""

    name = "port"
    framework = "numpy"
    capabilities = Capabilities(devices=("cpu",), modes=("eager",), isolated=False, gradient_atol=1e-6)

    def __init__(self, spec: ModelSpec, seed: int, device: str = "cpu", mode: str | None = None) -> None:
        super().__init__(spec, seed, device, mode)
        self.noise_rng = self.noise_generator(seed)
        self.adam = self.make_optimizer(self.init_weights(seed))
        self.losses: list[float] = []
        self.last_eps: F32 | None = None
        self.x = np.zeros((0, *spec.image_shape), np.float32)
        self.y = np.zeros((0, spec.num_classes), np.float32)
        self.order = np.arange(0)

    # -- the decisions a port makes (mutants override one) ---------------------------------------------
    def init_weights(self, seed: int) -> dict[str, NDArray[np.float32]]:
        """Glorot-uniform kernels, zero biases."""
        return reference.init_weights(seed, self.spec)

    def make_optimizer(self, weights: Mapping[str, NDArray[np.floating]]) -> reference.KerasAdam:
        """Keras's Adam with the hyper-parameters of `optimizer_spec`."""
        return reference.KerasAdam(weights, self.optimizer_spec())

    def optimizer_spec(self) -> ModelSpec:
        """Learning rate, β1, β2 and ε: the spec's."""
        return self.spec

    def activation(self, a: F64) -> F64:
        """The hidden layers' activation."""
        return np.maximum(a, 0.0)

    def join(self, first: F64, label: F64) -> F64:
        """The input of each network: image (or z) first, then the one-hot label."""
        return np.concatenate([first, label], 1)

    def precision(self, a: F64) -> F64:
        """What every layer's input and output is rounded to (float64: nothing)."""
        return a

    def loss_terms(self, x: F64, x_mean: F64, z_mean: F64, z_log_var: F64, eps: F64) -> tuple[F64, F64]:
        """Per-example (KL, NLL): Monte Carlo KL over every ε sample, Gaussian NLL with σ_x."""
        s = self.spec
        sigma = np.exp(0.5 * z_log_var)
        z = z_mean + sigma * eps
        kl = np.mean(np.sum(0.5 * (z**2 - ((z - z_mean) / sigma) ** 2 - z_log_var), axis=2), axis=0)
        return kl, reference.gaussian_nll(x, x_mean, s)

    def gradients64(self, x: Array, y: Array, eps: Array) -> dict[str, F64]:
        """Gradients of the batch loss (the reference's exact ones)."""
        return reference.gradients(self.adam.weights, x, y, eps, self.spec)

    def noise_generator(self, seed: int) -> np.random.Generator:
        """The generator of the training noise, seeded."""
        return np.random.default_rng(seed)

    def draw_noise(self, batch: int) -> F32:
        """A fresh standard-normal ε (kl_samples, batch, latent) from the backend's seeded generator."""
        shape = (self.spec.kl_samples, batch, self.spec.latent_dim)
        return self.noise_rng.standard_normal(shape).astype(np.float32)

    def batch_rows(self, index: int) -> NDArray[np.int64]:
        """The rows of batch `index` of the current order (the last batch may be short)."""
        b = self.spec.batch_size
        return self.order[index * b : (index + 1) * b]

    # -- the model -------------------------------------------------------------------------------------
    def _mlp(self, part: str, h: F64) -> F64:
        w = self.adam.weights
        n = len(self.spec.encoder_dims if part == "encoder" else self.spec.decoder_dims) - 1
        for i in range(n):
            h = self.precision(self.precision(h) @ self.precision(w[f"{part}.dense_{i}.kernel"]))
            h = self.precision(h + w[f"{part}.dense_{i}.bias"])
            if i < n - 1:
                h = self.activation(h)
        return h

    def _encode64(self, x: NDArray[np.floating], y: NDArray[np.floating]) -> tuple[F64, F64]:
        xf = np.asarray(x, np.float64).reshape(len(x), -1)
        out = self._mlp("encoder", self.join(xf, np.asarray(y, np.float64)))
        return out[:, : self.spec.latent_dim], out[:, self.spec.latent_dim :]

    def _decode64(self, z: NDArray[np.floating], y: NDArray[np.floating]) -> F64:
        a = self._mlp("decoder", self.join(np.asarray(z, np.float64), np.asarray(y, np.float64)))
        out: F64 = (0.5 * (1.0 + np.tanh(0.5 * a))).reshape(len(a), *self.spec.image_shape)
        return out

    def _parts64(self, x: NDArray[np.floating], y: NDArray[np.floating], eps: NDArray[np.floating]) -> tuple[F64, F64]:
        z_mean, z_log_var = self._encode64(x, y)
        e = np.asarray(eps, np.float64)
        x_mean = self._decode64(z_mean + np.exp(0.5 * z_log_var) * e[0], y)
        return self.loss_terms(np.asarray(x, np.float64), x_mean, z_mean, z_log_var, e)

    # -- the Backend contract --------------------------------------------------------------------------
    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        return {"numpy": np.__version__, "python": platform.python_version()}

    def get_weights(self) -> WeightDict:
        return {k: v.astype(np.float32) for k, v in self.adam.weights.items()}

    def set_weights(self, weights: Mapping[str, NDArray[np.floating]]) -> None:
        self.adam = self.make_optimizer({k: np.asarray(weights[k], np.float32) for k in self.adam.weights})

    def encode(self, x: F32, y: F32) -> tuple[F32, F32]:
        m, lv = self._encode64(x, y)
        return m.astype(np.float32), lv.astype(np.float32)

    def decode(self, z: F32, y: F32) -> F32:
        return self._decode64(z, y).astype(np.float32)

    def loss_parts(self, x: F32, y: F32, eps: F32) -> tuple[F32, F32]:
        kl, nll = self._parts64(x, y, eps)
        return kl.astype(np.float32), nll.astype(np.float32)

    def gradients(self, x: F32, y: F32, eps: F32) -> WeightDict:
        return {k: g.astype(np.float32) for k, g in self.gradients64(x, y, eps).items()}

    def load_train_data(self, x: F32, y: F32) -> None:
        self.x, self.y = x, y
        self.order = np.arange(len(x))

    def set_order(self, order: NDArray[np.int64]) -> None:
        self.order = np.asarray(order)

    def train_step(self, index: int) -> None:
        rows = self.batch_rows(index)
        self.last_eps = self.draw_noise(len(rows))
        self.train_step_with_eps(self.x[rows], self.y[rows], self.last_eps)

    def train_step_with_eps(self, x: F32, y: F32, eps: F32) -> None:
        kl, nll = self._parts64(x, y, eps)
        self.losses.append(float(np.mean(kl + nll)))
        self.adam.apply(self.gradients64(x, y, eps))

    def last_train_noise(self) -> F32:
        if self.last_eps is None:
            raise RuntimeError("no train_step has run yet")
        return self.last_eps

    def adam_state(self) -> dict[str, NDArray[np.generic]]:
        return self.adam.get_state()

    def first_train_noise(self, seed: int, batch: int) -> F32:
        # draw_noise from a fresh generator, so that a mutant's own draw_noise answers for itself
        own, self.noise_rng = self.noise_rng, self.noise_generator(seed)
        try:
            return self.draw_noise(batch)
        finally:
            self.noise_rng = own

    def get_train_state(self) -> dict[str, NDArray[np.generic]]:
        return {**self.adam.get_state(), "noise_rng": reference.generator_state(self.noise_rng)}

    def set_train_state(self, state: Mapping[str, NDArray[np.generic]]) -> None:
        self.adam.set_state(state)
        reference.set_generator_state(self.noise_rng, state["noise_rng"])

    def take_loss(self) -> float:
        value = float(np.mean(self.losses)) if self.losses else float("nan")
        self.losses = []
        return value


# -- optimiser mutants -------------------------------------------------------------------------------------
class _Adam(reference.KerasAdam):
    """Keras's Adam with the mistakes a port makes in it, one at a time."""

    def __init__(
        self,
        weights: Mapping[str, NDArray[np.floating]],
        spec: ModelSpec,
        eps_placement: str = "keras",
        bias_correction: bool = True,
        lr_decay: tuple[float, int] = (1.0, 1),
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(weights, spec)
        self.eps_placement = eps_placement
        self.bias_correction = bias_correction
        self.lr_decay = lr_decay  # (factor, period): lr·factor^⌊(t − 1)/period⌋ at step t
        self.weight_decay = weight_decay  # decoupled (AdamW's): w −= lr·decay·w before each update

    def apply(self, grads: Mapping[str, NDArray[np.floating]]) -> dict[str, F64]:
        s = self.spec
        b1, b2, e = s.adam_beta_1, s.adam_beta_2, s.adam_epsilon
        self.iterations += 1
        t = self.iterations
        lr = s.learning_rate * self.lr_decay[0] ** ((t - 1) // self.lr_decay[1])
        bc1, bc2 = (1 - b1**t, 1 - b2**t) if self.bias_correction else (1.0, 1.0)
        for k, g in grads.items():
            g64 = np.asarray(g, np.float64)
            self._m[k] = b1 * self._m[k] + (1 - b1) * g64
            self._v[k] = b2 * self._v[k] + (1 - b2) * g64 * g64
            if self.eps_placement == "inside-sqrt":
                step = lr * math.sqrt(bc2) / bc1 * self._m[k] / np.sqrt(self._v[k] + e)
            elif self.eps_placement == "after-bias-correction":  # torch's Adam
                step = lr / bc1 * self._m[k] / (np.sqrt(self._v[k] / bc2) + e)
            else:
                step = lr * math.sqrt(bc2) / bc1 * self._m[k] / (np.sqrt(self._v[k]) + e)
            self.weights[k] = self.weights[k] * (1.0 - lr * self.weight_decay) - step
        return self.weights


class AdamBeta1(PortBackend):
    """β1 = 0.85 instead of 0.9."""

    def optimizer_spec(self) -> ModelSpec:
        return dataclasses.replace(self.spec, adam_beta_1=0.85)


class AdamBeta2(PortBackend):
    """β2 = 0.99 instead of 0.999 (the issue's example: ahead at every epoch)."""

    def optimizer_spec(self) -> ModelSpec:
        return dataclasses.replace(self.spec, adam_beta_2=0.99)


class AdamEpsilonTorchDefault(PortBackend):
    """ε = 1e-8 (torch's default) instead of Keras's 1e-7."""

    def optimizer_spec(self) -> ModelSpec:
        return dataclasses.replace(self.spec, adam_epsilon=1e-8)


class AdamLearningRate(PortBackend):
    """Learning rate 5e-4 instead of 1e-3."""

    def optimizer_spec(self) -> ModelSpec:
        return dataclasses.replace(self.spec, learning_rate=5e-4)


class AdamEpsilonInsideSqrt(PortBackend):
    """ε added inside the square root: √(v + ε)."""

    def make_optimizer(self, weights: Mapping[str, NDArray[np.floating]]) -> reference.KerasAdam:
        return _Adam(weights, self.spec, eps_placement="inside-sqrt")


class AdamEpsilonAfterBiasCorrection(PortBackend):
    """ε added after bias correction (torch's Adam) instead of before (Keras's)."""

    def make_optimizer(self, weights: Mapping[str, NDArray[np.floating]]) -> reference.KerasAdam:
        return _Adam(weights, self.spec, eps_placement="after-bias-correction")


class AdamNoBiasCorrection(PortBackend):
    """No bias correction of the moments."""

    def make_optimizer(self, weights: Mapping[str, NDArray[np.floating]]) -> reference.KerasAdam:
        return _Adam(weights, self.spec, bias_correction=False)


# -- loss mutants ---------------------------------------------------------------------------------------------
class OneKLSample(PortBackend):
    """The KL estimated from the first ε sample only (kl_samples = 1)."""

    def loss_terms(self, x: F64, x_mean: F64, z_mean: F64, z_log_var: F64, eps: F64) -> tuple[F64, F64]:
        return super().loss_terms(x, x_mean, z_mean, z_log_var, eps[:1])

    def gradients64(self, x: Array, y: Array, eps: Array) -> dict[str, F64]:
        return super().gradients64(x, y, np.asarray(eps)[:1])


class SigmaX1(PortBackend):
    """σ_x = 1 instead of 0.5 in the likelihood (gradients consistent with it)."""

    def loss_terms(self, x: F64, x_mean: F64, z_mean: F64, z_log_var: F64, eps: F64) -> tuple[F64, F64]:
        kl, _ = super().loss_terms(x, x_mean, z_mean, z_log_var, eps)
        return kl, reference.gaussian_nll(x, x_mean, dataclasses.replace(self.spec, sigma_x=1.0))

    def gradients64(self, x: Array, y: Array, eps: Array) -> dict[str, F64]:
        return reference.gradients(self.adam.weights, x, y, eps, dataclasses.replace(self.spec, sigma_x=1.0))


class NoNLLConstant(PortBackend):
    """The NLL without its constant 784·(log σ_x + ½ log 2π) (the same gradients)."""

    def loss_terms(self, x: F64, x_mean: F64, z_mean: F64, z_log_var: F64, eps: F64) -> tuple[F64, F64]:
        kl, nll = super().loss_terms(x, x_mean, z_mean, z_log_var, eps)
        return kl, nll - self.spec.nll_constant


class KLSignFlipped(PortBackend):
    """log p(z) − log q(z) instead of log q(z) − log p(z)."""

    def loss_terms(self, x: F64, x_mean: F64, z_mean: F64, z_log_var: F64, eps: F64) -> tuple[F64, F64]:
        kl, nll = super().loss_terms(x, x_mean, z_mean, z_log_var, eps)
        return -kl, nll


class AnalyticKL(PortBackend):
    """The analytic KL instead of the tutorial's Monte Carlo estimate."""

    def loss_terms(self, x: F64, x_mean: F64, z_mean: F64, z_log_var: F64, eps: F64) -> tuple[F64, F64]:
        _, nll = super().loss_terms(x, x_mean, z_mean, z_log_var, eps)
        return reference.analytic_kl(z_mean, z_log_var), nll


# -- model mutants ---------------------------------------------------------------------------------------------
class LeakyReLU(PortBackend):
    """Leaky ReLU (slope 0.01) in the hidden layers instead of ReLU."""

    def activation(self, a: F64) -> F64:
        return np.where(a > 0, a, 0.01 * a)


class LabelFirst(PortBackend):
    """The one-hot label concatenated before the image (and before z) instead of after."""

    def join(self, first: F64, label: F64) -> F64:
        return np.concatenate([label, first], 1)


class Float16(PortBackend):
    """Every layer's inputs, weights and outputs in float16 (mixed precision without float32 accumulation)."""

    def precision(self, a: F64) -> F64:
        return np.asarray(a, np.float16).astype(np.float64)


# -- initialisation mutants ------------------------------------------------------------------------------------
class HeUniformInit(PortBackend):
    """He-uniform kernels, limit √(6/fan_in), instead of Glorot's √(6/(fan_in + fan_out))."""

    def init_weights(self, seed: int) -> dict[str, NDArray[np.float32]]:
        w = super().init_weights(seed)
        for k, v in w.items():
            if k.endswith(".kernel"):
                w[k] = (v * math.sqrt((v.shape[0] + v.shape[1]) / v.shape[0])).astype(np.float32)
        return w


class GlorotNormalInit(PortBackend):
    """Glorot-normal kernels (the same variance, another distribution)."""

    def init_weights(self, seed: int) -> dict[str, NDArray[np.float32]]:
        w = super().init_weights(seed)
        rng = np.random.default_rng(seed)
        for k, v in w.items():
            if k.endswith(".kernel"):
                w[k] = rng.normal(scale=math.sqrt(2 / sum(v.shape)), size=v.shape).astype(np.float32)
        return w


class TorchDefaultInit(PortBackend):
    """torch.nn.Linear's default: kernels and biases uniform in ±1/√fan_in."""

    def init_weights(self, seed: int) -> dict[str, NDArray[np.float32]]:
        w = super().init_weights(seed)
        rng = np.random.default_rng(seed)
        for k, v in w.items():
            fan_in = v.shape[0] if k.endswith(".kernel") else w[k.replace(".bias", ".kernel")].shape[0]
            w[k] = rng.uniform(-1, 1, size=v.shape).astype(np.float32) / np.float32(math.sqrt(fan_in))
        return w


# -- training-path mutants: noise -------------------------------------------------------------------------------
class ZeroNoise(PortBackend):
    """train_step draws ε = 0 (the issue's example: NaN from the first evaluation)."""

    def draw_noise(self, batch: int) -> F32:
        return np.zeros_like(super().draw_noise(batch))


class HalfScaleNoise(PortBackend):
    """train_step's ε has standard deviation 0.5."""

    def draw_noise(self, batch: int) -> F32:
        return (0.5 * super().draw_noise(batch)).astype(np.float32)


class UniformNoise(PortBackend):
    """train_step's ε uniform with unit variance instead of normal."""

    def draw_noise(self, batch: int) -> F32:
        shape = (self.spec.kl_samples, batch, self.spec.latent_dim)
        return (math.sqrt(3.0) * self.noise_rng.uniform(-1, 1, shape)).astype(np.float32)


class ReseededNoise(PortBackend):
    """The noise generator re-seeded every step: the same ε each step."""

    def draw_noise(self, batch: int) -> F32:
        self.noise_rng = np.random.default_rng(self.seed)
        return super().draw_noise(batch)


class ReseededPerEpochNoise(PortBackend):
    """The noise generator re-seeded at every epoch (`set_order`): the same ε sequence each epoch."""

    def set_order(self, order: NDArray[np.int64]) -> None:
        super().set_order(order)
        self.noise_rng = np.random.default_rng(self.seed)


class SharedKLNoise(PortBackend):
    """One ε drawn per step and repeated for every KL sample."""

    def draw_noise(self, batch: int) -> F32:
        one = super().draw_noise(batch)[:1]
        return np.repeat(one, self.spec.kl_samples, axis=0)


class NoiseNotUsed(PortBackend):
    """Reports a standard-normal ε but trains with its half (a scale applied after the draw)."""

    def train_step(self, index: int) -> None:
        rows = self.batch_rows(index)
        self.last_eps = self.draw_noise(len(rows))
        self.train_step_with_eps(self.x[rows], self.y[rows], (0.5 * self.last_eps).astype(np.float32))


# -- training-path mutants: batch order -------------------------------------------------------------------------
class UnshuffledOrder(PortBackend):
    """set_order ignored: every epoch in the data's own order."""

    def set_order(self, order: NDArray[np.int64]) -> None:
        self.order = np.arange(len(self.x))


class ReshuffledPerStep(PortBackend):
    """Each step draws its own random batch instead of taking batch `index` of the epoch's order."""

    def batch_rows(self, index: int) -> NDArray[np.int64]:
        n = len(super().batch_rows(index))
        return self.noise_rng.permutation(len(self.x))[:n].astype(np.int64)


class DropLastBatch(PortBackend):
    """The short last batch of an epoch skipped (drop_remainder)."""

    def train_step(self, index: int) -> None:
        if len(self.batch_rows(index)) < self.spec.batch_size:
            return
        super().train_step(index)


class PadLastBatch(PortBackend):
    """The short last batch filled up to a full one from the start of the epoch's order."""

    def batch_rows(self, index: int) -> NDArray[np.int64]:
        b = self.spec.batch_size
        return np.resize(self.order[index * b :], b)


# -- mutants that follow the recipe where the recipe check looks, and leave it later ----------------------------
class LateLearningRateDecay(PortBackend):
    """The learning rate ×0.9 every 1,000 steps (a schedule on Adam's step count): the first 1,000 exact."""

    period = 1000

    def make_optimizer(self, weights: Mapping[str, NDArray[np.floating]]) -> reference.KerasAdam:
        return _Adam(weights, self.spec, lr_decay=(0.9, self.period))


class FullDataBeta2(PortBackend):
    """β2 = 0.99 once the training set is larger than the probes' (> 10,000 examples): the recipe on the probes."""

    threshold = 10_000
    examples = 0

    def optimizer_spec(self) -> ModelSpec:
        if self.examples > self.threshold:
            return dataclasses.replace(self.spec, adam_beta_2=0.99)
        return self.spec

    def load_train_data(self, x: F32, y: F32) -> None:
        super().load_train_data(x, y)
        self.examples = len(x)
        self.adam.spec = self.optimizer_spec()


class DecoupledWeightDecay(PortBackend):
    """Decoupled weight decay 0.001 (AdamW's: w −= lr·0.001·w each step) on top of the recipe's Adam."""

    def make_optimizer(self, weights: Mapping[str, NDArray[np.floating]]) -> reference.KerasAdam:
        return _Adam(weights, self.spec, weight_decay=1e-3)


class PerExampleFixedNoise(PortBackend):
    """Each example's ε drawn once (when the data is loaded) and reused in every epoch."""

    def load_train_data(self, x: F32, y: F32) -> None:
        super().load_train_data(x, y)
        self.fixed = self.draw_noise(len(x))

    def train_step(self, index: int) -> None:
        rows = self.batch_rows(index)
        self.last_eps = np.ascontiguousarray(self.fixed[:, rows, :])
        self.train_step_with_eps(self.x[rows], self.y[rows], self.last_eps)


class SeedIndependentNoise(PortBackend):
    """The noise generator seeded with a constant whatever the seed (the initial weights do follow it)."""

    def noise_generator(self, seed: int) -> np.random.Generator:
        return np.random.default_rng(12345)


class ShortBatchDenominator(PortBackend):
    """Every batch's loss summed and divided by 64 (the batch size), not by its size: the short one weighs less."""

    def train_step_with_eps(self, x: F32, y: F32, eps: F32) -> None:
        kl, nll = self._parts64(x, y, eps)
        self.losses.append(float(np.sum(kl + nll)) / self.spec.batch_size)
        share = len(x) / self.spec.batch_size
        self.adam.apply({k: share * g for k, g in self.gradients64(x, y, eps).items()})


# -- clock mutants: steps that run in the background -------------------------------------------------------------
class _StepThread:
    """A background thread that takes queued steps, each only once the main thread has released it.

    It holds its backend's step method weakly, and stops when the backend is collected (`_AsyncStep`).
    """

    def __init__(self, step: weakref.WeakMethod[Any]) -> None:
        self._step = step
        self._cv = threading.Condition()
        self._queue: collections.deque[tuple[F32, F32, F32]] = collections.deque()
        self.queued = self.released = self.done = 0
        self._stopped = False
        self._error: BaseException | None = None
        threading.Thread(target=self._work, name="mutant-steps", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stopped or self.done < self.released)
                if self._stopped:
                    return
                batch = self._queue.popleft()
            step = self._step()
            try:
                if step is not None:
                    step(*batch)
            except BaseException as exc:
                self._error = exc
            del step
            with self._cv:
                self.done += 1
                self._cv.notify_all()

    def put(self, x: F32, y: F32, eps: F32) -> None:
        """Queue a step (not released)."""
        with self._cv:
            self._queue.append((x, y, eps))
            self.queued += 1

    def release(self) -> None:
        """Let the thread take every step queued so far."""
        with self._cv:
            self.released = self.queued
            self._cv.notify_all()

    def wait(self, upto: int) -> None:
        """Wait until `upto` steps are done (raising what a step raised)."""
        with self._cv:
            self._cv.wait_for(lambda: self.done >= upto)
        if self._error is not None:
            raise self._error

    def drain(self) -> None:
        """Release every queued step and wait for all of them."""
        self.release()
        self.wait(self.queued)

    def stop(self) -> None:
        """End the thread."""
        with self._cv:
            self._stopped = True
            self._cv.notify_all()


class _AsyncStep(PortBackend):
    """The port's arithmetic, each step handed to a background thread; `synchronize` is the default no-op.

    Deterministic by construction, so that the tests that catch these mutants never depend on timing: the
    thread takes only steps the main thread has *released*, and nothing releases a step except a call that the
    variant defines to (never the passage of time). A call that waits releases everything queued and waits
    until it is done; a call that does not wait reads what was finished before it. Reads of the model (weights,
    state, encode…) wait for everything queued, as a device read does, unless a variant says otherwise.
    """

    def __init__(self, spec: ModelSpec, seed: int, device: str = "cpu", mode: str | None = None) -> None:
        super().__init__(spec, seed, device, mode)
        self._thread = _StepThread(weakref.WeakMethod(self._take_step))
        weakref.finalize(self, self._thread.stop)

    def _take_step(self, x: F32, y: F32, eps: F32) -> None:
        PortBackend.train_step_with_eps(self, x, y, eps)

    def _drain(self) -> None:
        self._thread.drain()

    def train_step(self, index: int) -> None:
        rows = self.batch_rows(index)
        self.last_eps = self.draw_noise(len(rows))  # drawn here, in order: the thread only does arithmetic
        self.train_step_with_eps(self.x[rows], self.y[rows], self.last_eps)

    def train_step_with_eps(self, x: F32, y: F32, eps: F32) -> None:
        self._thread.put(x, y, eps)

    def get_weights(self) -> WeightDict:
        self._drain()
        return super().get_weights()

    def set_weights(self, weights: Mapping[str, NDArray[np.floating]]) -> None:
        self._drain()
        super().set_weights(weights)

    def encode(self, x: F32, y: F32) -> tuple[F32, F32]:
        self._drain()
        return super().encode(x, y)

    def decode(self, z: F32, y: F32) -> F32:
        self._drain()
        return super().decode(z, y)

    def loss_parts(self, x: F32, y: F32, eps: F32) -> tuple[F32, F32]:
        self._drain()
        return super().loss_parts(x, y, eps)

    def gradients(self, x: F32, y: F32, eps: F32) -> WeightDict:
        self._drain()
        return super().gradients(x, y, eps)

    def adam_state(self) -> dict[str, NDArray[np.generic]]:
        self._drain()
        return super().adam_state()

    def get_train_state(self) -> dict[str, NDArray[np.generic]]:
        self._drain()
        return super().get_train_state()

    def set_train_state(self, state: Mapping[str, NDArray[np.generic]]) -> None:
        self._drain()
        super().set_train_state(state)

    def take_loss(self) -> float:
        self._drain()
        return super().take_loss()


class AsyncStepNoSync(_AsyncStep):
    """Steps in a background thread; take_loss waits, but synchronize() returns at once and get_weights reads
    what has finished (honest losses, a clock that stops before the work is done)."""

    def get_weights(self) -> WeightDict:
        self._thread.wait(self._thread.released)  # what was released has finished; nothing more is released
        return PortBackend.get_weights(self)


class AsyncStepNoWait(_AsyncStep):
    """Steps in a background thread; take_loss() does not wait: it returns the mean of the steps finished so
    far (those released at the call before) and releases the rest to finish in the background."""

    def take_loss(self) -> float:
        self._thread.wait(self._thread.released)  # the steps released at the previous call: "finished so far"
        value = PortBackend.take_loss(self)
        self._thread.release()
        return value


@dataclass(frozen=True)
class AuditRun:
    """The short audited training run `kill` trains a mutant in when the checks let it through.

    Attributes:
        examples: training examples (the first of real MNIST; 136: two full batches and one of 8).
        epochs: epochs to train.
        from_step: where the run starts, as a resumed run would, with Adam's step count there and its
            moments zero, so that a deviation that begins late falls inside a short run.
    """

    examples: int = 136
    epochs: int = 2
    from_step: int = 0


@dataclass(frozen=True)
class Mutant:
    """A mutant backend: its kind (which decision of the recipe it gets wrong), its class, and the audited
    run that shows it where the checks do not."""

    kind: str
    cls: type[PortBackend]
    run: AuditRun = AuditRun()

    @property
    def name(self) -> str:
        return self.cls.__name__

    @property
    def description(self) -> str:
        return (self.cls.__doc__ or "").strip().splitlines()[0]


#: Every kind of deviation the suite must catch; tests/test_mutants.py fails when one has no mutant.
KINDS = (
    "optimizer",
    "kl-samples",
    "noise",
    "likelihood",
    "kl-form",
    "batch-order",
    "last-batch",
    "initialisation",
    "activation",
    "label-order",
    "precision",
    "late-in-run",
    "data-size",
    "seeding",
    "clock",
)

MUTANTS: tuple[Mutant, ...] = (
    Mutant("optimizer", AdamBeta1),
    Mutant("optimizer", AdamBeta2),
    Mutant("optimizer", AdamEpsilonTorchDefault),
    Mutant("optimizer", AdamEpsilonInsideSqrt),
    Mutant("optimizer", AdamEpsilonAfterBiasCorrection),
    Mutant("optimizer", AdamLearningRate),
    Mutant("optimizer", AdamNoBiasCorrection),
    Mutant("kl-samples", OneKLSample),
    Mutant("noise", ZeroNoise),
    Mutant("noise", HalfScaleNoise),
    Mutant("noise", UniformNoise),
    Mutant("noise", ReseededNoise),
    Mutant("noise", ReseededPerEpochNoise),
    Mutant("noise", SharedKLNoise),
    Mutant("noise", NoiseNotUsed),
    Mutant("likelihood", SigmaX1),
    Mutant("likelihood", NoNLLConstant),
    Mutant("kl-form", KLSignFlipped),
    Mutant("kl-form", AnalyticKL),
    Mutant("batch-order", UnshuffledOrder),
    Mutant("batch-order", ReshuffledPerStep),
    Mutant("last-batch", DropLastBatch),
    Mutant("last-batch", PadLastBatch),
    Mutant("initialisation", HeUniformInit),
    Mutant("initialisation", GlorotNormalInit),
    Mutant("initialisation", TorchDefaultInit),
    Mutant("activation", LeakyReLU),
    Mutant("label-order", LabelFirst),
    Mutant("precision", Float16),
    Mutant("late-in-run", LateLearningRateDecay, AuditRun(epochs=336, from_step=998)),
    Mutant("data-size", FullDataBeta2, AuditRun(examples=10_016, epochs=1, from_step=152)),
    Mutant("optimizer", DecoupledWeightDecay),
    Mutant("noise", PerExampleFixedNoise),
    Mutant("seeding", SeedIndependentNoise),
    Mutant("last-batch", ShortBatchDenominator),
    Mutant("clock", AsyncStepNoSync),
    Mutant("clock", AsyncStepNoWait),
)

#: Cheap checks first: `kill` stops at the first check that fails.
KILL_ORDER = (
    "weight_layout",
    "initialisation",
    "loss_parts",
    "encode_decode",
    "gradients",
    "first_step",
    "clock",
    "training_path",
    "trajectory",
)


def kill(
    cls: type[Backend], probe: Probe, stop_at_first: bool = True, run: AuditRun | None = AuditRun()
) -> list[CheckResult]:
    """Run the conformance checks on a fresh `cls` backend, in `KILL_ORDER`, then an audited run.

    Args:
        cls: a Backend class that runs in this process.
        probe: the checks' inputs.
        stop_at_first: stop at the first check that fails (enough to kill a mutant).
        run: the audited training run after the checks (`audited_run`); None: the checks only.

    Returns:
        The results, in order; the last one failed if any did.
    """
    spec = probe.spec
    results: list[CheckResult] = []
    for check in KILL_ORDER:
        if check == "initialisation":
            initial = [cls(spec, seed).get_weights() for seed in (0, 1)]
            result = check_initialisation(initial, spec, probe.tolerances, backend=str(cls.name))
        else:
            result = RECIPE_CHECKS[check](cls(spec, 0), probe)
        results.append(result)
        if stop_at_first and not result.ok:
            return results
    if run is not None:
        audit = audited_run(cls, run, spec)
        results.append(
            CheckResult(
                check="audit",
                backend=str(cls.name),
                ok=audit.ok,
                differences=tuple(audit.failed[:12]),
                worst_ratio=max(audit.worst.values(), default=0.0),
                worst=max(audit.worst, key=lambda k: audit.worst[k], default=""),
            )
        )
    return results


def audited_run(cls: type[Backend], run: AuditRun, spec: ModelSpec) -> AuditRecord:
    """Train a fresh `cls` backend (seed 0) as `run` says, audited, and return what the audit found.

    The run is the training loop's own (`training.loop.train`, without the recipe check), on the first
    `run.examples` of real MNIST, evaluated on 200 validation examples.
    """
    x, y, x_val, y_val = load_mnist()
    x, y = x[: run.examples], y[: run.examples]
    backend = cls(spec, 0)
    resume = _fast_forward(backend, len(x), run.from_step) if run.from_step else None
    config = TrainConfig(epochs=run.epochs, recipe_check=False, seed=0)
    outcome = train(backend, x, y, Evaluator(x_val[:200], y_val[:200], spec), config, resume=resume)
    assert outcome.audit is not None
    return outcome.audit


def _fast_forward(backend: Backend, n: int, step: int) -> Checkpoint:
    """A checkpoint at `step` of a run on `n` examples: the initial weights, Adam's step count set to `step`.

    The mutants are ports, whose training state is the reference Adam's (its "iterations") and the noise
    generator's.
    """
    rng = np.random.default_rng(0)  # the loop's order generator for seed 0, as a checkpoint would hold it
    per_epoch = math.ceil(n / backend.spec.batch_size)
    for _ in range(step // per_epoch):
        rng.permutation(n)
    order = rng.permutation(n) if step % per_epoch else np.arange(n)
    state = dict(backend.get_train_state())
    state["iterations"] = np.array(step, np.int64)
    loop = LoopState(
        step=step,
        order_rng=dict(rng.bit_generator.state),
        history=[],
        chunk_ms=[],
        train_s=0.0,
        eval_s=0.0,
        first_step_s=0.0,
        load_s=0.0,
    )
    return Checkpoint(loop, dict(backend.get_weights()), state, order.astype(np.int64))
