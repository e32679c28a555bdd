"""Mutation testing of the conformance checks and the run-time audit: the faithful port passes, every mutant
fails, every kind has one.

The mutants (cvae_bench.testing.mutants) run in this process; the checks are the conformance suite's own
(cvae_bench.conformance.checks), the audit the training loop's (cvae_bench.training.audit, in a short run).
The mutation score is printed as a table and must be 100 %. The two heavy tests are `slow`:
`pytest -m slow tests/test_mutants.py`; the mutants that only the audit or the clock check can see are
checked by default, each where it is caught.
"""

from __future__ import annotations

import pytest

from cvae_bench.conformance.checks import Probe, check_clock
from cvae_bench.models import DEFAULT_SPEC
from cvae_bench.testing import mutants
from cvae_bench.testing.mutants import KINDS, MUTANTS, Mutant, PortBackend, audited_run, kill
from cvae_bench.testing.support import mnist_probe


@pytest.fixture(scope="module")
def probe() -> Probe:
    return mnist_probe()


def test_every_mutant_kind_has_a_mutant() -> None:
    covered = {m.kind for m in MUTANTS}
    assert not set(KINDS) - covered, f"mutant kinds without a mutant: {sorted(set(KINDS) - covered)}"
    assert covered <= set(KINDS), f"mutants of undeclared kinds: {sorted(covered - set(KINDS))}"


@pytest.mark.slow  # ~100 s of float64 NumPy training on a loaded 2-core machine
def test_the_faithful_port_passes_every_check(probe: Probe) -> None:
    results = kill(PortBackend, probe, stop_at_first=False)
    failed = [str(r) for r in results if not r.ok]
    assert not failed, "\n".join(failed)


@pytest.mark.slow  # ~6 min on a loaded 2-core machine: 37 mutants, the training-path ones train 18 steps each
def test_mutation_score_is_100_percent(probe: Probe, capsys: pytest.CaptureFixture[str]) -> None:
    rows, survivors = [], []
    for mutant in MUTANTS:
        last = kill(mutant.cls, probe, run=mutant.run)[-1]
        if last.ok:
            survivors.append(f"{mutant.name} ({mutant.kind}): {mutant.description}")
            rows.append(f"| {mutant.kind} | {mutant.name} | SURVIVED | |")
        else:
            rows.append(f"| {mutant.kind} | {mutant.name} | {last.check} | {last.differences[0]} |")
    killed = len(MUTANTS) - len(survivors)
    table = "\n".join(["| kind | mutant | killed by | what differs |", "|---|---|---|---|", *rows])
    with capsys.disabled():
        print(f"\nmutation score {killed}/{len(MUTANTS)} = {100 * killed / len(MUTANTS):.0f} %\n{table}")
    assert not survivors, "mutants the conformance checks let through:\n" + "\n".join(survivors)


def _mutant(cls: type[PortBackend]) -> Mutant:
    (found,) = [m for m in MUTANTS if m.cls is cls]
    return found


@pytest.mark.parametrize(
    "cls, finding",
    [
        (mutants.LateLearningRateDecay, "weights: "),
        (mutants.FullDataBeta2, "Adam's v: "),
        (mutants.DecoupledWeightDecay, "scaled the kernels by 1 − 1e-06"),
        (mutants.PerExampleFixedNoise, "repeats epoch 1's"),
        (mutants.SeedIndependentNoise, "the noise ignores the seed"),
        (mutants.ShortBatchDenominator, "8 examples): loss "),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_the_audit_catches_what_the_recipe_check_does_not_see(cls: type[PortBackend], finding: str) -> None:
    """Each of these trains by the recipe on the probes (the slow score test shows the checks letting them
    through) and leaves it where the run goes on: later, on more data, across epochs or seeds, in short batches."""
    audit = audited_run(cls, _mutant(cls).run, DEFAULT_SPEC)
    assert not audit.ok, f"{cls.__name__} passed the audit: {audit}"
    assert any(finding in line for line in audit.failed), audit.failed


def test_the_faithful_port_passes_the_clock_check(probe: Probe) -> None:
    result = check_clock(PortBackend(DEFAULT_SPEC, 0), probe)
    assert result.ok, str(result)


@pytest.mark.parametrize(
    "cls, finding",
    [
        (mutants.AsyncStepNoWait, "take_loss() after 5 queued steps = nan"),
        (mutants.AsyncStepNoSync, "and synchronize()"),
    ],
    ids=["take_loss-does-not-wait", "synchronize-does-not-wait"],
)
def test_the_clock_check_catches_steps_left_running(probe: Probe, cls: type[PortBackend], finding: str) -> None:
    """Deterministic: the mutants' thread takes only steps released by a call, never by time passing."""
    result = check_clock(cls(DEFAULT_SPEC, 0), probe)
    assert not result.ok and any(finding in line for line in result.differences), str(result)
