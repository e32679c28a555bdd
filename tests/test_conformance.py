"""The conformance suite: every registered backend (built-in or plugin) against the float64 reference.

Each backend runs in its own worker process, exactly as the harness runs it. A new plugin gets this
whole module for free by registering in the `cvae_bench.backends` entry-point group.
"""

from __future__ import annotations

import numpy as np
import pytest

from cvae_bench.models import DEFAULT_SPEC, reference
from cvae_bench.models.evaluator import Evaluator
from cvae_bench.training.jobs import evaluate_job, train_job
from tests.conftest import WorkerPool, available_names, backend_params
from tests.helpers import biased_weights

SPEC = DEFAULT_SPEC
#: Loss parts are compared relatively, with a floor of 1e-5 nats for terms near zero (a single
#: example's Monte Carlo KL can cross zero, where a relative error means nothing).
LOSS_RTOL, LOSS_ATOL = 1e-5, 1e-5
ENCODE_DECODE_ATOL = 1e-5
EVAL_ATOL = 1e-4

pytestmark = pytest.mark.parametrize("name", backend_params())


def _weights(seed: int = 7, big_log_var: bool = False) -> dict[str, np.ndarray]:
    """Reference weights with non-zero biases, optionally with |z_log_var| around 6."""
    w = biased_weights(seed)
    if big_log_var:  # |z_log_var| around 6: σ of 20 and of 0.05
        w["encoder.dense_2.bias"] = np.array([0.5, -0.5, 6.0, -6.0], np.float32)
    return w


