"""The run-time audit: a faithful port passes it and trains as if unaudited, its steps stay out of the timed
parts, its plan and findings survive a resume, and its tolerances hold on the real float32 backends (slow).

The mutants it catches are in tests/test_mutants.py. Everything here but the `slow` tests runs the float64
port in this process on a few real MNIST batches.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cvae_bench.backends.base import Backend
from cvae_bench.models import DEFAULT_SPEC
from cvae_bench.models.evaluator import Evaluator
from cvae_bench.testing.mutants import PortBackend
from cvae_bench.testing.support import REQUIRE_ALL, WorkerPool, available_names, load_mnist
from cvae_bench.training.audit import AUDIT_TOLERANCES, AuditPlan
from cvae_bench.training.checkpoint import load_checkpoint
from cvae_bench.training.convergence import assess_convergence
from cvae_bench.training.loop import TrainConfig, train
from cvae_bench.training.noise_ledger import NoiseLedger
from cvae_bench.training.records import TrainOutcome

SPEC = DEFAULT_SPEC
#: Two full batches and a short one of 8: every epoch has a short last batch.
EXAMPLES = 136


def _train(cls: type[Backend], epochs: int = 3, **kw: Any) -> TrainOutcome:
    x, y, x_val, y_val = load_mnist()
    config = TrainConfig(epochs=epochs, recipe_check=False, audit=kw.pop("audit", True))
    evaluator = Evaluator(x_val[:100], y_val[:100], SPEC)
    return train(cls(SPEC, 0), x[:EXAMPLES], y[:EXAMPLES], evaluator, config, **kw)


def test_the_plan_depends_on_seed_and_epoch_and_always_takes_the_epoch_boundary() -> None:
    plan, batch, n = AuditPlan(), 64, 60_000
    per_epoch = -(-n // batch)
    order = np.random.default_rng(0).permutation(n)
    first, second = plan.steps(0, 0, order, batch), plan.steps(0, 1, order, batch)
    assert first == plan.steps(0, 0, order, batch), "the plan is a function of (seed, epoch, order)"
    assert 0 not in first, "the run's first step (compilation) is never audited"
    assert {0, per_epoch - 1} <= set(second) and per_epoch - 1 in first
    (tracked,) = plan.tracked(0, n)
    where = int(np.flatnonzero(order == tracked)[0]) // batch
    assert where in first and where in second, "the batch holding the tracked example is audited"
    assert len(second) <= 2 + plan.tracked_examples + plan.random_steps
    other_seed = [plan.steps(seed, 1, order, batch) for seed in range(1, 6)]
    assert any(steps != second for steps in other_seed), "another seed audits other steps"


def test_a_faithful_port_passes_the_audit_and_trains_as_if_unaudited() -> None:
    audited, unaudited = _train(PortBackend), _train(PortBackend, audit=False)
    audit = audited.audit
    assert audit is not None and audit.ok, audit
    assert unaudited.audit is None
    assert audit.points >= 2 + 2 * 2 and audit.seconds > 0  # the last batch of each epoch, the first of each after
    assert set(audit.worst) >= {"loss", "weights", "m", "v", "shrink", "noise z", "seeding noise z"}
    assert max(audit.worst.values()) < 1.0
    # The audit only reads the backend: the same weights at every evaluation, the same loss up to rounding
    # (an audited step is a part of the chunk of its own).
    assert [(h.step, h.val_elbo, h.kl) for h in audited.history] == [
        (h.step, h.val_elbo, h.kl) for h in unaudited.history
    ]
    assert [h.train_loss for h in audited.history] == pytest.approx([h.train_loss for h in unaudited.history])
    assert assess_convergence(audited, SPEC, "mnist").verdict == "unchecked"  # a subset: no band, no finding


class _CallLog(PortBackend):
    """The port, recording the contract methods the loop and the audit call, in order."""

    calls: list[str]

    def __init__(self, spec: Any, seed: int, device: str = "cpu", mode: str | None = None) -> None:
        super().__init__(spec, seed, device, mode)
        self.calls = []

    def train_step(self, index: int) -> None:
        self.calls.append("train_step")
        super().train_step(index)

    def take_loss(self) -> float:
        self.calls.append("take_loss")
        return super().take_loss()

    def adam_state(self) -> dict[str, np.ndarray]:
        self.calls.append("adam_state")
        return super().adam_state()


def test_audited_steps_stay_outside_the_timed_parts() -> None:
    """Before the audit's first read, the part under way has been closed with take_loss; the audited step is
    followed by its own take_loss; so no timed part holds an audited step or the audit's work."""
    x, y, x_val, y_val = load_mnist()
    backend = _CallLog(SPEC, 0)
    outcome = train(
        backend,
        x[:EXAMPLES],
        y[:EXAMPLES],
        Evaluator(x_val[:100], y_val[:100], SPEC),
        TrainConfig(epochs=2, recipe_check=False, log_every=100),
    )
    calls = backend.calls
    audited = [i for i, c in enumerate(calls) if i and c == "train_step" and calls[i - 1] == "adam_state"]
    assert outcome.audit is not None and len(audited) == outcome.audit.points > 0
    for i in audited:
        assert calls[i + 1] == "take_loss", "the audited step is waited for at once, and alone"
        before = calls[:i]
        snapshot = len(before) - 1 - before[::-1].index("adam_state")
        last_step = max((j for j in range(snapshot) if calls[j] == "train_step"), default=-1)
        assert "take_loss" in calls[last_step + 1 : snapshot], "the timed part was closed before the audit's reads"


