"""Mutation testing of the conformance checks: the faithful port passes, every mutant fails, every kind has one.

The mutants (cvae_bench.testing.mutants) run in this process; the checks are the conformance suite's own
(cvae_bench.conformance.checks). The mutation score is printed as a table and must be 100 %. The two
heavy tests are `slow`: `pytest -m slow tests/test_mutants.py`.
"""

from __future__ import annotations

import pytest

from cvae_bench.conformance.checks import Probe
from cvae_bench.testing.mutants import KINDS, MUTANTS, PortBackend, kill
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


@pytest.mark.slow  # ~5 min on a loaded 2-core machine: 29 mutants, the training-path ones train 18 steps each
def test_mutation_score_is_100_percent(probe: Probe, capsys: pytest.CaptureFixture[str]) -> None:
    rows, survivors = [], []
    for mutant in MUTANTS:
        last = kill(mutant.cls, probe)[-1]
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
