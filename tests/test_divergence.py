"""Divergence: weights the optimiser has lost stop a run, every diverged run says so, evaluate refuses
overflowing weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cvae_bench.backends import registry
from cvae_bench.models import DEFAULT_SPEC, reference
from cvae_bench.models.evaluator import Evaluator
from cvae_bench.runtime.files import save_weights
from cvae_bench.testing.mutants import PortBackend
from cvae_bench.testing.support import load_mnist
from cvae_bench.training.divergence import blown_weights, weight_bound
from cvae_bench.training.loop import TrainConfig, train
from cvae_bench.training.run import outcome_phrase

ROOT = Path(__file__).resolve().parent.parent


def test_the_bound_is_where_an_adam_step_no_longer_changes_a_float32_weight() -> None:
    bound = np.float32(weight_bound(DEFAULT_SPEC))
    step = np.float32(DEFAULT_SPEC.learning_rate)
    assert bound + step == bound  # lost: the step is below half an ulp
    assert np.float32(bound / 4) + step != bound / 4  # a quarter of it still moves


def test_weights_are_held_to_the_bound_and_to_finiteness() -> None:
    weights = reference.init_weights(0)
    assert blown_weights(weights, DEFAULT_SPEC, 1) is None
    name = sorted(weights)[3]
    for bad, says in ((1e30, "1e+30"), (np.nan, "nan"), (-np.inf, "-inf")):
        blown = {**weights, name: np.full_like(weights[name], bad)}
        d = blown_weights(blown, DEFAULT_SPEC, 7)
        assert d is not None and d.step == 7 and name in d.what and d.value == says


class _HiddenBlowUp(PortBackend):
    """A port whose decoder's last bias reads 1e30 from its third step on, while the loss stays finite:
    the blow-up the evaluation does not show (a saturated output layer hides it)."""

    steps = 0

    def train_step(self, index: int) -> None:
        super().train_step(index)
        self.steps += 1

    def get_weights(self) -> dict[str, np.ndarray]:
        weights = super().get_weights()
        if self.steps >= 3:
            last = sorted(k for k in weights if k.startswith("decoder.") and k.endswith(".bias"))[-1]
            weights[last] = weights[last] + np.float32(1e30)
        return weights


def test_weights_blown_up_stop_the_run_as_diverged_and_the_line_says_so() -> None:
    x, y, x_val, y_val = load_mnist()
    backend = _HiddenBlowUp(DEFAULT_SPEC, 0)
    config = TrainConfig(epochs=3, eval_every=2, recipe_check=False, audit=False, seed=0)
    outcome = train(backend, x[:256], y[:256], Evaluator(x_val[:100], y_val[:100], DEFAULT_SPEC), config)
    assert outcome.status == "diverged"
    assert (
        outcome.divergence is not None and outcome.divergence.step == 4 and "weight decoder" in outcome.divergence.what
    )
    assert outcome.steps == 4  # stopped at once, not trained on for the remaining epochs
    assert outcome_phrase(outcome).startswith("diverged: weight decoder")


def test_a_healthy_run_is_not_stopped_by_the_bound() -> None:
    x, y, x_val, y_val = load_mnist()
    config = TrainConfig(epochs=1, eval_every=2, recipe_check=False, audit=False, seed=0)
    outcome = train(
        PortBackend(DEFAULT_SPEC, 0), x[:256], y[:256], Evaluator(x_val[:100], y_val[:100], DEFAULT_SPEC), config
    )
    assert outcome.status == "fixed-epochs"


@pytest.mark.skipif(not registry.get("torch").available, reason="torch is not installed")
def test_evaluate_on_overflowing_weights_is_one_error_line(tmp_path: Path) -> None:
    load_mnist()
    weights = {k: v * np.float32(1e30) if k.endswith("kernel") else v for k, v in reference.init_weights(0).items()}
    path = tmp_path / "w.safetensors"
    save_weights(path, weights)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cvae_bench",
            "evaluate",
            "--backend",
            "torch",
            "--weights",
            str(path),
            "--val-subset",
            "50",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "non-finite val -ELBO" in lines[0], proc.stderr
    assert "val -ELBO" not in proc.stdout
