"""Smoke tests of `keras-torch`, `keras-tensorflow` and `keras-jax` against the float64 reference.

Keras fixes its backend at import, so each backend's checks run in a Python process of its own: this
module, run as `python -m tests.test_keras_backends NAME CONFIG` with KERAS_BACKEND set, prints one JSON
line of measurements, and the tests below judge them. (The generic, worker-based conformance suite is
tests/test_conformance.py; this one covers the Keras-specific parts and the non-default modes.)
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from cvae_bench.models import DEFAULT_SPEC, reference
from cvae_bench.testing.support import biased_weights

SPEC = DEFAULT_SPEC
ROOT = Path(__file__).resolve().parents[1]
MARKER = "CVAE_BENCH_RESULT "
FRAMEWORK = {"keras-torch": "torch", "keras-tensorflow": "tensorflow", "keras-jax": "jax"}
CLASSES = {
    "keras-torch": "KerasTorchBackend",
    "keras-tensorflow": "KerasTensorflowBackend",
    "keras-jax": "KerasJaxBackend",
}
#: Non-default modes, each checked with one reference Adam step and a short training run. The fast ones
#: run in the same process as the backend's full checks; torch.compile takes 30–60 s on a 2-core CPU.
FAST_MODES: dict[str, list[str]] = {"keras-torch": [], "keras-tensorflow": ["graph", "eager"], "keras-jax": ["eager"]}
SLOW_MODES = {"keras-torch": ["jit"]}
LOSS_RTOL = LOSS_ATOL = 1e-5
ENCODE_DECODE_ATOL = 1e-5


# ---------------------------------------------------------------------------------------------------------
# The part that runs inside the backend's own process.
# ---------------------------------------------------------------------------------------------------------
def _batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, *SPEC.image_shape), dtype=np.float32)
    y = np.eye(SPEC.num_classes, dtype=np.float32)[rng.integers(0, SPEC.num_classes, n)]
    eps = rng.standard_normal((SPEC.kl_samples, n, SPEC.latent_dim)).astype(np.float32)
    return x, y, eps


def _toy_data(n: int = 4 * 64 + 32) -> tuple[np.ndarray, np.ndarray]:
    """Ten noisy binary prototypes, one per class; n leaves a short last batch."""
    rng = np.random.default_rng(0)
    protos = (rng.random((SPEC.num_classes, *SPEC.image_shape)) < 0.3).astype(np.float32)
    labels = rng.integers(0, SPEC.num_classes, n)
    flips = rng.random((n, *SPEC.image_shape)) < 0.05
    return np.abs(protos[labels] - flips).astype(np.float32), np.eye(SPEC.num_classes, dtype=np.float32)[labels]


def _train(backend: Any, epochs: int) -> list[float]:
    """Epoch losses of a short run over the toy data (every epoch ends on a short batch)."""
    x, y = _toy_data()
    backend.load_train_data(x, y)
    rng = np.random.default_rng(1)
    steps = math.ceil(len(x) / SPEC.batch_size)
    losses = []
    for _ in range(epochs):
        backend.set_order(rng.permutation(len(x)))
        for i in range(steps):
            backend.train_step(i)
        losses.append(backend.take_loss())
    return losses


def _adam_step(backend: Any) -> dict[str, float]:
    """One `train_step_with_eps` against the reference's first Keras-Adam step."""
    w = biased_weights(7)
    x, y, eps = _batch(64, 4)
    backend.set_weights(w)
    backend.train_step_with_eps(x, y, eps)
    stepped = backend.get_weights()
    ref_w: dict[str, NDArray[np.floating]] = {**reference.adam_first_step(w, reference.gradients(w, x, y, eps))}
    before = float(reference.loss_parts(w, x, y, eps).total.mean())
    after = float(reference.loss_parts(stepped, x, y, eps).total.mean())
    ref_after = float(reference.loss_parts(ref_w, x, y, eps).total.mean())
    return {
        "decrease": before - after,
        "ref_decrease": before - ref_after,
        "max_dev": max(float(np.max(np.abs(stepped[k] - ref_w[k]))) for k in w),
        "step_loss": backend.take_loss(),
        "ref_step_loss": before,
    }


