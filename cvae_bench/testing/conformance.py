"""The conformance suite as a base class: subclass it in a test module and every test runs on your backends.

    from cvae_bench.testing.conformance import ConformanceSuite

    class TestConformance(ConformanceSuite):
        backends = ("my-backend",)  # None (the default): every registered backend

Each backend runs in its own worker process, exactly as the harness runs it; a backend whose framework is
missing skips with the reason (fails under CVAE_BENCH_REQUIRE_ALL=1). The recipe checks themselves live in
`cvae_bench.conformance.checks`; the tests here assert on their results, so that a failure names what
differs. Test names are stable: `pytest -k trajectory` runs one check on every backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, cast

import numpy as np
import pytest

from cvae_bench.conformance import checks
from cvae_bench.conformance.checks import BackendLike, CheckResult, Probe
from cvae_bench.core.errors import WorkerError
from cvae_bench.data.evaluation import evaluate_job
from cvae_bench.models import DEFAULT_SPEC, reference
from cvae_bench.models.evaluator import Evaluator
from cvae_bench.runtime.worker import RemoteBackend, Worker
from cvae_bench.testing.support import (
    WorkerPool,
    available_names,
    backend_params,
    biased_weights,
    load_mnist,
    mnist_probe,
)
from cvae_bench.training.jobs import train_job
from cvae_bench.training.loop import TrainConfig

SPEC = DEFAULT_SPEC
EVAL_ATOL = 1e-4


def _ok(result: CheckResult) -> None:
    assert result.ok, str(result)


def _b(remote: RemoteBackend) -> BackendLike:
    return cast(BackendLike, remote)


class ConformanceSuite:
    """Every conformance test, parametrised over `backends` (`name`); subclass it as `Test…` to run it."""

    #: The registry names to test; None tests every registered backend.
    backends: ClassVar[tuple[str, ...] | None] = None

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrise `name` over the selected backends and `other` over those that can run here."""
        if "name" in metafunc.fixturenames:
            metafunc.parametrize("name", backend_params(self.backends))
        if "other" in metafunc.fixturenames:
            metafunc.parametrize("other", available_names(self.backends))

    # Class-scoped fixtures are classmethods: pytest 9 deprecates them as instance methods (each test gets
    # a new instance, so an attribute set on `self` here would be invisible), and pytest 8 accepts both.
    @pytest.fixture(scope="class")
    @classmethod
    def workers(cls) -> Iterator[WorkerPool]:
        """One worker per backend (and seed) for the whole class."""
        pool = WorkerPool()
        yield pool
        pool.close()

    @pytest.fixture(scope="class")
    @classmethod
    def mnist(cls) -> tuple[np.ndarray, ...]:
        """Real MNIST (x_train, y_train one-hot, x_test, y_test one-hot)."""
        return load_mnist()

    @pytest.fixture(scope="class")
    @classmethod
    def probe(cls) -> Probe:
        """The recipe checks' inputs on real MNIST, with the reference's answers cached."""
        return mnist_probe()

    # -- identity and weights ---------------------------------------------------------------------------
    def test_identity_and_capabilities(self, name: str, workers: WorkerPool) -> None:
        b = workers.get(name)
        assert b.info["backend"] == name
        assert b.info["versions"], "framework_versions() must name at least one framework"
        assert b.device.startswith("cpu")
        assert b.mode

    def test_weight_names_shapes_and_parameter_counts(self, name: str, workers: WorkerPool, probe: Probe) -> None:
        _ok(checks.check_weight_layout(_b(workers.get(name)), probe))

    def test_initialisation_is_glorot_uniform_and_seeded(self, name: str, workers: WorkerPool) -> None:
        initial = [workers.initial_weights(name, seed) for seed in (0, 1)]
        _ok(checks.check_initialisation(initial, SPEC, backend=name))

    def test_weights_move_between_backends_unchanged(self, name: str, other: str, workers: WorkerPool) -> None:
        w = biased_weights(seed=11)
        workers.get(name).set_weights(w)
        moved = workers.get(name).get_weights()
        workers.get(other).set_weights(moved)
        back = workers.get(other).get_weights()
        for k in w:
            np.testing.assert_array_equal(back[k], w[k], err_msg=f"{name} -> {other}: {k}")

    # -- the model and its loss -------------------------------------------------------------------------
    def test_loss_parts_match_reference(self, name: str, workers: WorkerPool, probe: Probe) -> None:
        _ok(checks.check_loss_parts(_b(workers.get(name)), probe))

    def test_encode_decode_match_reference(self, name: str, workers: WorkerPool, probe: Probe) -> None:
        _ok(checks.check_encode_decode(_b(workers.get(name)), probe))

    def test_gradients_match_reference(self, name: str, workers: WorkerPool, probe: Probe) -> None:
        _ok(checks.check_gradients(_b(workers.get(name)), probe))

    def test_evaluator_agrees_with_reference(self, name: str, workers: WorkerPool, mnist: tuple[Any, ...]) -> None:
        b = workers.get(name)
        w = biased_weights()
        b.set_weights(w)
        x_val, y_val = mnist[2], mnist[3]
        got = b.run_job(evaluate_job, weights=w)
        ref = reference.evaluator_parts(w, x_val, y_val, Evaluator(x_val, y_val, SPEC).eps)
        assert abs(got.val_elbo - float(ref.total.mean())) <= EVAL_ATOL
        assert abs(got.kl - float(ref.kl.mean())) <= EVAL_ATOL

    # -- the optimiser and the training path ------------------------------------------------------------
    def test_one_adam_step_matches_reference(self, name: str, workers: WorkerPool, probe: Probe) -> None:
        _ok(checks.check_first_step(_b(workers.get(name)), probe))

    def test_adam_trajectory_matches_reference(self, name: str, workers: WorkerPool, probe: Probe) -> None:
        _ok(checks.check_trajectory(_b(workers.get(name)), probe))

    def test_take_loss_and_synchronize_wait_for_the_steps(self, name: str, workers: WorkerPool, probe: Probe) -> None:
        """Timings end on take_loss() (and data loading on synchronize()): both must wait for the steps before
        them. Checked through the values they leave, never through time."""
        _ok(checks.check_clock(_b(workers.get(name)), probe))

    def test_training_path_noise_and_batch_order(self, name: str, workers: WorkerPool, probe: Probe) -> None:
        _ok(checks.check_training_path(_b(workers.get(name)), probe))

    def test_training_is_repeatable_and_learns(self, name: str, workers: WorkerPool) -> None:
        """Two backends built with one seed, one after the other in a fresh process, train identically
        (no state leaks from the first into the second: global generators, caches, compiled functions)."""
        runs = []
        with Worker(workers.get(name).worker.info) as worker:
            for _ in range(2):
                fresh = RemoteBackend(worker, SPEC, seed=3)
                job = fresh.run_job(
                    train_job,
                    config=TrainConfig(epochs=2, seed=3, log_every=5),
                    train_subset=640,
                    val_subset=500,
                )
                runs.append(job.outcome.history)
        first, second = runs
        assert [h.val_elbo for h in first] == [h.val_elbo for h in second]
        assert job.outcome.audit is not None and job.outcome.audit.ok, job.outcome.audit
        assert [h.train_loss for h in first] == [h.train_loss for h in second]
        last, start = first[-1], first[0]
        assert last.val_elbo < start.val_elbo + 1e-3 or (last.train_loss or 0.0) < (start.train_loss or 0.0)

    def test_training_state_resumes_exactly(self, name: str, workers: WorkerPool, mnist: tuple[Any, ...]) -> None:
        """get_train_state after 3 steps, 3 more steps; then the weights and state put back and the same 3
        steps again: the same weights (what `run --resume` relies on)."""
        b = workers.get(name)
        x, y = mnist[0][:640], mnist[1][:640]
        order = np.random.default_rng(5).permutation(len(x))
        b.set_weights(reference.init_weights(3, SPEC))
        b.load_train_data(x, y)
        b.set_order(order)
        for i in range(3):
            b.train_step(i)
        try:
            weights, state = b.get_weights(), b.get_train_state()
        except WorkerError as exc:  # a foreign NotImplementedError in the worker
            if "get_train_state" in str(exc):
                pytest.skip(f"backend {name!r} does not implement get_train_state(): its runs cannot be resumed")
            raise
        for i in range(3, 6):
            b.train_step(i)
        want = b.get_weights()
        b.set_weights(weights)
        b.set_train_state(state)
        b.set_order(order)
        for i in range(3, 6):
            b.train_step(i)
        b.take_loss()
        got = b.get_weights()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-6, err_msg=key)
