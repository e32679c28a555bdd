"""The Backend contract that every backend plugin implements, and its capability declaration."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from cvae_bench.core.errors import BackendUnavailableError
from cvae_bench.models.spec import ModelSpec

F32 = NDArray[np.float32]
WeightDict = dict[str, NDArray[np.float32]]


@dataclass(frozen=True)
class Capabilities:
    """What a backend supports, declared up front so that tests and the CLI skip rather than crash.

    Attributes:
        devices: device kinds the backend can run on ("cpu", "cuda").
        modes: training modes it accepts through the `mode` option; the first is the default.
        onnx_export: whether `export_onnx` is implemented.
        isolated: whether it must run in a worker process of its own (Keras fixes its backend at import).
        gradient_atol: absolute tolerance of its gradients against the float64 reference.
    """

    devices: tuple[str, ...] = ("cpu",)
    modes: tuple[str, ...] = ("eager",)
    onnx_export: bool = False
    isolated: bool = True
    gradient_atol: float = 1e-4
    notes: dict[str, str] = field(default_factory=dict)


class Backend(ABC):
    """One implementation of the tutorial's CVAE, its loss and its Adam training step.

    Arrays cross this interface as NumPy: images float32 (B, 28, 28) in [0, 1], labels one-hot float32
    (B, 10), latent z float32 (B, 2), training ε float32 (kl_samples, B, 2). Weights cross it as the
    canonical dict of docs/design.md (float32, kernels (in, out)).

    Training data is loaded once (`load_train_data`) and kept in the backend's own memory/device;
    `set_order` permutes it for an epoch and `train_step(i)` trains on batch `i` of that order with ε drawn
    from the backend's own seeded generator, without synchronising the host, so that step timings are
    honest. `take_loss` is the one call that waits for the device.

    Subclasses set the class attributes and implement every abstract method.
    """

    name: ClassVar[str]
    framework: ClassVar[str]  # the importable distribution whose version is reported, e.g. "torch"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, spec: ModelSpec, seed: int, device: str = "cpu", mode: str | None = None) -> None:
        """Check `device` and `mode` against the declared Capabilities before anything is built.

        Raises:
            BackendUnavailableError: a device kind or mode the backend does not declare (the message lists
                those it does), so that no result is ever labelled with a mode or device it did not run.
        """
        caps = self.capabilities
        self.mode = mode or caps.modes[0]
        if self.mode not in caps.modes:
            raise BackendUnavailableError(
                f"backend {self.name!r} has no mode {self.mode!r}; choose one of {', '.join(caps.modes)}"
            )
        kind = device.split(":", 1)[0]
        if kind not in caps.devices:
            raise BackendUnavailableError(
                f"backend {self.name!r} cannot run on device {device!r}; choose one of {', '.join(caps.devices)}"
            )
        self.spec = spec
        self.seed = seed
        self._device = device

    # -- identity -------------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def framework_versions(cls) -> dict[str, str]:
        """Versions of every framework/library this backend runs on, e.g. {"torch": "2.13.0"}."""

    @property
    def device(self) -> str:
        """The device the model lives on, as the framework names it ("cpu", "cuda:0", …)."""
        return self._device

    def describe(self) -> dict[str, Any]:
        """What a result file records about this backend instance."""
        return {
            "backend": self.name,
            "mode": self.mode,
            "device": self.device,
            "versions": self.framework_versions(),
            "capabilities": asdict(self.capabilities),
        }

    # -- weights --------------------------------------------------------------------------------------
    @abstractmethod
    def get_weights(self) -> WeightDict:
        """The canonical weights as float32 NumPy arrays."""

    @abstractmethod
    def set_weights(self, weights: Mapping[str, NDArray[np.floating]]) -> None:
        """Load canonical weights; resets the optimiser state."""

    # -- inference ------------------------------------------------------------------------------------
    @abstractmethod
    def encode(self, x: F32, y: F32) -> tuple[F32, F32]:
        """Returns (z_mean, z_log_var)."""

    @abstractmethod
    def decode(self, z: F32, y: F32) -> F32:
        """Returns x_mean (B, 28, 28)."""

    @abstractmethod
    def loss_parts(self, x: F32, y: F32, eps: F32) -> tuple[F32, F32]:
        """Per-example (KL, NLL) of the training loss for the given ε (kl_samples, B, latent)."""

    @abstractmethod
    def gradients(self, x: F32, y: F32, eps: F32) -> WeightDict:
        """Gradients of the batch-mean loss for the given ε, by canonical weight name."""

    # -- training -------------------------------------------------------------------------------------
    @abstractmethod
    def load_train_data(self, x: F32, y: F32) -> None:
        """Keep the training set in the backend's memory/device for `train_step`."""

    @abstractmethod
    def set_order(self, order: NDArray[np.int64]) -> None:
        """Use this permutation of the training set for the following `train_step` calls."""

    @abstractmethod
    def train_step(self, index: int) -> None:
        """One Adam step on batch `index` of the current order (the last batch may be short)."""

    @abstractmethod
    def train_step_with_eps(self, x: F32, y: F32, eps: F32) -> None:
        """One Adam step on the given batch with the given ε (for conformance)."""

    @abstractmethod
    def take_loss(self) -> float:
        """Mean training loss over the steps since the last call (NaN if none); waits for the device."""

    def synchronize(self) -> None:  # noqa: B027 - an optional hook: synchronous backends need nothing
        """Wait for queued device work (a no-op where execution is synchronous)."""

    # -- conformance hook -------------------------------------------------------------------------------
    def last_train_noise(self) -> F32:
        """The ε (kl_samples, B, latent) that the last `train_step` drew, as float32 NumPy.

        A test hook: the conformance suite checks that the training path draws independent standard-normal
        noise and replays each step with it. Recording must stay cheap (keep a reference, or enough state to
        recompute the draw; no host copy or device sync per step): the work happens here, when asked. A
        backend without it cannot pass conformance's training-path check.
        """
        raise NotImplementedError(f"backend {self.name!r} does not implement last_train_noise()")

    def adam_state(self) -> dict[str, NDArray[Any]]:
        """Adam's state in the reference's terms, as float32 or float64 NumPy.

        The keys of `reference.KerasAdam.get_state`: "iterations" (the step count t, 0-d), and "m/<weight>"
        and "v/<weight>" (the uncorrected first and second moments) for every canonical weight, in the
        canonical layout (kernels (in, out)), zeros before the first step. A test hook, like
        `last_train_noise`: the run-time audit (`training.audit`) reads it before and after the training
        steps it audits and replays them with the float64 reference from it; read only when asked (it may
        sync the device). A backend without it still trains, but its runs fail the audit: their steps
        cannot be replayed.
        """
        raise NotImplementedError(f"backend {self.name!r} does not implement adam_state()")

    def first_train_noise(self, seed: int, batch: int) -> F32:
        """The ε (kl_samples, batch, latent) that the first `train_step` of an instance built with `seed` draws.

        A test hook, like `last_train_noise`: the run-time audit checks that the run's own first step drew
        exactly this for the run's seed (so the answer is verified against the training path), and that
        seed + 1 gives another draw — the noise follows the seed — without building, and compiling, a second
        instance. It must not touch this instance's own generator. Without it the audit builds a throwaway
        instance with seed + 1 and takes one step on it, which for a compiled backend costs a compilation.
        """
        raise NotImplementedError(f"backend {self.name!r} does not implement first_train_noise()")

    # -- checkpoints ------------------------------------------------------------------------------------
    def get_train_state(self) -> dict[str, NDArray[Any]]:
        """Everything besides the weights that the next `train_step` depends on, as NumPy arrays.

        That is the optimiser's state (Adam's step count and both moments) and the state of the generator
        that draws the training ε. With `set_weights(w)` then `set_train_state(state)`, training goes on
        exactly as it would have from where the state was taken; `run --resume` relies on it, and the
        conformance suite checks it. A backend without it trains fine but cannot be resumed.
        """
        raise NotImplementedError(f"backend {self.name!r} does not implement get_train_state()")

    def set_train_state(self, state: Mapping[str, NDArray[Any]]) -> None:
        """Restore what `get_train_state` returned (call after `set_weights`, which resets the optimiser)."""
        raise NotImplementedError(f"backend {self.name!r} does not implement set_train_state()")

    # -- optional -------------------------------------------------------------------------------------
    def export_onnx(self, path: str, part: str = "decoder", opset: int | None = None) -> dict[str, str]:
        """Write `part` as ONNX with the framework's exporter; returns metadata (exporter, version).

        The harness normalises names and axes afterwards. Only for backends with `onnx_export`.
        """
        raise NotImplementedError(f"backend {self.name!r} does not export ONNX")
