"""The convergence check: a run's history against the reference recipe's band."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cvae_bench.models import DEFAULT_SPEC
from cvae_bench.training.convergence import REFERENCE_BANDS, assess_convergence
from cvae_bench.training.records import DataUsed, Divergence, EvalPoint, TrainOutcome

BAND = REFERENCE_BANDS["mnist"]


def _outcome(values: list[float], train_examples: int = 60000, every: float = 1.0) -> TrainOutcome:
    history = [
        EvalPoint(step=int(938 * every * (i + 1)), epoch=every * (i + 1), val_elbo=v, kl=5.0, nll=v - 5.0)
        for i, v in enumerate(values)
    ]
    return TrainOutcome(
        status="fixed-epochs",
        target=None,
        reached=None,
        steps_to_target=None,
        epochs_to_target=None,
        time_to_target_s=None,
        wall_time_to_target_s=None,
        first_step_s=0.1,
        data_load_s=0.0,
        ms_per_step_median=1.0,
        steps=938 * len(values),
        epochs=float(len(values)),
        steps_per_epoch=938,
        train_time_s=1.0,
        eval_time_s=0.1,
        final=None,
        history=history,
        data=DataUsed("mnist", train_examples, 10000),
    )


def test_the_tutorial_itself_is_consistent() -> None:
    verdict = assess_convergence(_outcome(list(BAND.centre)), DEFAULT_SPEC, "mnist")
    assert verdict.verdict == "consistent" and not verdict.reasons and verdict.band == BAND.how


@pytest.mark.parametrize("sign, word", [(-1, "faster"), (+1, "slower")])
def test_a_run_outside_the_band_is_deviant_and_says_where(sign: int, word: str) -> None:
    values = list(BAND.centre)
    values[2] += sign * (BAND.half_width[2] + 0.01)
    verdict = assess_convergence(_outcome(values), DEFAULT_SPEC, "mnist")
    assert verdict.deviant
    (reason,) = verdict.reasons
    assert reason.startswith("epoch 3:") and word in reason


def test_a_diverged_run_is_deviant() -> None:
    outcome = replace(_outcome([250.0]), status="diverged", divergence=Divergence(32, "training loss", "nan"))
    verdict = assess_convergence(outcome, DEFAULT_SPEC, "mnist")
    assert verdict.deviant and "diverged: training loss nan at step 32" in verdict.reasons[0]


def test_runs_the_band_was_not_measured_for_are_unchecked_not_passed() -> None:
    values = [300.0] * 3  # far outside the band, but on other data or another recipe
    assert assess_convergence(_outcome(values, train_examples=6400), DEFAULT_SPEC, "mnist").verdict == "unchecked"
    assert assess_convergence(_outcome(values), DEFAULT_SPEC, "fashion-mnist").verdict == "unchecked"
    other = replace(DEFAULT_SPEC, learning_rate=1e-2)
    assert assess_convergence(_outcome(values), other, "mnist").verdict == "unchecked"


def test_only_whole_epochs_are_held_to_the_band() -> None:
    values = [400.0, BAND.centre[0]]  # epoch 0.5 has no reference point; epoch 1 is on the centre
    assert assess_convergence(_outcome(values, every=0.5), DEFAULT_SPEC, "mnist").verdict == "consistent"
