"""The Keras 3 backends `keras-torch`, `keras-tensorflow` and `keras-jax`: what differs per framework.

Importable under any KERAS_BACKEND; each class refuses to start in a process whose Keras runs on another
framework. Framework modules are imported inside methods; loading this module imports Keras (and with it
the backend Keras was told to use), nothing else.

Default modes were chosen from ms/step at batch 64 and from compile cost; the measured figures are in the
README's results, with the commands that give them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from numpy.typing import NDArray

from cvae_bench.backends.base import Capabilities
from cvae_bench.backends.keras_common import COMPILE_ARGS, KerasBackend, Tensor, batch_loss

#: Measured float32 gradient error against the float64 reference is ≤ 6e-7 beyond rtol 1e-4 (σ up to
#: e³ included); 1e-5 leaves a wide margin.
_GRADIENT_ATOL = 1e-5


class KerasTorchBackend(KerasBackend):
    """Keras 3 on torch: gradients by torch autograd.

    Default "eager" (Keras `jit_compile=False`, which is also what Keras's `"auto"` picks on torch):
    "jit" is Keras's `jit_compile=True`, torch.compile of the whole train step: faster per step,
    but dynamo compiles for 15–30 s on the first step, again for the short last batch (now with a dynamic
    batch size) and again for `train_step_with_eps`, through ~25 graph breaks in Keras's code; a
    train-to-target run of ~5 epochs does not earn that back on this CPU, so jit is opt-in.

    Note that Keras-torch's seeded `keras.random.normal` reads the seed to the host each step
    (`int(seed)` in `torch_seed_generator`), a device sync on CUDA that this backend cannot avoid.
    """

    name = "keras-torch"
    keras_backend = "torch"
    capabilities = Capabilities(
        devices=("cpu", "cuda"),
        modes=("eager", "jit"),
        onnx_export=True,
        isolated=True,
        gradient_atol=_GRADIENT_ATOL,
        notes={
            "eager": "Keras jit_compile=False",
            "jit": "Keras jit_compile=True: torch.compile of the train step; 15-30 s compile per input shape",
        },
    )

    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        import torch

        return {"keras": keras.__version__, "torch": torch.__version__}

    def _cuda_available(self) -> bool:
        import torch

        return bool(torch.cuda.is_available())

    @staticmethod
    def _host(t: Tensor) -> NDArray[Any]:
        return np.asarray(t.detach().cpu().numpy())

    def _run_train_function(self, data: tuple[Any, ...]) -> dict[str, Tensor]:
        logs: dict[str, Tensor] = self.model.train_function([data])
        return logs

    def _grad_list(self, inputs: tuple[Tensor, Tensor, Tensor]) -> list[Tensor]:
        import torch

        params = [v.value for v in self.model.trainable_variables]
        with torch.enable_grad():
            loss = batch_loss(self.model(inputs, training=False))
            return list(torch.autograd.grad(loss, params))

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()


class KerasTensorflowBackend(KerasBackend):
    """Keras 3 on tensorflow: gradients by tf.GradientTape.

    Modes: "jit" (Keras `jit_compile=True`: tf.function compiled by XLA), "graph" (tf.function without
    XLA) and "eager" (`run_eagerly=True`). Default "jit": the fastest of the three here, and it compiles in
    about a second per batch shape.
    """

    name = "keras-tensorflow"
    keras_backend = "tensorflow"
    capabilities = Capabilities(
        devices=("cpu", "cuda"),
        modes=("jit", "graph", "eager"),
        onnx_export=True,
        isolated=True,
        gradient_atol=_GRADIENT_ATOL,
        notes={
            "jit": "Keras jit_compile=True: tf.function with XLA",
            "graph": "tf.function without XLA",
            "eager": "run_eagerly=True",
        },
    )

    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        import tensorflow as tf

        return {"keras": keras.__version__, "tensorflow": tf.__version__}

    def _cuda_available(self) -> bool:
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))

    @staticmethod
    def _host(t: Tensor) -> NDArray[Any]:
        return np.asarray(t.numpy())

    def _run_train_function(self, data: tuple[Any, ...]) -> dict[str, Tensor]:
        # A plain iterator makes Keras run one step of its tf.function per call, as train_on_batch does.
        logs: dict[str, Tensor] = self.model.train_function(iter((data,)))
        return logs

    def _compiled_like_training(self, fn: Callable[[], Tensor]) -> Callable[[], Tensor]:
        # tf.random.stateless_normal picks its algorithm per compilation: under XLA it draws other numbers
        # from the same seed than eagerly, so the replay of a "jit" step's ε must be compiled by XLA too.
        if not COMPILE_ARGS[self.mode]["jit_compile"]:
            return fn
        import tensorflow as tf

        compiled: Callable[[], Tensor] = tf.function(fn, jit_compile=True)
        return compiled

    def _grad_list(self, inputs: tuple[Tensor, Tensor, Tensor]) -> list[Tensor]:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = batch_loss(self.model(inputs, training=False))
        return list(tape.gradient(loss, self.model.trainable_variables))

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            import tensorflow as tf

            tf.test.experimental.sync_devices()


class KerasJaxBackend(KerasBackend):
    """Keras 3 on jax: gradients by jax.grad of the model's stateless call.

    Training keeps Keras's jax state (trainable, non-trainable, optimiser and metric variables) between
    steps, as `fit` does, and writes it back to the Keras variables only when something reads them.
    Default "jit" (Keras `jit_compile=True`: the train step under jax.jit), about a second to compile per
    batch shape; "eager" (`run_eagerly=True`, op by op) is an order of magnitude slower.
    """

    name = "keras-jax"
    keras_backend = "jax"
    capabilities = Capabilities(
        devices=("cpu", "cuda"),
        modes=("jit", "eager"),
        onnx_export=True,
        isolated=True,
        gradient_atol=_GRADIENT_ATOL,
        notes={"jit": "Keras jit_compile=True: jax.jit of the train step", "eager": "run_eagerly=True"},
    )

    #: The live training state while it is newer than the Keras variables (None when they are current).
    _state: tuple[list[Any], ...] | None = None

    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        import jax

        return {"keras": keras.__version__, "jax": jax.__version__}

    def _cuda_available(self) -> bool:
        import jax

        try:
            return bool(jax.devices("gpu"))
        except RuntimeError:
            return False

    @staticmethod
    def _host(t: Tensor) -> NDArray[Any]:
        return np.asarray(t)

    def _state_variables(self) -> tuple[list[Any], ...]:
        m = self.model
        return (m.trainable_variables, m.non_trainable_variables, m.optimizer.variables, m.metrics_variables)

    def _run_train_function(self, data: tuple[Any, ...]) -> dict[str, Tensor]:
        if self._state is None:
            self._state = tuple([v.value for v in group] for group in self._state_variables())
        logs: dict[str, Tensor]
        logs, self._state = self.model.train_function(self._state, iter((data,)))
        return logs

    def _sync_variables(self) -> None:
        # The jitted train function donates its state, so after a step only `_state` holds live buffers.
        if self._state is None:
            return
        for group, values in zip(self._state_variables(), self._state, strict=True):
            for var, value in zip(group, values, strict=True):
                var.assign(value)
        self._state = None

    def _grad_list(self, inputs: tuple[Tensor, Tensor, Tensor]) -> list[Tensor]:
        import jax

        m = self.model
        non_trainable = [v.value for v in m.non_trainable_variables]

        def loss(trainable: list[Tensor]) -> Tensor:
            parts, _ = m.stateless_call(trainable, non_trainable, inputs, training=False)
            return batch_loss(parts)

        return list(jax.grad(loss)([v.value for v in m.trainable_variables]))

    def synchronize(self) -> None:
        import jax

        block: Any = jax.block_until_ready  # untyped in jax's stubs
        block((self._state, self._logs))