def _full_checks(cls: Any, name: str) -> dict[str, Any]:
    import keras

    from cvae_bench.backends import keras_backend
    from cvae_bench.core.errors import BackendUnavailableError

    out: dict[str, Any] = {"keras_backend": keras.backend.backend()}
    errors = {}
    for other, cls_name in CLASSES.items():
        if other != name:
            try:
                getattr(keras_backend, cls_name)(SPEC, 0)
            except BackendUnavailableError as exc:
                errors[other] = str(exc)
    for label, kwargs in (("mode", {"mode": "nope"}), ("cuda", {"device": "cuda"})):
        try:
            cls(SPEC, 0, **kwargs)
            errors[label] = ""
        except BackendUnavailableError as exc:
            errors[label] = str(exc)
    out["errors"] = errors

    # Two instances with one seed (repeatability), one with another; `b` then meets the reference.
    b, twin, other = cls(SPEC, seed=3), cls(SPEC, seed=3), cls(SPEC, seed=4)
    out["identity"] = {
        "name": b.name,
        "framework": b.framework,
        "versions": b.framework_versions(),
        "device": b.device,
        "mode": b.mode,
        "modes": list(b.capabilities.modes),
        "gradient_atol": b.capabilities.gradient_atol,
    }
    init = b.get_weights()
    out["shapes"] = {k: list(v.shape) for k, v in init.items()}
    out["dtypes"] = sorted({str(v.dtype) for v in init.values()})
    out["init_same_seed_equal"] = all(np.array_equal(init[k], twin.get_weights()[k]) for k in init)
    out["init_other_seed_differs"] = not np.array_equal(
        init["decoder.dense_2.kernel"], other.get_weights()["decoder.dense_2.kernel"]
    )
    kernel = init["encoder.dense_0.kernel"]
    out["init_kernel_limit_ratio"] = float(np.abs(kernel).max() / math.sqrt(6 / sum(kernel.shape)))
    out["init_biases_zero"] = not any(init[k].any() for k in init if k.endswith(".bias"))
    # Repeatability (same seed, same history) is the conformance kit's; here: it learns the toy data.
    out["train_losses"] = _train(b, epochs=10)

    w = biased_weights(7)
    b.set_weights(w)
    back = b.get_weights()
    out["round_trip_exact"] = all(np.array_equal(back[k], w[k]) and back[k].dtype == np.float32 for k in w)

    x, y, eps = _batch(16, 3)
    kl, nll = b.loss_parts(x, y, eps)
    ref = reference.loss_parts(w, x, y, eps)
    out["loss_shapes"] = [list(kl.shape), list(nll.shape), str(kl.dtype)]
    out["kl_err"] = float(np.max(np.abs(kl - ref.kl) / (LOSS_ATOL + LOSS_RTOL * np.abs(ref.kl))))
    out["nll_err"] = float(np.max(np.abs(nll - ref.nll) / (LOSS_ATOL + LOSS_RTOL * np.abs(ref.nll))))
    z_mean, z_log_var = b.encode(x, y)
    ref_mean, ref_log_var = reference.encode(w, x, y)
    out["encode_err"] = float(max(np.abs(z_mean - ref_mean).max(), np.abs(z_log_var - ref_log_var).max()))
    z = np.random.default_rng(5).normal(scale=2.0, size=(16, SPEC.latent_dim)).astype(np.float32)
    x_mean = b.decode(z, y)
    out["decode_shape"] = [list(x_mean.shape), str(x_mean.dtype)]
    out["decode_err"] = float(np.abs(x_mean - reference.decode(w, z, y)).max())
    grads = b.gradients(x, y, eps)
    ref_grads = reference.gradients(w, x, y, eps)
    out["grad_names"] = sorted(grads) == sorted(ref_grads)
    out["grad_excess"] = max(
        float(np.max(np.abs(grads[k] - ref_grads[k]) - 1e-4 * np.abs(ref_grads[k]))) for k in ref_grads
    )
    out["weights_unchanged_by_gradients"] = all(np.array_equal(b.get_weights()[k], w[k]) for k in w)
    # The functional decoder an exporter gets carries the current weights (jax syncs them first).
    _train(b, epochs=1)
    x_mean = b._np(b.keras_model("decoder")([b._t(z), b._t(y)]))
    out["keras_decoder_err"] = float(np.abs(x_mean - reference.decode(b.get_weights(), z, y)).max())

    # `b` has trained, so its Adam state is not fresh: set_weights must reset it, twice alike.
    out["adam"] = first = _adam_step(b)
    again = _adam_step(b)
    out["adam_after_reset_same"] = again == first
    out["loss_without_steps"] = b.take_loss()
    return out


def _mode_checks(cls: Any, mode: str) -> dict[str, Any]:
    b = cls(SPEC, seed=0, mode=mode)
    return {"mode": b.mode, "adam": _adam_step(b), "train_losses": _train(b, epochs=3)}


def _run_here(name: str, config: dict[str, Any]) -> dict[str, Any]:
    from cvae_bench.backends import keras_backend

    cls = getattr(keras_backend, CLASSES[name])
    result: dict[str, Any] = {}
    if config.get("full"):
        result["full"] = _full_checks(cls, name)
    result["modes"] = {mode: _mode_checks(cls, mode) for mode in config.get("modes", ())}
    return result


# ---------------------------------------------------------------------------------------------------------
# The pytest side: start the process, judge the numbers.
# ---------------------------------------------------------------------------------------------------------
def _skip_unless_available(name: str) -> None:
    from cvae_bench.backends import registry
    from cvae_bench.testing.support import require_or_skip

    info = registry.get(name)
    if not info.available:
        require_or_skip(info.unavailable_reason())


