"""Float64 NumPy reference of the encoder, decoder, loss, gradients and evaluator: the judge."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec

Weights = Mapping[str, NDArray[np.floating]]
F64 = NDArray[np.float64]
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class LossParts:
    """Per-example loss terms in nats; the batch loss is the mean of `total`."""

    kl: F64
    nll: F64

    @property
    def total(self) -> F64:
        """−ELBO per example."""
        return self.kl + self.nll


def init_weights(seed: int, spec: ModelSpec = DEFAULT_SPEC) -> dict[str, NDArray[np.float32]]:
    """Keras-default initialisation: glorot-uniform kernels, zero biases, as float32."""
    rng = np.random.default_rng(seed)
    out: dict[str, NDArray[np.float32]] = {}
    for name, shape in spec.weight_shapes().items():
        if name.endswith(".kernel"):
            limit = math.sqrt(6.0 / (shape[0] + shape[1]))
            out[name] = rng.uniform(-limit, limit, size=shape).astype(np.float32)
        else:
            out[name] = np.zeros(shape, np.float32)
    return out


def _inputs(x: NDArray[np.floating], y: NDArray[np.floating], spec: ModelSpec) -> tuple[F64, F64]:
    xf = np.asarray(x, np.float64).reshape(len(x), spec.image_size)
    return xf, np.asarray(y, np.float64)


def _mlp(w: Weights, part: str, h: F64, n_layers: int) -> list[F64]:
    """Forward through `part`'s dense layers; returns every layer's pre-activation."""
    pre: list[F64] = []
    for i in range(n_layers):
        a = h @ np.asarray(w[f"{part}.dense_{i}.kernel"], np.float64) + np.asarray(
            w[f"{part}.dense_{i}.bias"], np.float64
        )
        pre.append(a)
        h = np.maximum(a, 0.0)
    return pre


def _relu_inputs(inp: F64, pre: list[F64]) -> list[F64]:
    """The input of each dense layer given the network input and the pre-activations."""
    return [inp] + [np.maximum(a, 0.0) for a in pre[:-1]]


def encode(
    w: Weights, x: NDArray[np.floating], y: NDArray[np.floating], spec: ModelSpec = DEFAULT_SPEC
) -> tuple[F64, F64]:
    """Encoder: returns (z_mean, z_log_var), each (B, latent_dim)."""
    xf, yf = _inputs(x, y, spec)
    out = _mlp(w, "encoder", np.concatenate([xf, yf], 1), len(spec.encoder_dims) - 1)[-1]
    return out[:, : spec.latent_dim], out[:, spec.latent_dim :]


def _sigmoid(a: F64) -> F64:
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def decode(w: Weights, z: NDArray[np.floating], y: NDArray[np.floating], spec: ModelSpec = DEFAULT_SPEC) -> F64:
    """Decoder: returns x_mean (B, 28, 28) in (0, 1)."""
    inp = np.concatenate([np.asarray(z, np.float64), np.asarray(y, np.float64)], 1)
    a = _mlp(w, "decoder", inp, len(spec.decoder_dims) - 1)[-1]
    return _sigmoid(a).reshape(len(inp), *spec.image_shape)


def gaussian_nll(x: NDArray[np.floating], x_mean: NDArray[np.floating], spec: ModelSpec = DEFAULT_SPEC) -> F64:
    """Σ_pixels of −log N(x; x_mean, σ_x) per example."""
    n = len(x)
    d = np.asarray(x, np.float64).reshape(n, -1) - np.asarray(x_mean, np.float64).reshape(n, -1)
    nll: F64 = np.sum(0.5 * (d / spec.sigma_x) ** 2, axis=1) + spec.nll_constant
    return nll


def _log_normal(z: F64, mean: F64 | float, log_var: F64 | float) -> F64:
    out: F64 = -0.5 * (z - mean) ** 2 * np.exp(-np.asarray(log_var)) - 0.5 * np.asarray(log_var) - _HALF_LOG_2PI
    return out


def loss_parts(
    w: Weights,
    x: NDArray[np.floating],
    y: NDArray[np.floating],
    eps: NDArray[np.floating],
    spec: ModelSpec = DEFAULT_SPEC,
) -> LossParts:
    """The training loss of the contract (docs/design.md) with ε of shape (kl_samples, B, latent_dim) passed in."""
    z_mean, z_log_var = encode(w, x, y, spec)
    e = np.asarray(eps, np.float64)
    z = z_mean + np.exp(0.5 * z_log_var) * e  # (K, B, L)
    log_q: F64 = _log_normal(z, z_mean, z_log_var)
    kl: F64 = np.mean(np.sum(log_q - _log_normal(z, 0.0, 0.0), axis=2), axis=0)
    nll = gaussian_nll(x, decode(w, z[0], y, spec), spec)
    return LossParts(kl=kl, nll=nll)


def analytic_kl(z_mean: NDArray[np.floating], z_log_var: NDArray[np.floating]) -> F64:
    """KL(N(z_mean, σ²) ‖ N(0, 1)) per example."""
    m = np.asarray(z_mean, np.float64)
    lv = np.asarray(z_log_var, np.float64)
    kl: F64 = 0.5 * np.sum(np.exp(lv) + m**2 - 1.0 - lv, axis=1)
    return kl


def evaluator_parts(
    w: Weights,
    x: NDArray[np.floating],
    y: NDArray[np.floating],
    eps: NDArray[np.floating],
    spec: ModelSpec = DEFAULT_SPEC,
) -> LossParts:
    """The validation evaluator with its fixed ε (B, latent_dim): NLL at one draw, analytic KL."""
    z_mean, z_log_var = encode(w, x, y, spec)
    z = z_mean + np.exp(0.5 * z_log_var) * np.asarray(eps, np.float64)
    return LossParts(kl=analytic_kl(z_mean, z_log_var), nll=gaussian_nll(x, decode(w, z, y, spec), spec))


def _backprop(
    w: Weights, part: str, inp: F64, pre: list[F64], grad_out: F64, grads: dict[str, F64], input_grad: bool = True
) -> F64 | None:
    """Backpropagate `grad_out` (w.r.t. the last pre-activation) through `part`; returns d/d input.

    With `input_grad=False` the gradient w.r.t. the network's input is not computed (None is returned): the
    encoder's input is data, and that product is one of the step's largest.
    """
    ins = _relu_inputs(inp, pre)
    g = grad_out
    for i in reversed(range(len(pre))):
        grads[f"{part}.dense_{i}.kernel"] = ins[i].T @ g
        grads[f"{part}.dense_{i}.bias"] = g.sum(0)
        if i == 0 and not input_grad:
            return None
        g = g @ np.asarray(w[f"{part}.dense_{i}.kernel"], np.float64).T
        if i > 0:
            g = g * (pre[i - 1] > 0)
    return g


def gradients(
    w: Weights,
    x: NDArray[np.floating],
    y: NDArray[np.floating],
    eps: NDArray[np.floating],
    spec: ModelSpec = DEFAULT_SPEC,
) -> dict[str, F64]:
    """Exact gradients of the batch-mean training loss w.r.t. every canonical weight."""
    return loss_and_gradients(w, x, y, eps, spec)[1]


def loss_and_gradients(
    w: Weights,
    x: NDArray[np.floating],
    y: NDArray[np.floating],
    eps: NDArray[np.floating],
    spec: ModelSpec = DEFAULT_SPEC,
) -> tuple[LossParts, dict[str, F64]]:
    """The training loss's parts (as `loss_parts` gives them) and its exact gradients, from one forward pass.

    The run-time audit replays training steps with it: one forward instead of two.
    """
    xf, yf = _inputs(x, y, spec)
    n, lat = len(xf), spec.latent_dim
    e = np.asarray(eps, np.float64)
    enc_in = np.concatenate([xf, yf], 1)
    enc_pre = _mlp(w, "encoder", enc_in, len(spec.encoder_dims) - 1)
    m, lv = enc_pre[-1][:, :lat], enc_pre[-1][:, lat:]
    s = np.exp(0.5 * lv)
    z = m + s * e
    dec_in = np.concatenate([z[0], yf], 1)
    dec_pre = _mlp(w, "decoder", dec_in, len(spec.decoder_dims) - 1)
    x_hat = _sigmoid(dec_pre[-1])
    # The same operations as `loss_parts`, on the same intermediates, so the same numbers.
    kl: F64 = np.mean(np.sum(_log_normal(z, m, lv) - _log_normal(z, 0.0, 0.0), axis=2), axis=0)
    parts = LossParts(kl=kl, nll=gaussian_nll(x, x_hat, spec))

    grads: dict[str, F64] = {}
    # NLL through the decoder; the batch loss is a mean, hence the 1/n.
    g_a = -(xf - x_hat) / spec.sigma_x**2 * x_hat * (1.0 - x_hat) / n
    g_dec_in = _backprop(w, "decoder", dec_in, dec_pre, g_a, grads)
    assert g_dec_in is not None
    g_z1 = g_dec_in[:, :lat]
    # KL: log N(z; m, σ) is −½ε² − ½ log σ² − c along the reparameterised path, −log N(z; 0, 1) is ½z² + c.
    g_m = z.mean(0) / n + g_z1
    g_lv = (-0.5 + np.mean(z * e * s / 2.0, axis=0)) / n + g_z1 * e[0] * s / 2.0
    _backprop(w, "encoder", enc_in, enc_pre, np.concatenate([g_m, g_lv], 1), grads, input_grad=False)
    return parts, grads


class KerasAdam:
    """Keras 3's Adam in float64, step after step: the optimiser every backend is held to.

    m = β1·m + (1−β1)·g, v = β2·v + (1−β2)·g², α_t = lr·√(1−β2^t)/(1−β1^t), w −= α_t·m/(√v + ε): ε is
    added to √v of the *uncorrected* second moment (torch adds it after bias correction instead).

    Args:
        weights: the starting weights (copied to float64); read the current ones from `weights`.
        spec: learning rate, β1, β2 and ε.
        state: the optimiser's state to start from (what `get_state` returns); None: a fresh one.
    """

    def __init__(
        self,
        weights: Mapping[str, NDArray[np.floating]],
        spec: ModelSpec = DEFAULT_SPEC,
        state: Mapping[str, NDArray[np.generic]] | None = None,
    ) -> None:
        self.spec = spec
        self.weights: dict[str, F64] = {k: np.array(v, np.float64) for k, v in weights.items()}
        if state is None:
            self._m = {k: np.zeros_like(v) for k, v in self.weights.items()}
            self._v = {k: np.zeros_like(v) for k, v in self.weights.items()}
            self.iterations = 0
        else:
            self._m, self._v = {}, {}
            self.set_state(state)

    def apply(self, grads: Mapping[str, NDArray[np.floating]]) -> dict[str, F64]:
        """One step with `grads` (every weight's); returns the new weights.

        The arrays are replaced, not changed in place: callers may hold the previous weights and moments.
        """
        self.iterations += 1
        for k, g in grads.items():
            self.weights[k], self._m[k], self._v[k] = adam_update(
                self.weights[k], self._m[k], self._v[k], g, self.iterations, self.spec
            )
        return self.weights

    def get_state(self) -> dict[str, NDArray[np.generic]]:
        """The optimiser's state (step count and both moments), for checkpoints."""
        state: dict[str, NDArray[np.generic]] = {"iterations": np.array(self.iterations, np.int64)}
        state.update({f"m/{k}": v.copy() for k, v in self._m.items()})
        state.update({f"v/{k}": v.copy() for k, v in self._v.items()})
        return state

    def set_state(self, state: Mapping[str, NDArray[np.generic]]) -> None:
        """Restore what `get_state` returned."""
        self.iterations = int(state["iterations"])
        self._m = {k: np.array(state[f"m/{k}"], np.float64) for k in self.weights}
        self._v = {k: np.array(state[f"v/{k}"], np.float64) for k in self.weights}

    def moments(self) -> tuple[dict[str, F64], dict[str, F64]]:
        """The current first and second moments, by weight name (the optimiser's own arrays: read only)."""
        return self._m, self._v

    def train_step(self, x: NDArray[np.floating], y: NDArray[np.floating], eps: NDArray[np.floating]) -> float:
        """One training step on a batch with ε given; returns the batch loss before the step."""
        loss = float(loss_parts(self.weights, x, y, eps, self.spec).total.mean())
        self.apply(gradients(self.weights, x, y, eps, self.spec))
        return loss


def adam_update(
    w: NDArray[np.floating],
    m: NDArray[np.floating],
    v: NDArray[np.floating],
    g: NDArray[np.floating],
    t: int,
    spec: ModelSpec = DEFAULT_SPEC,
    out: tuple[F64, F64, F64, F64] | None = None,
) -> tuple[F64, F64, F64]:
    """Keras Adam's step `t` (1-based) of one tensor, in float64: returns the new (w, m, v); the inputs stay.

    m = β1·m + (1−β1)·g, v = β2·v + (1−β2)·g·g, w −= α_t·m/(√v + ε), α_t = lr·√(1−β2^t)/(1−β1^t), with the
    operations in that order (so the same numbers as written out), into fresh arrays or `out`.

    Args:
        w, m, v: the tensor, its first and second moments before the step.
        g: its gradient.
        t: the step's number (the optimiser's step count after it).
        spec: learning rate, β1, β2 and ε.
        out: float64 buffers of the tensor's shape for the new w, m, v and one scratch: the run-time audit
            replays steps tensor by tensor with this, and fresh multi-megabyte arrays at every step cost it
            more (in page faults) than the arithmetic.
    """
    b1, b2 = spec.adam_beta_1, spec.adam_beta_2
    alpha = spec.learning_rate * math.sqrt(1 - b2**t) / (1 - b1**t)
    w_new, m_new, v_new, scratch = out if out is not None else tuple(np.empty(np.shape(w)) for _ in range(4))
    g64 = np.asarray(g, np.float64)
    np.multiply(g64, 1 - b1, out=scratch)
    np.multiply(np.asarray(m, np.float64), b1, out=m_new)
    m_new += scratch
    np.multiply(g64, 1 - b2, out=scratch)
    scratch *= g64
    np.multiply(np.asarray(v, np.float64), b2, out=v_new)
    v_new += scratch
    np.sqrt(v_new, out=scratch)
    scratch += spec.adam_epsilon
    np.multiply(m_new, alpha, out=w_new)
    w_new /= scratch  # the step α·m/(√v + ε), then w − step:
    np.subtract(np.asarray(w, np.float64), w_new, out=w_new)
    return w_new, m_new, v_new


def adam_first_step(
    w: Weights, grads: Mapping[str, NDArray[np.floating]], spec: ModelSpec = DEFAULT_SPEC
) -> dict[str, F64]:
    """Weights after one Keras Adam step from a fresh optimiser state (m = v = 0, t = 1)."""
    return KerasAdam(w, spec).apply(grads)


def generator_state(rng: np.random.Generator) -> NDArray[np.str_]:
    """A NumPy PCG64 generator's state as an array (its 128-bit integers as decimal strings), for checkpoints."""
    bits = rng.bit_generator.state["state"]
    return np.array([str(bits["state"]), str(bits["inc"])])


def set_generator_state(rng: np.random.Generator, state: NDArray[np.generic]) -> None:
    """Restore what `generator_state` returned."""
    full = dict(rng.bit_generator.state)
    full["state"] = {"state": int(state[0]), "inc": int(state[1])}
    rng.bit_generator.state = full
