"""The recipe check of every run: a backend that trains unlike the recipe is marked deviant, a faithful one not."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cvae_bench.backends.base import Backend
from cvae_bench.models import DEFAULT_SPEC
from cvae_bench.testing import mutants
from cvae_bench.testing.support import load_mnist
from cvae_bench.training.convergence import assess_convergence
from cvae_bench.training.jobs import train_job
from cvae_bench.training.loop import TrainConfig
from cvae_bench.training.recipe import check_recipe, probe_examples


def _run(cls: type[Backend], **config: Any) -> Any:
    load_mnist()  # skip (or fail under CI) where MNIST is missing
    backend = cls(DEFAULT_SPEC, 0)
    job = train_job(
        backend,
        lambda event: None,
        config=TrainConfig(epochs=1, **config),
        train_subset=probe_examples(DEFAULT_SPEC.batch_size),
        val_subset=200,
    )
    return job.outcome


@pytest.mark.parametrize(
    "cls, check",
    [(mutants.AdamBeta2, "trajectory"), (mutants.ZeroNoise, "training_path"), (mutants.DropLastBatch, "training_path")],
    ids=["beta2-0.99", "zero-noise", "drop-last-batch"],
)
def test_a_run_of_a_mutant_is_deviant_and_says_why(cls: type[Backend], check: str) -> None:
    outcome = _run(cls)
    assert outcome.recipe_check is not None and not outcome.recipe_check.ok
    assert any(line.startswith(check) for line in outcome.recipe_check.failed), outcome.recipe_check.failed
    verdict = assess_convergence(outcome, DEFAULT_SPEC, "mnist")  # a subset: no band, but the check speaks
    assert verdict.deviant and any(r.startswith(f"recipe check: {check}") for r in verdict.reasons)


def test_a_faithful_port_passes_and_trains_as_if_unchecked() -> None:
    checked, unchecked = _run(mutants.PortBackend), _run(mutants.PortBackend, recipe_check=False)
    assert checked.recipe_check is not None and checked.recipe_check.ok, checked.recipe_check.failed
    assert "trajectory" in checked.recipe_check.ran and "initialisation" in checked.recipe_check.ran
    assert unchecked.recipe_check is None
    # The check puts back the initial weights and training state: the history is the unchecked one.
    assert [(h.step, h.val_elbo) for h in checked.history] == [(h.step, h.val_elbo) for h in unchecked.history]
    assert assess_convergence(checked, DEFAULT_SPEC, "mnist").verdict == "unchecked"  # subset: no band


def test_too_few_examples_skip_the_check_and_say_so() -> None:
    x = np.zeros((10, *DEFAULT_SPEC.image_shape), np.float32)
    result = check_recipe(mutants.PortBackend(DEFAULT_SPEC, 0), x, np.zeros((10, 10), np.float32))
    assert result.ok and not result.ran and "the probe needs 1920" in result.skipped
