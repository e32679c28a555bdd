"""Recipe checks: each feeds a backend fixed inputs and compares what it does with the float64 reference.

A check is a function of a backend (a `Backend`, or a `RemoteBackend` proxy to one in a worker) and a
`Probe` (the inputs, and the reference's answers to them, computed once) that returns a `CheckResult`:
whether the backend conforms and, if not, what differs. The pytest kit (`cvae_bench.testing.conformance`)
asserts on these results; the harness can run them before a training run. Every tolerance is declared once,
in `Tolerances`; docs/design.md ("The training recipe and how conformance proves it") says how each was
measured and which deviation each check catches.

Checks call only Backend methods, never framework code, so that they run unchanged across the worker
boundary. They change the backend's weights, optimiser state and training data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from cvae_bench.core.records import Record
from cvae_bench.models import reference
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec

Array = NDArray[Any]
WeightMap = Mapping[str, Array]


class BackendLike(Protocol):
    """The Backend methods the checks call (a Backend, or a RemoteBackend forwarding to one)."""

    def get_weights(self) -> WeightMap: ...
    def set_weights(self, weights: WeightMap) -> None: ...
    def encode(self, x: Array, y: Array) -> tuple[Array, Array]: ...
    def decode(self, z: Array, y: Array) -> Array: ...
    def loss_parts(self, x: Array, y: Array, eps: Array) -> tuple[Array, Array]: ...
    def gradients(self, x: Array, y: Array, eps: Array) -> WeightMap: ...
    def load_train_data(self, x: Array, y: Array) -> None: ...
    def set_order(self, order: Array) -> None: ...
    def train_step(self, index: int) -> None: ...
    def train_step_with_eps(self, x: Array, y: Array, eps: Array) -> None: ...
    def take_loss(self) -> float: ...
    def synchronize(self) -> None: ...
    def last_train_noise(self) -> Array: ...


@dataclass(frozen=True)
class Tolerances:
    """Every tolerance of the checks, in one place (docs/design.md gives the measurements behind them).

    Attributes:
        loss_rtol, loss_atol: per-example KL and NLL against the reference (relative, with a floor in nats
            for terms near zero: one example's Monte Carlo KL can cross zero).
        encode_decode_atol: z_mean, z_log_var and x_mean against the reference.
        gradient_rtol: gradients against the reference; the absolute part is the backend's own
            `Capabilities.gradient_atol`.
        first_step_loss_rel: the loss decrease of one Adam step, relative to the reference's decrease.
        first_step_move_lr: the largest weight change of one step against the reference's, in units of the
            learning rate (Adam's first step is ≈ lr·sign(g): a float32 sign flip moves a weight by 2·lr).
        trajectory_steps: Adam steps of the trajectory check, one real batch and one ε draw per step.
        clock_steps: steps the clock check queues before each read (of the trajectory's first batches).
        trajectory_rel_base, trajectory_rel_per_step: after t steps every weight tensor's distance from the
            reference's, relative to the distance the reference travelled from the start, must stay below
            base + per_step·t.
        trajectory_loss_rel_base, trajectory_loss_rel_per_step: the training loss of step t against the
            reference's, relative to the loss, below base + per_step·t.
        replay_rel: the training path replayed through `train_step_with_eps` with the ε that `train_step`
            reported: the same relative weight distance, per step.
        noise_z: the largest |z-score| of any statistic of the training noise (mean, variance, fourth moment,
            correlations); under the null each is ≈ N(0, 1), so 6.5 gives a false alarm with probability
            below 1e-8 per statistic (deterministic anyway with fixed seeds).
        init_z: the same for the moments of the initial kernels over seeds.
        init_bound_rtol: how far a kernel entry may exceed the Glorot limit (float32 rounding of the limit).
    """

    loss_rtol: float = 1e-5
    loss_atol: float = 1e-5
    encode_decode_atol: float = 1e-5
    gradient_rtol: float = 1e-4
    first_step_loss_rel: float = 0.01
    first_step_move_lr: float = 2.1
    trajectory_steps: int = 30
    clock_steps: int = 5
    trajectory_rel_base: float = 1e-3
    trajectory_rel_per_step: float = 2e-4
    trajectory_loss_rel_base: float = 1e-5
    trajectory_loss_rel_per_step: float = 2e-6
    replay_rel: float = 1e-3
    noise_z: float = 6.5
    init_z: float = 6.5
    init_bound_rtol: float = 1e-6

    def trajectory_rel(self, step: int) -> float:
        """The weight tolerance after `step` steps."""
        return self.trajectory_rel_base + self.trajectory_rel_per_step * step

    def trajectory_loss_rel(self, step: int) -> float:
        """The loss tolerance at step `step` (1-based)."""
        return self.trajectory_loss_rel_base + self.trajectory_loss_rel_per_step * step


TOLERANCES = Tolerances()


@dataclass(frozen=True)
class CheckResult(Record):
    """What one check found on one backend.

    Attributes:
        check: the check's name.
        backend: the backend's name.
        ok: whether everything was within tolerance.
        differences: one line per thing that differs (empty when ok).
        worst_ratio: the largest measured difference over its tolerance (≤ 1 passes): the margin.
        worst: what `worst_ratio` was measured on.
    """

    check: str
    backend: str
    ok: bool
    differences: tuple[str, ...] = ()
    worst_ratio: float = 0.0
    worst: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"{self.check} on {self.backend}: ok (worst {self.worst_ratio:.3g} of tolerance, {self.worst})"
        return f"{self.check} on {self.backend} differs: " + "; ".join(self.differences)


@dataclass
class _Findings:
    """Collects comparisons while a check runs."""

    check: str
    backend: str
    differences: list[str] = field(default_factory=list)
    worst_ratio: float = 0.0
    worst: str = ""

    def within(self, what: str, measured: float, tolerance: float) -> bool:
        ratio = measured / tolerance if tolerance > 0 else (math.inf if measured > 0 else 0.0)
        if not math.isfinite(measured):
            ratio = math.inf
        if ratio > self.worst_ratio or not self.worst:
            self.worst_ratio, self.worst = ratio, what
        if not ratio <= 1.0:
            self.differences.append(f"{what}: {measured:.4g} > {tolerance:.4g}")
            return False
        return True

    def require(self, condition: bool, message: str) -> bool:
        if not condition:
            self.differences.append(message)
        return condition

    def result(self) -> CheckResult:
        return CheckResult(
            check=self.check,
            backend=self.backend,
            ok=not self.differences,
            differences=tuple(self.differences[:12]),
            worst_ratio=self.worst_ratio,
            worst=self.worst,
        )


def _name(backend: object) -> str:
    name = backend.__dict__.get("name") if hasattr(backend, "__dict__") else None
    return str(name or getattr(type(backend), "name", type(backend).__name__))


def _gradient_atol(backend: object) -> float:
    info = getattr(backend, "info", None)  # a RemoteBackend carries the worker's describe()
    if isinstance(info, dict):
        return float(info["capabilities"]["gradient_atol"])
    return float(getattr(backend, "capabilities").gradient_atol)  # noqa: B009 - a Backend's ClassVar


def probe_weights(seed: int = 7, spec: ModelSpec = DEFAULT_SPEC) -> dict[str, NDArray[np.float32]]:
    """Reference initial weights with non-zero biases (N(0, 0.05²)), so that bias handling is exercised."""
    rng = np.random.default_rng(seed)
    w = reference.init_weights(seed, spec)
    for k in w:
        if k.endswith(".bias"):
            w[k] = rng.normal(scale=0.05, size=w[k].shape).astype(np.float32)
    return w


def relative_distance(got: WeightMap, want: WeightMap, start: WeightMap) -> tuple[float, str]:
    """max over tensors of ‖got − want‖ / ‖want − start‖, and the tensor where it is largest."""
    worst, where = 0.0, ""
    for k, w in want.items():
        travelled = float(np.linalg.norm(np.asarray(w, np.float64) - np.asarray(start[k], np.float64)))
        off = float(np.linalg.norm(np.asarray(got[k], np.float64) - np.asarray(w, np.float64)))
        rel = off / travelled if travelled > 0 else (0.0 if off == 0 else math.inf)
        if not math.isfinite(off):
            rel = math.inf
        if rel > worst or not where:
            worst, where = rel, k
    return worst, where


@dataclass(frozen=True)
class ReferenceTrajectory:
    """The float64 reference's answers to the trajectory check: weights at checkpoints, loss per step."""

    weights: dict[int, dict[str, NDArray[np.float64]]]
    losses: list[float]


class Probe:
    """The inputs every check feeds a backend, and the reference's answers to them, computed once.

    Args:
        x: real training images, float32 (N, 28, 28) in [0, 1], N ≥ `tolerances.trajectory_steps`·batch.
        y: their one-hot labels, float32 (N, 10).
        spec: the model spec.
        tolerances: the tolerances (and the trajectory's length).
        seed: seed of every ε and order the probe draws.
    """

    #: Training-path check: examples (2 full batches and a short one of 8) and epochs.
    train_examples = 136
    train_epochs = 3

    def __init__(
        self,
        x: Array,
        y: Array,
        spec: ModelSpec = DEFAULT_SPEC,
        tolerances: Tolerances = TOLERANCES,
        seed: int = 0,
    ) -> None:
        need = tolerances.trajectory_steps * spec.batch_size
        if len(x) < need:
            raise ValueError(f"a Probe needs at least {need} training examples, got {len(x)}")
        self.x = np.ascontiguousarray(x[:need], np.float32)
        self.y = np.ascontiguousarray(y[:need], np.float32)
        self.spec = spec
        self.tolerances = tolerances
        self.seed = seed
        self.weights = probe_weights(7, spec)
        big = dict(self.weights)
        big["encoder.dense_2.bias"] = np.array([0.5, -0.5, 6.0, -6.0], np.float32)  # σ of 20 and of 0.05
        self.big_log_var_weights = big

    def eps(self, batch: int, seed: int = 3) -> NDArray[np.float32]:
        """A fixed standard-normal ε (kl_samples, batch, latent)."""
        shape = (self.spec.kl_samples, batch, self.spec.latent_dim)
        return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)

    def batches(self) -> dict[str, tuple[NDArray[np.float32], NDArray[np.float32]]]:
        """Named test batches: 64 real images, and 16 all-black and all-white ones."""
        onehot = np.eye(self.spec.num_classes, dtype=np.float32)[np.arange(16) % self.spec.num_classes]
        shape = (16, *self.spec.image_shape)
        return {
            "mnist": (self.x[: self.spec.batch_size], self.y[: self.spec.batch_size]),
            "zeros": (np.zeros(shape, np.float32), onehot),
            "ones": (np.ones(shape, np.float32), onehot),
        }

    def trajectory_batches(self) -> Iterator[tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]]:
        """(x, y, ε) of each trajectory step: consecutive real batches, a fresh ε each."""
        b = self.spec.batch_size
        rng = np.random.default_rng(self.seed + 100)
        for t in range(self.tolerances.trajectory_steps):
            eps = rng.standard_normal((self.spec.kl_samples, b, self.spec.latent_dim)).astype(np.float32)
            yield self.x[t * b : (t + 1) * b], self.y[t * b : (t + 1) * b], eps

    def checkpoints(self) -> list[int]:
        """The steps after which the trajectory check compares weights."""
        n = self.tolerances.trajectory_steps
        return sorted({t for t in (1, 2, 3, 5, 10, 20, 30, 40, n) if t <= n})

    @cached_property
    def reference_trajectory(self) -> ReferenceTrajectory:
        """The reference's Keras Adam run over `trajectory_batches` from `weights`."""
        adam = reference.KerasAdam(self.weights, self.spec)
        marks = set(self.checkpoints())
        weights: dict[int, dict[str, NDArray[np.float64]]] = {}
        losses = []
        for t, (x, y, eps) in enumerate(self.trajectory_batches(), 1):
            losses.append(adam.train_step(x, y, eps))
            if t in marks:
                weights[t] = {k: v.copy() for k, v in adam.weights.items()}
        return ReferenceTrajectory(weights, losses)

    @cached_property
    def clock_reference(self) -> ReferenceTrajectory:
        """The reference over the first 2·`clock_steps` trajectory steps: every loss, and the weights after
        `clock_steps` and 2·`clock_steps` steps (the clock check's answers)."""
        n = self.tolerances.clock_steps
        adam = reference.KerasAdam(self.weights, self.spec)
        weights: dict[int, dict[str, NDArray[np.float64]]] = {}
        losses = []
        for t, (x, y, eps) in enumerate(itertools.islice(self.trajectory_batches(), 2 * n), 1):
            losses.append(adam.train_step(x, y, eps))
            if t % n == 0:
                weights[t] = {k: v.copy() for k, v in adam.weights.items()}
        return ReferenceTrajectory(weights, losses)

    def train_orders(self) -> list[NDArray[np.int64]]:
        """One permutation of the training-path examples per epoch."""
        rng = np.random.default_rng(self.seed + 200)
        return [rng.permutation(self.train_examples).astype(np.int64) for _ in range(self.train_epochs)]


Check = Callable[[BackendLike, Probe], CheckResult]


# -- the model and its loss ------------------------------------------------------------------------------
def check_weight_layout(backend: BackendLike, probe: Probe) -> CheckResult:
    """Canonical names, shapes, float32, and the tutorial's parameter counts."""
    f = _Findings("weight_layout", _name(backend))
    w = backend.get_weights()
    shapes = {k: tuple(np.shape(v)) for k, v in w.items()}
    f.require(shapes == probe.spec.weight_shapes(), f"weights {shapes} != {probe.spec.weight_shapes()}")
    bad = sorted(k for k, v in w.items() if np.asarray(v).dtype != np.float32)
    f.require(not bad, f"not float32: {', '.join(bad)}")
    for part in ("encoder", "decoder"):
        n = sum(int(np.size(v)) for k, v in w.items() if k.startswith(part + "."))
        f.require(n == probe.spec.param_count(part), f"{part} has {n} parameters, not {probe.spec.param_count(part)}")
    return f.result()


def check_loss_parts(backend: BackendLike, probe: Probe, tol: Tolerances = TOLERANCES) -> CheckResult:
    """Per-example KL and NLL against the reference on real, black, white and large-|log σ²| inputs."""
    f = _Findings("loss_parts", _name(backend))
    batches = probe.batches()
    for case in ("mnist", "zeros", "ones", "big-log-var"):
        w = probe.big_log_var_weights if case == "big-log-var" else probe.weights
        backend.set_weights(w)
        x, y = batches["mnist" if case == "big-log-var" else case]
        eps = probe.eps(len(x))
        kl, nll = (np.asarray(a, np.float64) for a in backend.loss_parts(x, y, eps))
        ref = reference.loss_parts(w, x, y, eps, probe.spec)
        for term, got, want in (("KL", kl, ref.kl), ("NLL", nll, ref.nll)):
            if not f.require(got.shape == want.shape, f"{case}: {term} shape {got.shape} != {want.shape}"):
                continue
            excess = np.abs(got - want) / (tol.loss_atol + tol.loss_rtol * np.abs(want))
            i = int(np.argmax(np.nan_to_num(excess, nan=np.inf)))
            f.within(f"{case}: {term}[{i}] = {got[i]:.6g} vs reference {want[i]:.6g} (×tol)", float(excess[i]), 1.0)
    return f.result()


def check_encode_decode(backend: BackendLike, probe: Probe, tol: Tolerances = TOLERANCES) -> CheckResult:
    """z_mean, z_log_var and x_mean against the reference (activations, label order, layer layout)."""
    f = _Findings("encode_decode", _name(backend))
    w = probe.weights
    backend.set_weights(w)
    for case, (x, y) in probe.batches().items():
        got = backend.encode(x, y)
        want = reference.encode(w, x, y, probe.spec)
        for what, g, r in zip(("z_mean", "z_log_var"), got, want, strict=True):
            f.within(
                f"{case}: max |Δ {what}|", float(np.max(np.abs(np.asarray(g, np.float64) - r))), tol.encode_decode_atol
            )
        z = np.random.default_rng(5).normal(scale=2.0, size=(len(x), probe.spec.latent_dim)).astype(np.float32)
        x_mean = np.asarray(backend.decode(z, y))
        shape = (len(x), *probe.spec.image_shape)
        if f.require(x_mean.shape == shape, f"{case}: x_mean shape {x_mean.shape} != {shape}"):
            diff = float(np.max(np.abs(x_mean - reference.decode(w, z, y, probe.spec))))
            f.within(f"{case}: max |Δ x_mean|", diff, tol.encode_decode_atol)
    return f.result()


def check_gradients(backend: BackendLike, probe: Probe, tol: Tolerances = TOLERANCES) -> CheckResult:
    """Gradients of the batch-mean loss for a given ε against the reference's exact ones."""
    f = _Findings("gradients", _name(backend))
    w = probe.weights
    backend.set_weights(w)
    x, y = probe.batches()["mnist"]
    eps = probe.eps(len(x))
    got = backend.gradients(x, y, eps)
    atol = _gradient_atol(backend)
    for k, want in reference.gradients(w, x, y, eps, probe.spec).items():
        if not f.require(k in got, f"no gradient for {k}"):
            continue
        g = np.asarray(got[k], np.float64)
        if not f.require(g.shape == want.shape, f"{k}: shape {g.shape} != {want.shape}"):
            continue
        excess = float(np.nanmax(np.abs(g - want) / (atol + tol.gradient_rtol * np.abs(want))))
        f.within(f"{k}: |Δ grad| (×tol)", excess if np.isfinite(g).all() else math.inf, 1.0)
    return f.result()


# -- the optimiser ---------------------------------------------------------------------------------------
def check_first_step(backend: BackendLike, probe: Probe, tol: Tolerances = TOLERANCES) -> CheckResult:
    """One Adam step from fresh state: learning rate, bias correction, the step's size and direction."""
    f = _Findings("first_step", _name(backend))
    w = probe.weights
    backend.set_weights(w)
    x, y = probe.batches()["mnist"]
    eps = probe.eps(len(x))
    before = float(reference.loss_parts(w, x, y, eps, probe.spec).total.mean())
    backend.train_step_with_eps(x, y, eps)
    backend.take_loss()
    stepped = backend.get_weights()
    ref_w = reference.adam_first_step(w, reference.gradients(w, x, y, eps, probe.spec), probe.spec)
    after = float(reference.loss_parts(stepped, x, y, eps, probe.spec).total.mean())
    ref_after = float(reference.loss_parts(ref_w, x, y, eps, probe.spec).total.mean())
    f.within(
        f"loss decrease {before - after:.5g} vs reference {before - ref_after:.5g} (relative)",
        abs((before - after) - (before - ref_after)) / (before - ref_after),
        tol.first_step_loss_rel,
    )
    moved = max(float(np.max(np.abs(np.asarray(stepped[k], np.float64) - ref_w[k]))) for k in w)
    f.within("max |Δ w| after one step, in units of lr", moved / probe.spec.learning_rate, tol.first_step_move_lr)
    return f.result()


def check_trajectory(backend: BackendLike, probe: Probe, tol: Tolerances = TOLERANCES) -> CheckResult:
    """Many Adam steps through `train_step_with_eps` against the reference's Keras Adam (β1, β2, ε, state)."""
    f = _Findings("trajectory", _name(backend))
    ref = probe.reference_trajectory
    backend.set_weights(probe.weights)
    backend.take_loss()
    for t, (x, y, eps) in enumerate(probe.trajectory_batches(), 1):
        backend.train_step_with_eps(x, y, eps)
        loss, want = backend.take_loss(), ref.losses[t - 1]
        f.within(
            f"step {t}: loss {loss:.6g} vs reference {want:.6g} (relative)",
            abs(loss - want) / abs(want),
            tol.trajectory_loss_rel(t),
        )
        if t in ref.weights:
            rel, where = relative_distance(backend.get_weights(), ref.weights[t], probe.weights)
            f.within(f"after {t} steps: {where} off the reference's path (relative)", rel, tol.trajectory_rel(t))
        if f.differences:  # off the path: later steps only repeat it
            break
    return f.result()


# -- the clock: take_loss and synchronize wait ---------------------------------------------------------------
def check_clock(backend: BackendLike, probe: Probe, tol: Tolerances = TOLERANCES) -> CheckResult:
    """`take_loss()` and `synchronize()` wait for the steps before them: timings end on them, so they must.

    Checked through values, never through time, so that a correct backend passes however fast or slow it is:
    after `Tolerances.clock_steps` steps queued with nothing read in between, `take_loss()` must be the mean of the
    reference's losses of exactly those steps (a take_loss that returns before the last step has finished
    averages fewer, or none); after `Tolerances.clock_steps` more steps and `synchronize()`, the weights must be the
    reference's after all of them (a synchronize that returns at once leaves them behind where the weights are
    read without waiting). The steps go through `train_step_with_eps` with ε given, so that nothing has to be
    read between them: reading `last_train_noise` after each `train_step` would itself wait for the device.
    They are the trajectory check's first steps, so an optimiser that leaves the reference's path fails here
    too (and first: this check is cheaper).
    """
    f = _Findings("clock", _name(backend))
    n, ref = tol.clock_steps, probe.clock_reference
    backend.set_weights(probe.weights)
    backend.take_loss()
    batches = list(itertools.islice(probe.trajectory_batches(), 2 * n))
    for x, y, eps in batches[:n]:
        backend.train_step_with_eps(x, y, eps)
    loss, want = backend.take_loss(), float(np.mean(ref.losses[:n]))
    f.within(
        f"take_loss() after {n} queued steps = {loss:.6g} vs the mean of the reference's losses of those steps "
        f"{want:.6g} (relative)",
        abs(loss - want) / abs(want),
        tol.trajectory_loss_rel(n),
    )
    for x, y, eps in batches[n:]:
        backend.train_step_with_eps(x, y, eps)
    backend.synchronize()
    rel, where = relative_distance(backend.get_weights(), ref.weights[2 * n], probe.weights)
    f.within(
        f"weights after {2 * n} queued steps and synchronize(): {where} off the reference's (relative)",
        rel,
        tol.trajectory_rel(2 * n),
    )
    loss, want = backend.take_loss(), float(np.mean(ref.losses[n:]))
    f.within(
        f"take_loss() after synchronize() = {loss:.6g} vs the mean of the reference's {want:.6g} (relative)",
        abs(loss - want) / abs(want),
        tol.trajectory_loss_rel(2 * n),
    )
    return f.result()


# -- the training path: noise and batch order -------------------------------------------------------------
def _z_scores(eps: Sequence[NDArray[np.float64]], spec: ModelSpec) -> dict[str, float]:
    """z-scores of the training noise's statistics under 'independent standard normal per element'."""
    flat = np.concatenate([e.ravel() for e in eps])
    n = flat.size
    z = {
        "mean": float(flat.mean() * math.sqrt(n)),
        "variance − 1": float((np.mean(flat**2) - 1.0) / math.sqrt(2.0 / n)),
        "fourth moment − 3": float((np.mean(flat**4) - 3.0) / math.sqrt(96.0 / n)),
    }
    p_tail = math.erfc(2.0 / math.sqrt(2.0))  # P(|ε| > 2) = 0.0455 for a standard normal
    z["share of |ε| > 2"] = float((np.mean(np.abs(flat) > 2.0) - p_tail) / math.sqrt(p_tail * (1 - p_tail) / n))
    k_samples = np.concatenate([e.reshape(e.shape[0], -1) for e in eps], axis=1)  # (K, n/K)
    for a in range(len(k_samples)):
        for b in range(a + 1, len(k_samples)):
            r = float(np.mean(k_samples[a] * k_samples[b]))
            z[f"corr(KL sample {a}, {b})"] = r * math.sqrt(k_samples.shape[1])
    lat = np.concatenate([e.reshape(-1, e.shape[-1]) for e in eps], axis=0)  # (n/L, L)
    for a in range(lat.shape[1]):
        for b in range(a + 1, lat.shape[1]):
            z[f"corr(latent {a}, {b})"] = float(np.mean(lat[:, a] * lat[:, b]) * math.sqrt(len(lat)))
    same_shape = [i for i, e in enumerate(eps) if e.shape == eps[0].shape]
    for ia, a in enumerate(same_shape):
        for b in same_shape[ia + 1 :]:
            r = float(np.mean(eps[a] * eps[b]))
            z[f"corr(step {a}, step {b})"] = r * math.sqrt(eps[a].size)
    return z


def check_training_path(backend: BackendLike, probe: Probe, tol: Tolerances = TOLERANCES) -> CheckResult:
    """The backend's own `train_step`: fresh standard-normal ε per element and step, the given batch order.

    Trains `Probe.train_epochs` epochs of `Probe.train_examples` examples (the last batch short) in orders
    given through `set_order`, reading after each step the ε it drew (`last_train_noise`) and the weights.
    The noise must look independent standard normal; replaying each step through `train_step_with_eps`
    with that ε on the batch the order names must give the same weights.
    """
    f = _Findings("training_path", _name(backend))
    s, n = probe.spec, probe.train_examples
    x, y = probe.x[:n], probe.y[:n]
    steps = math.ceil(n / s.batch_size)
    backend.set_weights(probe.weights)
    backend.load_train_data(x, y)
    rows: list[NDArray[np.int64]] = []
    eps: list[NDArray[np.float64]] = []
    after: list[WeightMap] = []
    for order in probe.train_orders():
        backend.set_order(order)
        for i in range(steps):
            backend.train_step(i)
            try:
                drawn = np.asarray(backend.last_train_noise(), np.float64)
            except Exception as exc:  # NotImplementedError here, WorkerError through a worker
                f.require(False, f"last_train_noise() failed ({exc}); the training noise cannot be verified")
                return f.result()
            r = order[i * s.batch_size : (i + 1) * s.batch_size]
            want = (s.kl_samples, len(r), s.latent_dim)
            if not f.require(drawn.shape == want, f"step {len(eps)}: ε has shape {drawn.shape}, expected {want}"):
                return f.result()
            rows.append(r)
            eps.append(drawn)
            after.append(backend.get_weights())
    backend.take_loss()
    for what, z in _z_scores(eps, s).items():
        f.within(f"training noise: |z| of {what}", abs(z), tol.noise_z)
    if f.differences:  # the noise is wrong already: no need to replay
        return f.result()
    backend.set_weights(probe.weights)
    for t, (r, e) in enumerate(zip(rows, eps, strict=True)):
        backend.train_step_with_eps(x[r], y[r], e.astype(np.float32))
        rel, where = relative_distance(backend.get_weights(), after[t], probe.weights)
        if not f.within(
            f"step {t}: train_step vs train_step_with_eps on its batch and ε, {where} (relative)", rel, tol.replay_rel
        ):
            break
    backend.take_loss()
    return f.result()


# -- initialisation --------------------------------------------------------------------------------------
def check_initialisation(
    initial: Sequence[WeightMap], spec: ModelSpec = DEFAULT_SPEC, tol: Tolerances = TOLERANCES, backend: str = "?"
) -> CheckResult:
    """Glorot-uniform kernels (bounds and moments per layer, pooled over seeds) and zero biases.

    Args:
        initial: the initial weights of backends built with different seeds (`get_weights()` before any
            `set_weights`).
        spec: the model spec.
        tol: the tolerances.
        backend: the backend's name, for the result.
    """
    f = _Findings("initialisation", backend)
    if len(initial) >= 2:
        same = [k for k in initial[0] if np.array_equal(initial[0][k], initial[1][k]) and k.endswith(".kernel")]
        f.require(not same, f"different seeds gave the same initial {', '.join(same)}")
    for k, shape in spec.weight_shapes().items():
        values = np.concatenate([np.asarray(w[k], np.float64).ravel() for w in initial])
        if k.endswith(".bias"):
            f.within(f"{k}: max |bias|", float(np.max(np.abs(values))), 0.0)
            continue
        limit = math.sqrt(6.0 / (shape[0] + shape[1]))
        u, n = values / limit, values.size
        f.within(f"{k}: max |w| / Glorot limit − 1", max(float(np.max(np.abs(u))) - 1.0, 0.0), tol.init_bound_rtol)
        # Uniform(−1, 1): E u = 0, E u² = 1/3, E u⁴ = 1/5; Var u = 1/3, Var u² = 4/45, Var u⁴ = 16/225.
        for what, stat, mean, var in (
            ("mean", u.mean(), 0.0, 1 / 3),
            ("E u²", np.mean(u**2), 1 / 3, 4 / 45),
            ("E u⁴", np.mean(u**4), 1 / 5, 16 / 225),
        ):
            f.within(f"{k}: |z| of {what} of w / limit", abs(float(stat) - mean) / math.sqrt(var / n), tol.init_z)
    return f.result()


#: The checks of one backend instance, in the order the kit runs them (initialisation needs several seeds).
RECIPE_CHECKS: dict[str, Check] = {
    "weight_layout": check_weight_layout,
    "loss_parts": check_loss_parts,
    "encode_decode": check_encode_decode,
    "gradients": check_gradients,
    "first_step": check_first_step,
    "clock": check_clock,
    "trajectory": check_trajectory,
    "training_path": check_training_path,
}


def recipe_checks(backend: BackendLike, probe: Probe) -> list[CheckResult]:
    """Run every single-backend check on `backend`; see `RECIPE_CHECKS`."""
    return [check(backend, probe) for check in RECIPE_CHECKS.values()]
