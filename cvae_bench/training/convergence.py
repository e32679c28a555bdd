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

REFERENCE_BANDS: dict[str, ReferenceBand] = {
    "mnist": ReferenceBand(
        dataset="mnist",
        train_examples=60000,
        centre=TUTORIAL_VAL_LOSS,
        half_width=(3.0, 2.5, 2.0, 1.75, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5),
        how="centre: the tutorial's val_loss per epoch; half-width: the spread measured over built-in backends "
        "and seeds (docs/design.md, 'The convergence band'), with a margin",
    ),
}


def assess_convergence(outcome: TrainOutcome, spec: ModelSpec, dataset: str) -> ConvergenceVerdict:
    """`consistent`, `deviant` (with every reason) or `unchecked` (no band for this data or recipe)."""
    if outcome.status == "diverged" and outcome.divergence is not None:
        d = outcome.divergence
        return ConvergenceVerdict("deviant", [f"diverged: {d.what} {d.value} at step {d.step}"])
    band = REFERENCE_BANDS.get(dataset)
    if band is None or not band.applies_to(outcome, spec, dataset):
        return ConvergenceVerdict("unchecked", ["no reference band for this data set, subset or model spec"])
    reasons = []
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
        return ConvergenceVerdict("unchecked", ["no evaluation at a whole epoch inside the band"], band.how)
    return ConvergenceVerdict("deviant" if reasons else "consistent", reasons, band.how)