def _batches(mnist: tuple[np.ndarray, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    x, y = mnist[0][:64], mnist[1][:64]
    onehot = np.eye(10, dtype=np.float32)[np.arange(16) % 10]
    return {
        "mnist": (x, y),
        "zeros": (np.zeros((16, 28, 28), np.float32), onehot),
        "ones": (np.ones((16, 28, 28), np.float32), onehot),
    }


def _eps(batch: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((SPEC.kl_samples, batch, SPEC.latent_dim)).astype(np.float32)


def test_identity_and_capabilities(name: str, workers: WorkerPool) -> None:
    b = workers.get(name)
    assert b.info["backend"] == name
    assert b.info["versions"], "framework_versions() must name at least one framework"
    assert b.device.startswith("cpu")
    assert b.mode


def test_weight_names_shapes_and_parameter_counts(name: str, workers: WorkerPool) -> None:
    w = workers.get(name).get_weights()
    assert {k: v.shape for k, v in w.items()} == SPEC.weight_shapes()
    assert all(v.dtype == np.float32 for v in w.values())
    enc = sum(v.size for k, v in w.items() if k.startswith("encoder."))
    dec = sum(v.size for k, v in w.items() if k.startswith("decoder."))
    assert (enc, dec) == (423_588, 419_504)


def test_initialisation_is_glorot_uniform_and_seeded(name: str, workers: WorkerPool) -> None:
    w = workers.get(name).get_weights()
    k = w["encoder.dense_0.kernel"]
    limit = np.sqrt(6 / sum(k.shape))
    assert np.abs(k).max() <= limit and abs(float(k.std()) - limit / np.sqrt(3)) < 2e-3
    assert not any(w[n].any() for n in w if n.endswith(".bias"))


@pytest.mark.parametrize("other", available_names())
def test_weights_move_between_backends_unchanged(name: str, other: str, workers: WorkerPool) -> None:
    w = _weights(seed=11)
    workers.get(name).set_weights(w)
    moved = workers.get(name).get_weights()
    workers.get(other).set_weights(moved)
    back = workers.get(other).get_weights()
    for k in w:
        np.testing.assert_array_equal(back[k], w[k], err_msg=f"{name} -> {other}: {k}")


@pytest.mark.parametrize("batch", ["mnist", "zeros", "ones", "big-log-var"])
def test_loss_parts_match_reference(name: str, batch: str, workers: WorkerPool, mnist: tuple) -> None:
    b = workers.get(name)
    w = _weights(big_log_var=batch == "big-log-var")
    b.set_weights(w)
    x, y = _batches(mnist)["mnist" if batch == "big-log-var" else batch]
    eps = _eps(len(x))
    kl, nll = b.loss_parts(x, y, eps)
    ref = reference.loss_parts(w, x, y, eps)
    np.testing.assert_allclose(kl, ref.kl, rtol=LOSS_RTOL, atol=LOSS_ATOL, err_msg="KL")
    np.testing.assert_allclose(nll, ref.nll, rtol=LOSS_RTOL, atol=LOSS_ATOL, err_msg="NLL")
    np.testing.assert_allclose(kl + nll, ref.total, rtol=LOSS_RTOL, atol=LOSS_ATOL, err_msg="total")


@pytest.mark.parametrize("batch", ["mnist", "zeros", "ones"])
def test_encode_decode_match_reference(name: str, batch: str, workers: WorkerPool, mnist: tuple) -> None:
    b = workers.get(name)
    w = _weights()
    b.set_weights(w)
    x, y = _batches(mnist)[batch]
    z_mean, z_log_var = b.encode(x, y)
    ref_mean, ref_log_var = reference.encode(w, x, y)
    np.testing.assert_allclose(z_mean, ref_mean, atol=ENCODE_DECODE_ATOL)
    np.testing.assert_allclose(z_log_var, ref_log_var, atol=ENCODE_DECODE_ATOL)
    z = np.random.default_rng(5).normal(scale=2.0, size=(len(x), 2)).astype(np.float32)
    x_mean = b.decode(z, y)
    assert x_mean.shape == (len(x), 28, 28) and x_mean.dtype == np.float32
    np.testing.assert_allclose(x_mean, reference.decode(w, z, y), atol=ENCODE_DECODE_ATOL)


def test_evaluator_agrees_with_reference(name: str, workers: WorkerPool, mnist: tuple) -> None:
    b = workers.get(name)
    w = _weights()
    b.set_weights(w)
    x_val, y_val = mnist[2], mnist[3]
    got = b.run_job(evaluate_job, weights=w)
    ref = reference.evaluator_parts(w, x_val, y_val, Evaluator(x_val, y_val, SPEC).eps)
    assert abs(got["val_elbo"] - float(ref.total.mean())) <= EVAL_ATOL
    assert abs(got["kl"] - float(ref.kl.mean())) <= EVAL_ATOL


def _on_real_batch(name: str, workers: WorkerPool, mnist: tuple) -> tuple:
    """The backend with the test weights set, a real MNIST batch and a fixed ε."""
    b = workers.get(name)
    w = _weights()
    b.set_weights(w)
    x, y = _batches(mnist)["mnist"]
    return b, w, x, y, _eps(len(x))


def test_gradients_match_reference(name: str, workers: WorkerPool, mnist: tuple) -> None:
    b, w, x, y, eps = _on_real_batch(name, workers, mnist)
    grads = b.gradients(x, y, eps)
    ref = reference.gradients(w, x, y, eps)
    atol = b.info["capabilities"]["gradient_atol"]
    for k in ref:
        np.testing.assert_allclose(grads[k], ref[k], rtol=1e-4, atol=atol, err_msg=k)


def test_one_adam_step_moves_the_loss_like_the_reference(name: str, workers: WorkerPool, mnist: tuple) -> None:
    b, w, x, y, eps = _on_real_batch(name, workers, mnist)
    before = reference.loss_parts(w, x, y, eps).total.mean()
    b.train_step_with_eps(x, y, eps)
    stepped = b.get_weights()
    ref_w = reference.adam_first_step(w, reference.gradients(w, x, y, eps))
    after = reference.loss_parts(stepped, x, y, eps).total.mean()
    ref_after = reference.loss_parts(ref_w, x, y, eps).total.mean()
    assert after < before
    # The decrease agrees to 1 % (Adam's first step is ≈ lr·sign(g): float32 noise on gradients near
    # zero flips a few signs, which moves the loss by much less than this).
    assert abs((before - after) - (before - ref_after)) <= 0.01 * (before - ref_after)
    moved = max(float(np.max(np.abs(stepped[k] - ref_w[k]))) for k in w)
    assert moved <= 2.1 * SPEC.learning_rate


def test_training_is_repeatable_and_learns(name: str, workers: WorkerPool, mnist: tuple) -> None:
    from cvae_bench.runtime.worker import RemoteBackend, Worker

    runs = []
    for _ in range(2):
        with Worker(workers.get(name).worker.info) as worker:
            fresh = RemoteBackend(worker, SPEC, seed=3)
            job = fresh.run_job(
                train_job,
                config={"epochs": 2, "seed": 3, "log_every": 5},
                train_subset=640,
                val_subset=500,
            )
            runs.append(job["record"]["history"])
    first, second = runs
    assert [h["val_elbo"] for h in first] == [h["val_elbo"] for h in second]
    assert [h["train_loss"] for h in first] == [h["train_loss"] for h in second]
    assert first[-1]["val_elbo"] < first[0]["val_elbo"] + 1e-3 or first[-1]["train_loss"] < first[0]["train_loss"]
