"""Native PyTorch backend `torch`: plain nn.Linear layers, Keras-default init, Adam, eager or compiled."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from cvae_bench.backends.base import F32, Backend, Capabilities, WeightDict
from cvae_bench.core.errors import BackendUnavailableError
from cvae_bench.models.spec import ModelSpec


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CVAE(nn.Module):
    """The tutorial's encoder and decoder as two MLPs, with the training loss of the contract (docs/design.md)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = _mlp(spec.encoder_dims)
        self.decoder = _mlp(spec.decoder_dims)
        for module in self.modules():
            if isinstance(module, nn.Linear):  # Keras defaults: glorot-uniform kernels, zero biases
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.encoder(torch.cat([x.flatten(1), y], 1))
        return out[:, : self.spec.latent_dim], out[:, self.spec.latent_dim :]

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(torch.cat([z, y], 1))
        return torch.sigmoid(logits).view(-1, *self.spec.image_shape)

    def loss_parts(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example (KL, NLL) with ε of shape (K, B, latent)."""
        z_mean, z_log_var = self.encode(x, y)
        sigma = torch.exp(0.5 * z_log_var)
        z = z_mean + sigma * eps
        # log N(z; z_mean, σ) − log N(z; 0, 1), with the ½ log 2π constants cancelled by hand so that
        # float32 does not lose the (often small) difference.
        kl = (0.5 * (z**2 - ((z - z_mean) / sigma) ** 2 - z_log_var)).sum(-1).mean(0)
        x_mean = self.decode(z[0], y)
        sq = (((x - x_mean) / self.spec.sigma_x) ** 2).flatten(1)
        nll = 0.5 * sq.sum(1) + self.spec.nll_constant
        return kl, nll

    def forward(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        kl, nll = self.loss_parts(x, y, eps)
        return (kl + nll).mean()


#: torch.compile mode of the "compiled" mode, per device type. On CUDA a step at batch 64 is a few hundred
#: tiny kernels, so launch overhead dominates and CUDA graphs ("reduce-overhead") replay the whole step at
#: once; this path is written for GPUs but untested here (no GPU in CI). On CPU, inductor's default. Set
#: $CVAE_BENCH_TORCH_COMPILE_MODE (e.g. "default", "max-autotune-no-cudagraphs") to override both.
COMPILE_MODES = {"cpu": "default", "cuda": "reduce-overhead"}


class TorchBackend(Backend):
    """Native PyTorch: eager by default; mode "compiled" compiles the whole training step with torch.compile.

    The optimiser is torch's Adam with Keras's hyper-parameters (fused kernel where torch has one). Torch
    adds ε to √v after bias correction, Keras before; both modes rescale ε each step so that the update is
    Keras's (conformance's trajectory check sees the difference, on weights whose gradients are ~1e-6):
    eager as a float for the fused kernel, compiled as a 0-d tensor filled in place, which the compiled
    step reads without recompiling.

    Measured speeds are in the README's results, with the commands that give them.
    """

    name = "torch"
    framework = "torch"
    capabilities = Capabilities(
        devices=("cpu", "cuda"),
        modes=("eager", "compiled"),
        onnx_export=True,
        isolated=True,
        gradient_atol=1e-5,
        notes={
            "eager": "fused Adam, data on device, no host sync per step",
            "compiled": "torch.compile of the whole step (forward, backward, Adam fused by inductor); CUDA graphs "
            "on CUDA; "
            "first step includes compilation",
        },
    )

    def __init__(self, spec: ModelSpec, seed: int, device: str = "cpu", mode: str | None = None) -> None:
        super().__init__(spec, seed, device, mode)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError("backend 'torch': --device cuda asked for, but torch sees no CUDA device")
        # Fairness: full float32 matmuls everywhere (no TF32), as on the CPU.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self._torch_device = torch.device(device)
        torch.manual_seed(seed)
        self.model = CVAE(spec).to(self._torch_device)
        self._gen = torch.Generator(device=self._torch_device)
        self._gen.manual_seed(seed)
        self._new_optimizer()
        self._compiled_step: Any = None
        if self.mode == "compiled":
            mode = os.environ.get("CVAE_BENCH_TORCH_COMPILE_MODE") or COMPILE_MODES[self._torch_device.type]
            self._compiled_step = torch.compile(self._step_body, mode=mode)
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None
        self._loss_sum = torch.zeros((), device=self._torch_device)
        self._loss_count = 0
        self._last_eps: torch.Tensor | None = None

    def _new_optimizer(self) -> None:
        s = self.spec
        compiled = self.mode == "compiled"
        # Eager uses torch's fused Adam with ε set per step as a float (see _step). The compiled step cannot
        # take a new float each step without recompiling, so it reads ε from a 0-d tensor updated in place;
        # the fused kernel takes floats only, so that path is the single-tensor Adam, which inductor fuses.
        self._eps_t = torch.full((), s.adam_epsilon, dtype=torch.float32, device=self._torch_device)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=s.learning_rate,
            betas=(s.adam_beta_1, s.adam_beta_2),
            eps=s.adam_epsilon,
            fused=not compiled and self._torch_device.type in ("cpu", "cuda"),
            foreach=False if compiled else None,
        )
        self._bind_eps()
        self._adam_t = 0  # Adam's step count, for the Keras placement of ε (see _step)

    def _bind_eps(self) -> None:
        if self.mode == "compiled":
            for group in self.optimizer.param_groups:
                group["eps"] = self._eps_t

    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        return {"torch": torch.__version__}

    @property
    def device(self) -> str:
        return str(self._torch_device)

    def _t(self, a: NDArray[Any]) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a, np.float32), device=self._torch_device)

    @staticmethod
    def _np(t: torch.Tensor) -> F32:
        return t.detach().to("cpu").numpy().astype(np.float32, copy=False)

    # -- weights ------------------------------------------------------------------------------------
    def _linears(self) -> dict[str, nn.Linear]:
        out: dict[str, nn.Linear] = {}
        for part in ("encoder", "decoder"):
            linears = [m for m in getattr(self.model, part) if isinstance(m, nn.Linear)]
            out.update({f"{part}.dense_{i}": m for i, m in enumerate(linears)})
        return out

    def get_weights(self) -> WeightDict:
        out: WeightDict = {}
        for prefix, lin in self._linears().items():
            out[f"{prefix}.kernel"] = self._np(lin.weight.T).copy()
            out[f"{prefix}.bias"] = self._np(lin.bias).copy()
        return out

    def set_weights(self, weights: Mapping[str, NDArray[np.floating]]) -> None:
        with torch.no_grad():
            for prefix, lin in self._linears().items():
                lin.weight.copy_(self._t(weights[f"{prefix}.kernel"]).T)
                lin.bias.copy_(self._t(weights[f"{prefix}.bias"]))
        self._new_optimizer()

    # -- inference ----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: F32, y: F32) -> tuple[F32, F32]:
        m, lv = self.model.encode(self._t(x), self._t(y))
        return self._np(m), self._np(lv)

    @torch.no_grad()
    def decode(self, z: F32, y: F32) -> F32:
        return self._np(self.model.decode(self._t(z), self._t(y)))

    @torch.no_grad()
    def loss_parts(self, x: F32, y: F32, eps: F32) -> tuple[F32, F32]:
        kl, nll = self.model.loss_parts(self._t(x), self._t(y), self._t(eps))
        return self._np(kl), self._np(nll)

    def gradients(self, x: F32, y: F32, eps: F32) -> WeightDict:
        self.model.zero_grad(set_to_none=True)
        self.model(self._t(x), self._t(y), self._t(eps)).backward()
        out: WeightDict = {}
        for prefix, lin in self._linears().items():
            assert lin.weight.grad is not None and lin.bias.grad is not None
            out[f"{prefix}.kernel"] = self._np(lin.weight.grad.T).copy()
            out[f"{prefix}.bias"] = self._np(lin.bias.grad).copy()
        self.model.zero_grad(set_to_none=True)
        return out

    # -- training -----------------------------------------------------------------------------------
    def load_train_data(self, x: F32, y: F32) -> None:
        self._x = self._t(x)
        self._y = self._t(y)
        self._order_x, self._order_y = self._x, self._y

    def set_order(self, order: NDArray[np.int64]) -> None:
        if self._x is None or self._y is None:
            raise RuntimeError("load_train_data must come before set_order")
        idx = torch.as_tensor(order, device=self._torch_device)
        # One gather per epoch keeps every batch a contiguous slice.
        self._order_x = self._x.index_select(0, idx)
        self._order_y = self._y.index_select(0, idx)

    def _step_body(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Forward, backward and Adam: the whole step, in one function so that "compiled" compiles all of it.

        Gradients are left None afterwards (`zero_grad(set_to_none=True)`), as the next step expects.
        """
        loss = self.model(x, y, eps)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        detached: torch.Tensor = loss.detach()
        return detached

    def _step(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> None:
        step = self._compiled_step or self._step_body
        # Keras's Adam adds ε to √v before bias correction, torch's after: with ε_t = ε/√(1 − β2^t) torch's
        # update is Keras's exactly. A host float per step (eager), or a 0-d tensor filled in place (compiled).
        self._adam_t += 1
        s = self.spec
        eps_t = s.adam_epsilon / math.sqrt(1.0 - s.adam_beta_2**self._adam_t)
        if self._compiled_step is None:
            for group in self.optimizer.param_groups:
                group["eps"] = eps_t
        else:
            self._eps_t.fill_(eps_t)
        # Accumulated on the device (no host sync); with CUDA graphs the returned tensor is a static buffer
        # that the next replay overwrites, so it is added right away.
        self._loss_sum += step(x, y, eps)
        self._loss_count += 1

    def train_step(self, index: int) -> None:
        b = self.spec.batch_size
        x = self._order_x[index * b : (index + 1) * b]
        y = self._order_y[index * b : (index + 1) * b]
        eps = torch.randn(
            (self.spec.kl_samples, x.shape[0], self.spec.latent_dim),
            generator=self._gen,
            device=self._torch_device,
        )
        self._last_eps = eps  # a reference only: no copy, no sync (see last_train_noise)
        self._step(x, y, eps)

    def last_train_noise(self) -> F32:
        if self._last_eps is None:
            raise RuntimeError("no train_step has run yet")
        return self._np(self._last_eps)

    def first_train_noise(self, seed: int, batch: int) -> F32:
        gen = torch.Generator(device=self._torch_device)
        gen.manual_seed(seed)  # as __init__ seeds the noise generator
        shape = (self.spec.kl_samples, batch, self.spec.latent_dim)
        return self._np(torch.randn(shape, generator=gen, device=self._torch_device))

    def train_step_with_eps(self, x: F32, y: F32, eps: F32) -> None:
        self._step(self._t(x), self._t(y), self._t(eps))

    def adam_state(self) -> dict[str, NDArray[Any]]:
        # torch's exp_avg and exp_avg_sq are Keras's m and v (ε's placement differs, not the moments);
        # kernels are stored (out, in), so their moments are transposed like the weights.
        out: dict[str, NDArray[Any]] = {"iterations": np.array(self._adam_t, np.int64)}
        for prefix, lin in self._linears().items():
            for attr, param in (("kernel", lin.weight), ("bias", lin.bias)):
                slots = self.optimizer.state.get(param, {})
                for key, slot in (("m", "exp_avg"), ("v", "exp_avg_sq")):
                    value = slots.get(slot)
                    moment = np.zeros(tuple(param.shape), np.float32) if value is None else self._np(value).copy()
                    out[f"{key}/{prefix}.{attr}"] = moment.T.copy() if attr == "kernel" else moment
        return out

    # -- checkpoints ----------------------------------------------------------------------------------
    def get_train_state(self) -> dict[str, NDArray[Any]]:
        out: dict[str, NDArray[Any]] = {
            "adam_t": np.array(self._adam_t, np.int64),
            "noise_rng": self._gen.get_state().numpy().copy(),
        }
        for index, slots in self.optimizer.state_dict()["state"].items():
            for key, value in slots.items():
                out[f"adam/{index}/{key}"] = value.detach().to("cpu").numpy().copy()
        return out

    def set_train_state(self, state: Mapping[str, NDArray[Any]]) -> None:
        self._adam_t = int(state["adam_t"])
        self._gen.set_state(torch.as_tensor(np.asarray(state["noise_rng"], np.uint8)))
        saved = self.optimizer.state_dict()
        slots: dict[int, dict[str, torch.Tensor]] = {}
        for name, value in state.items():
            if name.startswith("adam/"):
                _, index, key = name.split("/")
                slots.setdefault(int(index), {})[key] = torch.as_tensor(np.array(value))
        saved["state"] = slots
        self.optimizer.load_state_dict(saved)  # moves each slot to its parameter's device and dtype
        self._bind_eps()  # load_state_dict copies the param groups

    def take_loss(self) -> float:
        if self._loss_count == 0:
            return float("nan")
        value = float(self._loss_sum.item()) / self._loss_count
        self._loss_sum.zero_()
        self._loss_count = 0
        return value

    def synchronize(self) -> None:
        if self._torch_device.type == "cuda":
            torch.cuda.synchronize(self._torch_device)

    # -- ONNX -----------------------------------------------------------------------------------------
    def export_onnx(self, path: str, part: str = "decoder", opset: int | None = None) -> dict[str, str]:
        """Write the decoder (or encoder) with torch's dynamo ONNX exporter, else its TorchScript one.

        The dynamo exporter (`torch.export` + onnxscript) is tried first: it is torch's supported path and
        gives a clean graph (Gemm, Relu, Sigmoid, named inputs, a symbolic batch). The TorchScript exporter,
        deprecated since torch 2.9, is the fallback for a torch or onnxscript that cannot run it; the
        returned metadata says which one wrote the file and why the first failed.
        """
        if part not in ("decoder", "encoder"):
            raise ValueError(f"part must be 'decoder' or 'encoder', got {part!r}")
        s = self.spec

        class Part(nn.Module):  # the model as a submodule, so that its weights are parameters, not constants
            def __init__(self, model: CVAE) -> None:
                super().__init__()
                self.model = model

            def forward(self, a: torch.Tensor, label: torch.Tensor) -> Any:
                return self.model.decode(a, label) if part == "decoder" else self.model.encode(a, label)

        net = Part(self.model)
        b = 3  # an example batch other than 0 or 1, which torch.export would specialise
        first = (b, s.latent_dim) if part == "decoder" else (b, *s.image_shape)
        args = (torch.rand(first, device=self._torch_device), torch.rand(b, s.num_classes, device=self._torch_device))
        in_names = ["z", "label"] if part == "decoder" else ["x", "label"]
        out_names = ["x_mean"] if part == "decoder" else ["z_mean", "z_log_var"]
        meta = {"exporter_version": torch.__version__}
        was_training = self.model.training
        net.eval()  # no layer here differs between modes, but the exporters expect eval; restored below
        try:
            try:
                batch = torch.export.Dim("batch")
                program = torch.onnx.export(
                    net,
                    args,
                    dynamo=True,
                    input_names=in_names,
                    output_names=out_names,
                    dynamic_shapes=({0: batch}, {0: batch}),
                    opset_version=opset,
                    verbose=False,
                )
                if program is None:
                    raise RuntimeError("torch.onnx.export(dynamo=True) returned no program")
                program.save(path)
                import onnxscript

                return {**meta, "exporter": "torch.onnx.export(dynamo=True)", "onnxscript": onnxscript.__version__}
            except Exception as exc:  # whatever stops the new exporter: fall back, and record why
                first_line = (str(exc).splitlines() or [""])[0]
                reason = f"{type(exc).__name__}: {first_line}"[:300]
            torch.onnx.export(
                net,
                args,
                path,
                dynamo=False,
                input_names=in_names,
                output_names=out_names,
                dynamic_axes={n: {0: "batch"} for n in [*in_names, *out_names]},
                opset_version=opset,
            )
            return {**meta, "exporter": "torch.onnx.export(dynamo=False)", "dynamo_failed": reason}
        finally:
            self.model.train(was_training)
