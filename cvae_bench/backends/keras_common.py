"""What the three Keras 3 backends share: the tutorial's functional CVAE, its loss, weights and training.

Keras fixes its backend when it is first imported, so this module is imported only in a process whose
`KERAS_BACKEND` is already set (the worker, runtime/worker.py, does that); `keras_backend.py` holds the small
per-framework subclasses.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import keras
import numpy as np
from keras import layers, ops
from numpy.typing import NDArray

from cvae_bench.backends.base import F32, Backend, WeightDict
from cvae_bench.core.errors import BackendUnavailableError
from cvae_bench.models.spec import ModelSpec

Tensor = Any  # a backend tensor (torch.Tensor, tf.Tensor, jax.Array)

#: How each mode is compiled: Keras `compile(jit_compile=…, run_eagerly=…)`.
COMPILE_ARGS: dict[str, dict[str, bool]] = {
    "jit": {"jit_compile": True, "run_eagerly": False},
    "graph": {"jit_compile": False, "run_eagerly": False},  # tf.function without XLA
    "eager": {"jit_compile": False, "run_eagerly": True},
}


def build_encoder(spec: ModelSpec) -> keras.Model:
    """The tutorial's encoder f_φ(x, y) → (z_mean, z_log_var) as a functional model."""
    image = keras.Input(shape=spec.image_shape, name="image")
    label = keras.Input(shape=(spec.num_classes,), name="label")
    h = layers.Concatenate(name="concat")([layers.Flatten(name="flatten")(image), label])
    for i, width in enumerate(spec.encoder_hidden):
        h = layers.Dense(width, activation=spec.hidden_activation, name=f"dense_{i}")(h)
    out = layers.Dense(2 * spec.latent_dim, name=f"dense_{len(spec.encoder_hidden)}")(h)
    z_mean = out[:, : spec.latent_dim]
    z_log_var = out[:, spec.latent_dim :]
    return keras.Model([image, label], [z_mean, z_log_var], name="encoder")


def build_decoder(spec: ModelSpec) -> keras.Model:
    """The tutorial's decoder f_θ(z, y) → x_mean (B, 28, 28) as a functional model."""
    z = keras.Input(shape=(spec.latent_dim,), name="z")
    label = keras.Input(shape=(spec.num_classes,), name="label")
    h = layers.Concatenate(name="concat")([z, label])
    for i, width in enumerate(spec.decoder_hidden):
        h = layers.Dense(width, activation=spec.hidden_activation, name=f"dense_{i}")(h)
    h = layers.Dense(spec.image_size, name=f"dense_{len(spec.decoder_hidden)}")(h)
    h = layers.Reshape(spec.image_shape, name="reshape")(h)
    x_mean = layers.Activation(spec.output_activation, name="x_mean")(h)
    return keras.Model([z, label], x_mean, name="decoder")


class CVAE(keras.Model):  # type: ignore[misc]
    """Encoder + decoder whose call returns the per-example loss parts, stacked as (B, 2) = (KL, NLL).

    Called with `(x, y)` it draws the training ε from its own `SeedGenerator` (a tracked variable, so it
    is repeatable and works inside jax.jit); called with `(x, y, eps)` it uses the given ε. The loss the
    optimiser sees is `compute_loss`: the batch mean of KL + NLL, so Keras's own compiled train function
    (`make_train_function`) trains it on every backend.
    """

    def __init__(self, spec: ModelSpec, seed: int) -> None:
        super().__init__(name="cvae")
        self.spec = spec
        self.encoder = build_encoder(spec)
        self.decoder = build_decoder(spec)
        self.seed_generator = keras.random.SeedGenerator(seed, name="eps_seed")

    def call(self, inputs: tuple[Tensor, ...], training: bool = False) -> Tensor:
        """Per-example (KL, NLL) as a (B, 2) tensor; see docs/design.md for the loss."""
        s = self.spec
        x, y = inputs[0], inputs[1]
        z_mean, z_log_var = self.encoder([x, y], training=training)
        if len(inputs) > 2:
            eps = inputs[2]
        else:
            eps = keras.random.normal((s.kl_samples, ops.shape(x)[0], s.latent_dim), seed=self.seed_generator)
        sigma = ops.exp(0.5 * z_log_var)
        z = z_mean + sigma * eps  # (K, B, latent)
        # log N(z; z_mean, σ) − log N(z; 0, 1) with the ½ log 2π constants cancelled by hand, so float32
        # keeps the (often small) difference.
        kl = ops.mean(ops.sum(0.5 * (ops.square(z) - ops.square((z - z_mean) / sigma) - z_log_var), -1), 0)
        x_mean = self.decoder([z[0], y], training=training)
        sq = ops.square((x - x_mean) / s.sigma_x)
        nll = 0.5 * ops.sum(ops.reshape(sq, (-1, s.image_size)), 1) + s.nll_constant
        return ops.stack([kl, nll], axis=1)

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Tensor = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Tensor:
        """−ELBO averaged over the batch."""
        return batch_loss(y_pred)