class _Float32Port(PortBackend):
    """The port with its weights rounded to float32 after every step, as a float32 backend keeps them, so that
    a checkpoint (float32 weights) holds its whole state and a resumed run goes on bit for bit."""

    def train_step_with_eps(self, x: np.ndarray, y: np.ndarray, eps: np.ndarray) -> None:
        super().train_step_with_eps(x, y, eps)
        self.adam.weights = {k: v.astype(np.float32).astype(np.float64) for k, v in self.adam.weights.items()}


def test_a_resumed_run_audits_as_the_uninterrupted_one(tmp_path: Path) -> None:
    whole = _train(_Float32Port, epochs=2, checkpoint_to=tmp_path)  # leaves its checkpoint after epoch 1
    checkpoint = load_checkpoint(tmp_path, SPEC)
    assert checkpoint is not None and checkpoint.loop.audit is not None and checkpoint.loop.audit.points > 0
    resumed = _train(_Float32Port, epochs=2, resume=checkpoint)
    assert [(h.step, h.val_elbo, h.train_loss) for h in resumed.history] == [
        (h.step, h.val_elbo, h.train_loss) for h in whole.history
    ]
    assert whole.audit is not None and resumed.audit is not None
    assert (resumed.audit.points, resumed.audit.failed, resumed.audit.worst) == (
        whole.audit.points,
        whole.audit.failed,
        whole.audit.worst,
    )


class _NoAdamState(PortBackend):
    """A port that does not implement the audit's hook."""

    def adam_state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"backend {self.name!r} does not implement adam_state()")


class _StepsOutsideTrainStep(PortBackend):
    """A port whose weights move at each new epoch's set_order (a hidden extra step)."""

    def set_order(self, order: np.ndarray) -> None:
        super().set_order(order)
        self.adam.weights = {k: v * 0.999 for k, v in self.adam.weights.items()}


@pytest.mark.parametrize(
    "cls, finding",
    [(_NoAdamState, "does not implement adam_state()"), (_StepsOutsideTrainStep, "changed since the step before")],
    ids=["no-adam-state", "change-at-set-order"],
)
def test_a_run_the_audit_cannot_follow_is_deviant(cls: type[Backend], finding: str) -> None:
    outcome = _train(cls, epochs=2)
    assert outcome.audit is not None and not outcome.audit.ok
    assert any(finding in line for line in outcome.audit.failed), outcome.audit.failed
    verdict = assess_convergence(outcome, SPEC, "mnist")
    assert verdict.deviant and any(r.startswith("audit: ") and finding in r for r in verdict.reasons)


def test_the_noise_ledger_sees_a_repeated_draw_and_not_fresh_ones() -> None:
    rng, ledger = np.random.default_rng(0), NoiseLedger()
    same = rng.standard_normal((5, 2))
    assert ledger.compare("example 1", same, 0, AUDIT_TOLERANCES.same_cosine) == []
    for epoch in range(1, 20):
        assert ledger.compare("example 2", rng.standard_normal((5, 2)), epoch, AUDIT_TOLERANCES.same_cosine) == []
    (repeat,) = ledger.compare("example 1", same.copy(), 3, AUDIT_TOLERANCES.same_cosine)
    assert (repeat.epoch, repeat.earlier_epoch) == (3, 0) and repeat.cosine > 0.9999
    back = NoiseLedger.from_json(json.loads(json.dumps(ledger.to_json())))
    assert back == ledger, "a checkpoint carries the ledger exactly"


