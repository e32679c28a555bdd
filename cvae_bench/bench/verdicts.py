"""Verdicts of a bench: each entry against the fastest of its table, with its interval, and the A/A noise check.

Read from entries alone (bench.json), so a report made years later gives the same verdicts. Two entries
whose rounds share their sweeps (`stats.sweeps`, the interleaved schedule) pair round by round
(`cvae_bench.core.stats.paired_ratio`); others (standalone groups, files without sweeps) compare unpaired
(`unpaired_ratio`, a seeded bootstrap).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cvae_bench.bench.records import Entry
from cvae_bench.core.records import Record
from cvae_bench.core.stats import DEFAULT_TIE, Interval, paired_ratio, unpaired_ratio, verdict

#: params key marking the A/A twin's entries.
AA_TWIN = "aa_twin"


@dataclass(frozen=True)
class Verdict(Record):
    """One entry against its reference: the ratio of medians (above 1: slower), its interval, the verdict.

    Attributes:
        name: the entry; reference: the entry it is compared with (the fastest of its group and batch, or for
            the A/A twin its original); group, batch: where it sits.
        ratio: the ratio with its 95 % interval; verdict: faster / slower / tie / unsure; tie: the band.
        paired: whether the rounds were paired by sweep.
    """

    name: str
    reference: str
    group: str
    batch: int
    ratio: Interval
    verdict: str
    tie: float
    paired: bool


@dataclass(frozen=True)
class NoiseCheck(Record):
    """The A/A pair: the same backend/mode in two workers, whose ratio must contain 1.0.

    Attributes:
        name, reference: the twin and its original; ratio: twin / original with its interval.
        noise_floor: the interval's relative half-width: differences smaller than this are below what this
            machine can resolve now. passed: whether the interval contains 1.0.
    """

    name: str
    reference: str
    ratio: Interval
    noise_floor: float | None
    passed: bool

    def line(self) -> str:
        """One line for the console and bench.md."""
        floor = f"±{self.noise_floor:.1%}" if self.noise_floor is not None else "unknown (too few rounds)"
        head = f"A/A self-check ({self.name} vs {self.reference}): ratio {self.ratio.cell('.3f')}; noise floor {floor}"
        if self.passed:
            return head + " — passed (contains 1.0)"
        return head + " — FAILED: the interval excludes 1.0, so something other than the backends is moving the figures"


def is_twin(entry: Entry) -> bool:
    """Whether `entry` is the A/A twin's."""
    return bool(entry.params.get(AA_TWIN))


def ratio_of(reference: Entry, entry: Entry) -> tuple[Interval, bool]:
    """entry / reference with its interval; paired when both were timed in the same sweeps."""
    a, b = reference.stats, entry.stats
    if a.sweeps is not None and a.sweeps == b.sweeps:
        return paired_ratio(a.data, b.data), True
    return unpaired_ratio(a.data, b.data), False


def _twin_of(twin: Entry, entries: Sequence[Entry]) -> Entry | None:
    key = {k: v for k, v in twin.params.items() if k != AA_TWIN}
    return next((e for e in entries if not is_twin(e) and e.group == twin.group and e.params == key), None)


def entry_verdicts(entries: Sequence[Entry], tie: float = DEFAULT_TIE) -> list[Verdict]:
    """Every entry but the fastest of each group and batch against that fastest; the A/A twin against its
    original."""
    out: list[Verdict] = []
    classes: dict[tuple[str, int], list[Entry]] = {}
    for e in entries:
        classes.setdefault((e.group, e.batch or 0), []).append(e)
    for (group, batch), members in classes.items():
        real = [e for e in members if not is_twin(e)]
        if not real:
            continue
        best = min(real, key=lambda e: e.stats.median)
        for e in members:
            ref = _twin_of(e, real) if is_twin(e) else best
            if ref is None or e is ref:
                continue
            ratio, paired = ratio_of(ref, e)
            out.append(Verdict(e.name, ref.name, group, batch, ratio, verdict(ratio, tie), tie, paired))
    return out


def noise_check(verdicts: Sequence[Verdict], entries: Sequence[Entry]) -> NoiseCheck | None:
    """The A/A check from the twin's verdict (None: no twin was measured)."""
    twins = {e.name for e in entries if is_twin(e)}
    for v in verdicts:
        if v.name in twins:
            return NoiseCheck(v.name, v.reference, v.ratio, v.ratio.rel_half_width, v.ratio.contains(1.0))
    return None
