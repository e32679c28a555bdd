"""The convergence check every run gets: its val −ELBO history against the reference recipe's band.

As MLPerf accepts a training result only when its convergence is consistent with the reference's, a run
whose history leaves the band — faster *or* slower than the tutorial's recipe trains, by more than the
measured spread of correct backends and seeds — is marked `deviant`. It is still shown, with its
time-to-target, but never silently ranked as a win. How the band was made is in `REFERENCE_BANDS` and in
docs/design.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec
from cvae_bench.training.records import ConvergenceVerdict, TrainOutcome


@dataclass(frozen=True)
class ReferenceBand:
    """Val −ELBO after whole epochs 1, 2, … of the reference recipe: a centre and a half-width per epoch.

    Attributes:
        dataset: the data set the band was measured on (full training and validation sets).
        train_examples: the training-set size it applies to.
        centre: the expected val −ELBO after epoch 1, 2, …
        half_width: how far a correct run may be from the centre at that epoch.
        how: how the band was made, stated in every result that uses it.
    """

    dataset: str
    train_examples: int
    centre: tuple[float, ...]
    half_width: tuple[float, ...]
    how: str
    spec: ModelSpec = DEFAULT_SPEC

    def applies_to(self, outcome: TrainOutcome, spec: ModelSpec, dataset: str) -> bool:
        """Whether a run's data and recipe are the ones the band was measured with."""
        used = outcome.data
        return (
            dataset == self.dataset
            and spec == self.spec
            and used is not None
            and used.train_examples == self.train_examples
        )


#: The tutorial's own val_loss after epochs 1…10 (Keras on tensorflow, one seed).
TUTORIAL_VAL_LOSS = (243.71, 239.35, 237.24, 235.97, 235.24, 234.93, 234.66, 234.29, 234.04, 233.74)

#: Measured: val −ELBO after each epoch of correct runs on full MNIST, 7 runs of 10 epochs (keras-jax and torch,
#: seeds 10–12, `cvae-bench run --backend keras-jax,torch --repeats 3 --seed 10 --epochs 10 --threads 1` and
#: one torch seed-10 run with 2 threads) plus the README's fidelity table (4 built-in backends, seed 0, epochs
#: 1, 5, 10): the centre is their mean per epoch; the half-width is the largest of 4 standard deviations of
#: those runs, the tutorial's own value plus 0.5 nats (the tutorial's val_loss is a noisier estimate), and
#: 1 nat. A correct run falls outside it with odds of about 1e-4 per epoch if the spread is normal.
MEASURED_CENTRE = (242.26, 238.39, 236.87, 235.98, 235.36, 234.91, 234.56, 234.27, 234.01, 233.89)
MEASURED_HALF_WIDTH = (2.87, 1.46, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)

REFERENCE_BANDS: dict[str, ReferenceBand] = {
    "mnist": ReferenceBand(
        dataset="mnist",
        train_examples=60000,
        centre=MEASURED_CENTRE,
        half_width=MEASURED_HALF_WIDTH,
        how="val -ELBO per epoch of 11 correct runs (4 backends, 7 seeds): mean +- max(4 sd, tutorial + 0.5, 1) nats",
    ),
}


def assess_convergence(outcome: TrainOutcome, spec: ModelSpec, dataset: str) -> ConvergenceVerdict:
    """`consistent`, `deviant` (with every reason) or `unchecked` (no band for this data or recipe).

    A run that failed the recipe check or the run-time audit is deviant whatever its history.
    """
    recipe, audit = outcome.recipe_check, outcome.audit
    failed = [f"recipe check: {line}" for line in recipe.failed] if recipe is not None else []
    if audit is not None:
        failed += [f"audit: {line}" for line in audit.failed]
        if audit.findings > len(audit.failed):
            failed.append(f"audit: {audit.findings - len(audit.failed)} more findings")
    if outcome.status == "diverged" and outcome.divergence is not None:
        d = outcome.divergence
        return ConvergenceVerdict("deviant", [f"diverged: {d.what} {d.value} at step {d.step}", *failed])
    band = REFERENCE_BANDS.get(dataset)
    if band is None or not band.applies_to(outcome, spec, dataset):
        if failed:
            return ConvergenceVerdict("deviant", failed)
        return ConvergenceVerdict("unchecked", ["no reference band for this data set, subset or model spec"])
    reasons = list(failed)
    checked = 0
    for point in outcome.history:
        epoch = round(point.epoch)
        if not math.isclose(point.epoch, epoch, abs_tol=1e-9) or not 1 <= epoch <= len(band.centre):
            continue
        checked += 1
        centre, width = band.centre[epoch - 1], band.half_width[epoch - 1]
        if point.val_elbo < centre - width:
            reasons.append(
                f"epoch {epoch}: val -ELBO {point.val_elbo:.2f} is below the reference band "
                f"{centre - width:.2f}–{centre + width:.2f}: faster than the recipe trains"
            )
        elif point.val_elbo > centre + width:
            reasons.append(
                f"epoch {epoch}: val -ELBO {point.val_elbo:.2f} is above the reference band "
                f"{centre - width:.2f}–{centre + width:.2f}: slower than the recipe trains"
            )
    if not checked:
        if failed:
            return ConvergenceVerdict("deviant", failed, band.how)
        return ConvergenceVerdict("unchecked", ["no evaluation at a whole epoch inside the band"], band.how)
    return ConvergenceVerdict("deviant" if reasons else "consistent", reasons, band.how)