def batch_loss(parts: Tensor) -> Tensor:
    """The batch-mean loss from the (B, 2) per-example (KL, NLL) parts."""
    return ops.mean(ops.sum(parts, axis=1))


class KerasBackend(Backend):
    """The tutorial's CVAE on Keras 3; subclasses fill in what differs per framework.

    Training calls Keras's own compiled train function (`model.make_train_function()`), the code path
    `fit` uses, one batch per call, without converting its logs (so nothing waits for the device).
    `take_loss` reads Keras's loss tracker, the example-weighted mean since its last reset, which is the
    mean over steps when the batches are full.
    """

    framework = "keras"
    #: The value `keras.backend.backend()` must have in this process.
    keras_backend: ClassVar[str]

    def __init__(self, spec: ModelSpec, seed: int, device: str = "cpu", mode: str | None = None) -> None:
        super().__init__(spec, seed, device, mode)
        have = keras.backend.backend()
        if have != self.keras_backend:
            raise BackendUnavailableError(
                f"{self.name} needs KERAS_BACKEND={self.keras_backend} in its process, this process has "
                f"{have}; run it through cvae-bench's worker (cvae_bench.runtime.worker)"
            )
        kind = device.split(":")[0]
        if kind == "cuda" and not self._cuda_available():
            raise BackendUnavailableError(
                f"backend {self.name!r}: --device cuda asked for, but {self.keras_backend} sees no CUDA device"
            )
        self._device = "cuda:0" if kind == "cuda" else "cpu"
        self._keras_device = "gpu:0" if kind == "cuda" else "cpu"
        # Initial weights (glorot-uniform draws) are a function of the seed.
        keras.utils.set_random_seed(seed)
        with self._scope():
            self.model = CVAE(spec, seed)
            adam = keras.optimizers.Adam(
                learning_rate=spec.learning_rate,
                beta_1=spec.adam_beta_1,
                beta_2=spec.adam_beta_2,
                epsilon=spec.adam_epsilon,
            )
            self.model.compile(optimizer=adam, **COMPILE_ARGS[self.mode])
            # Build the model's call once (no ε draw: ε is passed) and the optimiser's slots, so that
            # the train function can be called directly.
            b = 2
            self.model(
                (
                    np.zeros((b, *spec.image_shape), np.float32),
                    np.zeros((b, spec.num_classes), np.float32),
                    np.zeros((spec.kl_samples, b, spec.latent_dim), np.float32),
                )
            )
            self.model.optimizer.build(self.model.trainable_variables)
            self.model.make_train_function()
        self._optimizer_init = [self._host(v.value).copy() for v in self.model.optimizer.variables]
        self._dense: dict[str, Any] = {}
        for part, net in (("encoder", self.model.encoder), ("decoder", self.model.decoder)):
            dense = [lay for lay in net.layers if isinstance(lay, layers.Dense)]
            self._dense.update({f"{part}.dense_{i}": lay for i, lay in enumerate(dense)})
        names = {id(lay.kernel): f"{p}.kernel" for p, lay in self._dense.items()}
        names.update({id(lay.bias): f"{p}.bias" for p, lay in self._dense.items()})
        self._trainable_names = [names[id(v)] for v in self.model.trainable_variables]
        self._x: Tensor = None
        self._y: Tensor = None
        self._order_x: Tensor = None
        self._order_y: Tensor = None
        self._logs: dict[str, Tensor] | None = None
        self._steps = 0
        self._n_train = 0
        self._last_noise_batch: int | None = None  # the batch size of the last train_step (last_train_noise)
        #: last_train_noise's replay generator and draw, per ε shape.
        self._noise_replays: dict[tuple[int, ...], tuple[Any, Callable[[], Tensor]]] = {}

    # -- per-framework hooks ----------------------------------------------------------------------------
    @abstractmethod
    def _cuda_available(self) -> bool:
        """Whether the framework sees a CUDA device."""

    @abstractmethod
    def _run_train_function(self, data: tuple[Any, ...]) -> dict[str, Tensor]:
        """One call of the model's compiled train function on `data`; returns its (device) logs."""

    @abstractmethod
    def _grad_list(self, inputs: tuple[Tensor, Tensor, Tensor]) -> list[Tensor]:
        """Gradients of the batch loss w.r.t. `model.trainable_variables`, in that order."""

    def _sync_variables(self) -> None:
        """Make the Keras variables current (jax keeps its training state outside them)."""

    @staticmethod
    def _host(t: Tensor) -> NDArray[Any]:
        """A host NumPy array of a tensor.

        Subclasses use the framework's own conversion, which (unlike `ops.convert_to_numpy` under NumPy
        2) does not warn about `__array__(copy=…)`.
        """
        return np.asarray(ops.convert_to_numpy(t))

    # -- shared plumbing --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        """Keras's device scope: new tensors and variables go to this backend's device."""
        with keras.device(self._keras_device):
            yield

    def _t(self, a: NDArray[Any]) -> Tensor:
        return ops.convert_to_tensor(np.ascontiguousarray(a, np.float32))

    def _np(self, t: Tensor) -> F32:
        return np.asarray(self._host(t), np.float32)

    def describe(self) -> dict[str, Any]:
        """Adds the Keras compile settings behind the mode."""
        return {**super().describe(), "keras_compile": COMPILE_ARGS[self.mode]}

    def keras_model(self, part: str) -> keras.Model:
        """The functional `part` ("encoder" or "decoder") with current variables, e.g. for ONNX export.

        Use this rather than `self.model.decoder`: on jax, the variables lag behind training until synced.

        Raises:
            ValueError: `part` is neither "encoder" nor "decoder".
        """
        if part not in ("encoder", "decoder"):
            raise ValueError(f"part must be 'encoder' or 'decoder', got {part!r}")
        self._sync_variables()
        net: keras.Model = getattr(self.model, part)
        return net

    def export_onnx(self, path: str, part: str = "decoder", opset: int | None = None) -> dict[str, str]:
        """Keras's `Model.export(format="onnx")` of the functional `part` (see backends.keras_export)."""
        from cvae_bench.backends.keras_export import export_keras

        return export_keras(self.keras_model(part), path, opset, self.name)

    # -- weights ----------------------------------------------------------------------------------------
    def get_weights(self) -> WeightDict:
        self._sync_variables()
        out: WeightDict = {}
        for prefix, lay in self._dense.items():
            out[f"{prefix}.kernel"] = self._np(lay.kernel.value).copy()
            out[f"{prefix}.bias"] = self._np(lay.bias.value).copy()
        return out

    def set_weights(self, weights: Mapping[str, NDArray[np.floating]]) -> None:
        self._sync_variables()
        with self._scope():
            for prefix, lay in self._dense.items():
                for attr in ("kernel", "bias"):
                    value = np.asarray(weights[f"{prefix}.{attr}"], np.float32)
                    var = getattr(lay, attr)
                    if value.shape != tuple(var.shape):
                        raise ValueError(f"{prefix}.{attr}: expected {tuple(var.shape)}, got {value.shape}")
                    var.assign(value)
            # A fresh optimiser state: Adam's step count and moments back to their initial zeros.
            for var, init in zip(self.model.optimizer.variables, self._optimizer_init, strict=True):
                var.assign(init)

    # -- inference --------------------------------------------------------------------------------------
    def encode(self, x: F32, y: F32) -> tuple[F32, F32]:
        self._sync_variables()
        with self._scope():
            z_mean, z_log_var = self.model.encoder([self._t(x), self._t(y)], training=False)
        return self._np(z_mean), self._np(z_log_var)

    def decode(self, z: F32, y: F32) -> F32:
        self._sync_variables()
        with self._scope():
            return self._np(self.model.decoder([self._t(z), self._t(y)], training=False))

    def loss_parts(self, x: F32, y: F32, eps: F32) -> tuple[F32, F32]:
        self._sync_variables()
        with self._scope():
            parts = self._np(self.model((self._t(x), self._t(y), self._t(eps)), training=False))
        return parts[:, 0].copy(), parts[:, 1].copy()

    def gradients(self, x: F32, y: F32, eps: F32) -> WeightDict:
        self._sync_variables()
        with self._scope():
            grads = self._grad_list((self._t(x), self._t(y), self._t(eps)))
        return {name: self._np(g).copy() for name, g in zip(self._trainable_names, grads, strict=True)}

    # -- training ---------------------------------------------------------------------------------------
    def load_train_data(self, x: F32, y: F32) -> None:
        with self._scope():
            self._x, self._y = self._t(x), self._t(y)
        self._n_train = len(x)
        self._order_x, self._order_y = self._x, self._y

    def set_order(self, order: NDArray[np.int64]) -> None:
        if self._x is None:
            raise RuntimeError("load_train_data must come before set_order")
        with self._scope():
            idx = ops.convert_to_tensor(np.asarray(order, np.int32))
            # One gather per epoch keeps every batch a contiguous slice.
            self._order_x = ops.take(self._x, idx, axis=0)
            self._order_y = ops.take(self._y, idx, axis=0)

    def train_step(self, index: int) -> None:
        if self._order_x is None:
            raise RuntimeError("load_train_data must come before train_step")
        b = self.spec.batch_size
        sl = slice(index * b, (index + 1) * b)
        with self._scope():
            self._logs = self._run_train_function(((self._order_x[sl], self._order_y[sl]),))
        self._steps += 1
        self._last_noise_batch = len(range(self._n_train)[sl])

    def last_train_noise(self) -> F32:
        """Recomputes the last train_step's ε from the seed generator's state, so that steps record nothing.

        The step draws once from `model.seed_generator`, whose `next()` returns its state and then adds
        [0, 1] to it (Keras 3's SeedGenerator); drawing again from (current state − [0, 1]) with the same
        shape repeats the draw. The conformance suite replays the step with this ε, so a Keras whose
        generator works otherwise fails there rather than passing silently.
        """
        if self._last_noise_batch is None:
            raise RuntimeError("no train_step has run yet")
        self._sync_variables()
        state = self._host(self.model.seed_generator.state.value)
        return self._draw_from(state - np.array([0, 1], state.dtype), self._last_noise_batch)

    def first_train_noise(self, seed: int, batch: int) -> F32:
        """The first draw of a fresh `SeedGenerator(seed)`, as `CVAE` builds one: what its first step draws."""
        with self._scope():
            fresh = keras.random.SeedGenerator(seed, name="eps_first")
        return self._draw_from(self._host(fresh.state.value), batch)

    def _draw_from(self, state: NDArray[Any], batch: int) -> F32:
        """The ε a train step of `batch` examples draws when its seed generator's state is `state`.

        Built (and, where training is, compiled) once per batch shape, with a generator of its own whose
        state is set before each draw: the run-time audit asks a few times per epoch.
        """
        s = self.spec
        shape = (s.kl_samples, batch, s.latent_dim)
        with self._scope():
            if shape not in self._noise_replays:
                replay = keras.random.SeedGenerator(0, name="eps_replay")
                draw = self._compiled_like_training(lambda: keras.random.normal(shape, seed=replay))
                self._noise_replays[shape] = (replay, draw)
            replay, draw = self._noise_replays[shape]
            replay.state.assign(np.asarray(state))
            eps = draw()
        return self._np(eps)

    def _compiled_like_training(self, fn: Callable[[], Tensor]) -> Callable[[], Tensor]:
        """`fn`, compiled as the train function is where that changes what a random draw gives."""
        return fn

    def train_step_with_eps(self, x: F32, y: F32, eps: F32) -> None:
        with self._scope():
            self._logs = self._run_train_function(((self._t(x), self._t(y), self._t(eps)),))
        self._steps += 1

    def get_train_state(self) -> dict[str, NDArray[Any]]:
        self._sync_variables()
        out = {f"optimizer/{i}": self._host(v.value).copy() for i, v in enumerate(self.model.optimizer.variables)}
        out["noise_rng"] = self._host(self.model.seed_generator.state.value).copy()
        return out

    def set_train_state(self, state: Mapping[str, NDArray[Any]]) -> None:
        self._sync_variables()
        with self._scope():
            for i, var in enumerate(self.model.optimizer.variables):
                var.assign(np.asarray(state[f"optimizer/{i}"]))
            self.model.seed_generator.state.assign(np.asarray(state["noise_rng"]))

    def adam_state(self) -> dict[str, NDArray[Any]]:
        self._sync_variables()
        opt = self.model.optimizer
        out: dict[str, NDArray[Any]] = {"iterations": np.array(self._host(opt.iterations.value), np.int64)}
        for name, var in zip(self._trainable_names, self.model.trainable_variables, strict=True):
            # Keras 3's Adam keeps one momentum and one velocity per variable, found by the variable's index.
            index = opt._get_variable_index(var)
            out[f"m/{name}"] = self._np(opt._momentums[index].value).copy()
            out[f"v/{name}"] = self._np(opt._velocities[index].value).copy()
        return out

    def take_loss(self) -> float:
        if self._steps == 0 or self._logs is None:
            return float("nan")
        value = float(self._host(self._logs["loss"]))
        self._sync_variables()
        self.model.reset_metrics()
        self._steps, self._logs = 0, None
        return value