@functools.cache
def _run_process(name: str, config_json: str, timeout: float) -> dict[str, Any] | str:
    """Run the checks of `config_json` for backend `name` in a fresh process: its JSON result, or why not.

    Cached, failures included, so that one broken process fails each test once instead of re-running.
    """
    env = {**os.environ, "KERAS_BACKEND": FRAMEWORK[name], "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-m", "tests.test_keras_backends", name, config_json]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"{name} check process ran past {timeout:.0f} s"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        return f"{name} check process failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(lines[-1][len(MARKER) :])
    return result


def _run(name: str, config: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    got = _run_process(name, json.dumps(config, sort_keys=True), timeout)
    if isinstance(got, str):
        pytest.fail(got)
    return got


def _result(name: str) -> dict[str, Any]:
    """The backend's full checks plus its fast non-default modes, from one process."""
    _skip_unless_available(name)
    return _run(name, {"full": True, "modes": FAST_MODES[name]})


def _full(name: str) -> dict[str, Any]:
    full: dict[str, Any] = _result(name)["full"]
    return full


names = pytest.mark.parametrize("name", list(FRAMEWORK))


@names
def test_identity_and_clear_errors(name: str) -> None:
    r = _full(name)
    fw = FRAMEWORK[name]
    assert r["keras_backend"] == fw
    ident = r["identity"]
    assert ident["name"] == name and ident["framework"] == "keras"
    assert set(ident["versions"]) == {"keras", fw}
    assert ident["device"] == "cpu" and ident["mode"] == ident["modes"][0]
    # Every declared mode is tested below (the default one by all the other tests).
    assert sorted(ident["modes"][1:]) == sorted(FAST_MODES[name] + SLOW_MODES.get(name, []))
    for other in sorted(set(FRAMEWORK) - {name}):
        expected = f"{other} needs KERAS_BACKEND={FRAMEWORK[other]} in its process, this process has {fw}"
        assert expected in r["errors"][other]
    assert "no mode 'nope'" in r["errors"]["mode"] and ident["modes"][0] in r["errors"]["mode"]
    if r["errors"]["cuda"]:  # empty where a CUDA device exists
        assert "cuda" in r["errors"]["cuda"] and "no CUDA device" in r["errors"]["cuda"]


@names
def test_weights_are_canonical_seeded_and_round_trip_exactly(name: str) -> None:
    r = _full(name)
    assert r["shapes"] == {k: list(v) for k, v in SPEC.weight_shapes().items()}
    assert r["dtypes"] == ["float32"]
    assert r["round_trip_exact"]
    assert r["init_same_seed_equal"] and r["init_other_seed_differs"]
    assert 0.99 < r["init_kernel_limit_ratio"] <= 1.0 and r["init_biases_zero"]


@names
def test_forward_and_loss_match_reference(name: str) -> None:
    r = _full(name)
    assert r["loss_shapes"] == [[16], [16], "float32"]
    assert r["kl_err"] <= 1.0 and r["nll_err"] <= 1.0, (r["kl_err"], r["nll_err"])
    assert r["encode_err"] <= ENCODE_DECODE_ATOL
    assert r["decode_shape"] == [[16, *SPEC.image_shape], "float32"]
    assert r["decode_err"] <= ENCODE_DECODE_ATOL
    assert r["keras_decoder_err"] <= ENCODE_DECODE_ATOL


@names
def test_gradients_match_reference(name: str) -> None:
    r = _full(name)
    assert r["grad_names"] and r["weights_unchanged_by_gradients"]
    assert r["grad_excess"] <= r["identity"]["gradient_atol"], r["grad_excess"]


def _check_adam(adam: dict[str, float]) -> None:
    assert adam["decrease"] > 0
    assert abs(adam["decrease"] - adam["ref_decrease"]) <= 0.01 * adam["ref_decrease"]
    assert adam["max_dev"] <= 2.1 * SPEC.learning_rate
    assert adam["step_loss"] == pytest.approx(adam["ref_step_loss"], rel=1e-5)


@names
def test_adam_step_matches_reference_and_set_weights_resets_it(name: str) -> None:
    r = _full(name)
    _check_adam(r["adam"])
    assert r["adam_after_reset_same"]
    assert math.isnan(r["loss_without_steps"])


@names
def test_training_learns(name: str) -> None:
    first = _full(name)["train_losses"]
    assert all(math.isfinite(v) for v in first)
    assert first[-1] < first[0] - 20, first


@pytest.mark.parametrize(
    ("name", "mode"),
    [pytest.param(n, m, id=f"{n}-{m}") for n, modes in FAST_MODES.items() for m in modes]
    + [pytest.param(n, m, id=f"{n}-{m}", marks=pytest.mark.slow) for n, modes in SLOW_MODES.items() for m in modes],
)
def test_other_modes_train_like_the_reference(name: str, mode: str) -> None:
    if mode in FAST_MODES[name]:
        r = _result(name)["modes"][mode]
    else:
        _skip_unless_available(name)
        r = _run(name, {"modes": [mode]})["modes"][mode]
    assert r["mode"] == mode
    _check_adam(r["adam"])
    losses = r["train_losses"]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses


if __name__ == "__main__":
    print(MARKER + json.dumps(_run_here(sys.argv[1], json.loads(sys.argv[2]))), flush=True)