# -- the real backends (slow) ------------------------------------------------------------------------------
@pytest.mark.slow  # 2 min 16 s on the quiet 2-core machine: two epochs of full MNIST on each of 4 backends
def test_audit_tolerances_hold_on_the_real_backends(capsys: pytest.CaptureFixture[str]) -> None:
    """Two epochs of full MNIST per built-in backend, every 25th step (and every epoch's short last batch)
    replayed with the reference: the float32 error of each comparison stays within AUDIT_TOLERANCES, and
    the table printed is the measurement docs/design.md quotes."""
    from tests.worker_jobs import audit_errors

    load_mnist()
    tol = AUDIT_TOLERANCES
    limits = {"loss": tol.loss_rel, "weights": tol.weights_rel, "m": tol.m_rel, "v": tol.v_rel}
    limits["shrink"] = tol.shrink
    names = [n for n in ("torch", "keras-jax", "keras-tensorflow", "keras-torch") if n in available_names()]
    if not names and not REQUIRE_ALL:
        pytest.skip("no built-in backend can run here")
    rows, over = [], []
    pool = WorkerPool()
    try:
        for name in names:
            found: Mapping[str, list[float]] = pool.get(name).run_job(audit_errors, steps=1876, every=25)
            worst = {k: max(found[k]) for k in limits}
            rows.append(f"| {name} | {len(found['step'])} | " + " | ".join(f"{worst[k]:.2g}" for k in limits) + " |")
            over += [f"{name}: {k} {worst[k]:.3g} > {limits[k]:.3g}" for k in limits if worst[k] > limits[k]]
    finally:
        pool.close()
    header = "| backend | steps | " + " | ".join(limits) + " |"
    with capsys.disabled():
        print("\n" + "\n".join([header, "|---" * (len(limits) + 2) + "|", *rows]))
    assert not over, over


@pytest.mark.slow  # a worker, the recipe check and two epochs of the numpy plugin: ~5 s quiet, 30 s busy
def test_a_run_of_the_numpy_plugin_records_its_audit(tmp_path: Path) -> None:
    if "numpy" not in available_names():
        pytest.skip("the example numpy plugin is not installed (pip install -e examples/numpy_plugin)")
    load_mnist()
    args = ("run", "--backend", "numpy", "--train-subset", "2048", "--val-subset", "1000", "--epochs", "2")
    done = subprocess.run(
        [sys.executable, "-m", "cvae_bench", *args, "--out", str(tmp_path), "--quiet", "--no-report"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    audit = result["audit"]
    assert audit["points"] >= 4 and audit["failed"] == [] and audit["seconds"] > 0, audit
    assert result["convergence"]["verdict"] == "unchecked"  # a subset: no band, and nothing found


class _NoFirstNoiseHook(PortBackend):
    """A port without `first_train_noise`: the audit takes a step on a throwaway seed + 1 instance instead."""

    def first_train_noise(self, seed: int, batch: int) -> np.ndarray:
        raise NotImplementedError(f"backend {self.name!r} does not implement first_train_noise()")


class _NoiseSeededOtherwise(PortBackend):
    """A port whose training noise ignores the seed while `first_train_noise` follows it."""

    def __init__(self, spec: Any, seed: int, device: str = "cpu", mode: str | None = None) -> None:
        super().__init__(spec, seed, device, mode)
        self.noise_rng = np.random.default_rng(12345)


@pytest.mark.parametrize(
    "cls, finding",
    [
        (_NoFirstNoiseHook, ""),
        (_NoiseSeededOtherwise, "is not what first_train_noise(0) says"),
    ],
    ids=["without-the-hook", "hook-that-does-not-hold"],
)
def test_the_seeding_check_with_and_without_first_train_noise(cls: type[Backend], finding: str) -> None:
    audit = _train(cls, epochs=1).audit
    assert audit is not None and "seeding noise z" in audit.worst, audit  # the seed + 1 draw was compared
    if finding:
        assert any(finding in line for line in audit.failed), audit.failed
    else:
        assert audit.ok, audit
