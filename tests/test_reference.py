"""The float64 NumPy reference: sizes, the NLL constant, KL estimators and exact gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cvae_bench.models import DEFAULT_SPEC, reference


def test_parameter_counts_match_the_tutorial() -> None:
    assert DEFAULT_SPEC.param_count("encoder") == 423_588
    assert DEFAULT_SPEC.param_count("decoder") == 419_504


def test_weight_shapes_are_keras_kernels() -> None:
    shapes = DEFAULT_SPEC.weight_shapes()
    assert shapes["encoder.dense_0.kernel"] == (794, 512)
    assert shapes["decoder.dense_2.kernel"] == (512, 784)
    assert len(shapes) == 12


def test_nll_constant_is_the_gaussian_normaliser() -> None:
    x = np.full((3, 28, 28), 0.25)
    nll = reference.gaussian_nll(x, x)
    expected = 784 * (math.log(0.5) + 0.5 * math.log(2 * math.pi))
    np.testing.assert_allclose(nll, expected, rtol=1e-12)
    assert 177.0 < expected < 177.1


def test_nll_grows_with_squared_error_over_sigma() -> None:
    x = np.zeros((1, 28, 28))
    x_mean = np.full((1, 28, 28), 0.1)
    # ½ · (0.1 / 0.5)² · 784 on top of the constant
    np.testing.assert_allclose(reference.gaussian_nll(x, x_mean) - DEFAULT_SPEC.nll_constant, 0.5 * 0.04 * 784)


def test_monte_carlo_kl_agrees_with_analytic_in_expectation() -> None:
    rng = np.random.default_rng(0)
    z_mean = rng.normal(size=(1, 2))
    z_log_var = rng.normal(size=(1, 2))
    k = 200_000
    eps = rng.standard_normal((k, 1, 2))
    sigma = np.exp(0.5 * z_log_var)
    z = z_mean + sigma * eps
    log_q = -0.5 * eps**2 - 0.5 * z_log_var
    log_p = -0.5 * z**2
    samples = (log_q - log_p).sum(-1)[:, 0]
    analytic = reference.analytic_kl(z_mean, z_log_var)[0]
    stderr = samples.std() / math.sqrt(k)
    assert abs(samples.mean() - analytic) < 4 * stderr


def test_loss_parts_kl_uses_all_samples() -> None:
    w = reference.init_weights(0)
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(4, 28, 28))
    y = np.eye(10)[[1, 2, 3, 4]]
    eps = rng.standard_normal((5, 4, 2))
    base = reference.loss_parts(w, x, y, eps)
    eps2 = eps.copy()
    eps2[4] += 1.0  # only the last KL sample changes: NLL (from sample 1) must not
    moved = reference.loss_parts(w, x, y, eps2)
    np.testing.assert_array_equal(base.nll, moved.nll)
    assert not np.allclose(base.kl, moved.kl)


@pytest.mark.parametrize("name", list(DEFAULT_SPEC.weight_shapes()))
def test_gradients_match_finite_differences(name: str) -> None:
    rng = np.random.default_rng(2)
    w = {k: v.astype(np.float64) for k, v in reference.init_weights(3).items()}
    for k in w:
        if k.endswith(".bias"):
            w[k] = rng.normal(scale=0.1, size=w[k].shape)
    x = rng.uniform(size=(6, 28, 28))
    y = np.eye(10)[rng.integers(0, 10, 6)]
    eps = rng.standard_normal((5, 6, 2))
    grads = reference.gradients(w, x, y, eps)
    assert grads[name].shape == w[name].shape
    flat = np.argsort(-np.abs(grads[name]).ravel())[:3]  # the largest entries: far from ReLU kinks
    for i in flat:
        idx = np.unravel_index(i, w[name].shape)
        h = 1e-6
        w[name][idx] += h
        up = reference.loss_parts(w, x, y, eps).total.mean()
        w[name][idx] -= 2 * h
        down = reference.loss_parts(w, x, y, eps).total.mean()
        w[name][idx] += h
        np.testing.assert_allclose(grads[name][idx], (up - down) / (2 * h), rtol=1e-4, atol=1e-7)


def test_init_is_glorot_uniform_with_zero_bias() -> None:
    w = reference.init_weights(0)
    limit = math.sqrt(6 / (794 + 512))
    k = w["encoder.dense_0.kernel"]
    assert k.dtype == np.float32
    assert np.abs(k).max() <= limit
    assert abs(float(k.std()) - limit / math.sqrt(3)) < 1e-3
    assert not w["decoder.dense_1.bias"].any()
