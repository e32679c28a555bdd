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
from cvae_bench.bench.rounds import epoch_paired_ratio
from cvae_bench.core.records import Record
from cvae_bench.core.replication import replicated_unpaired_ratio
from cvae_bench.core.stats import DEFAULT_TIE, Interval, paired_ratio, unpaired_ratio, verdict, verdict_cell

#: params key marking the A/A twin's entries.
AA_TWIN = "aa_twin"


@dataclass(frozen=True)
class Verdict(Record):
    """One entry against its reference: the ratio of medians (above 1: slower), its interval, the verdict.

    Attributes:
        name: the entry; reference: the entry it is compared with (the fastest of its group and batch, or for
            the A/A twin its original); group, batch: where it sits.
        ratio: the ratio with its 95 % interval; verdict: faster / slower / tie / unsure, or "withheld";
        tie: the band. paired: whether the rounds were paired by sweep.
        withheld: why no verdict is given although the ratio is kept for the record (BUSY: the machine never got
            quiet enough; IDLE-WORK: a worker used CPU while it was stopped); None when the verdict stands.
    """

    name: str
    reference: str
    group: str
    batch: int
    ratio: Interval
    verdict: str
    tie: float
    paired: bool
    withheld: str | None = None

    def cell(self) -> str:
        """'1.12× [1.08, 1.15] slower', or the ratio and 'no verdict (BUSY…)'."""
        if self.withheld is None:
            return verdict_cell(self.ratio, self.tie)
        return f"{self.ratio.cell('.2f')}× no verdict ({self.withheld.split(':')[0]})"


@dataclass(frozen=True)
class NoiseCheck(Record):
    """The A/A pair: the same backend/mode in two workers, whose ratio must contain 1.0.

    Attributes:
        name, reference: the twin and its original; ratio: twin / original with its interval.
        noise_floor: the interval's relative half-width: differences smaller than this are below what this
            machine can resolve now. passed: whether the interval contains 1.0 (None: too few rounds for an
            interval, so no check was made: neither passed nor failed).
    """

    name: str
    reference: str
    ratio: Interval
    noise_floor: float | None
    passed: bool | None

    def line(self) -> str:
        """One line for the console and bench.md."""
        floor = f"±{self.noise_floor:.1%}" if self.noise_floor is not None else "unknown (too few rounds)"
        head = f"A/A self-check ({self.name} vs {self.reference}): ratio {self.ratio.cell('.3f')}; noise floor {floor}"
        if self.passed is None:
            return head + " — not checked: too few rounds for an interval"
        if self.passed:
            return head + " — passed (contains 1.0)"
        return head + " — FAILED: the interval excludes 1.0, so something other than the backends is moving the figures"


def is_twin(entry: Entry) -> bool:
    """Whether `entry` is the A/A twin's."""
    return bool(entry.params.get(AA_TWIN))


def ratio_of(reference: Entry, entry: Entry) -> tuple[Interval, bool]:
    """entry / reference with its interval; paired when both were timed in the same sweeps, and across worker
    processes when their rounds span two or more epochs (`core.replication`)."""
    a, b = reference.stats, entry.stats
    if a.sweeps is not None and a.sweeps == b.sweeps:
        if a.epochs is not None and a.epochs == b.epochs:
            return epoch_paired_ratio(a.data, b.data, a.sweeps, a.epochs), True
        return paired_ratio(a.data, b.data), True
    if a.epochs is not None and b.epochs is not None and min(len(set(a.epochs)), len(set(b.epochs))) >= 2:
        return replicated_unpaired_ratio(a.data, a.epochs, b.data, b.epochs), False
    return unpaired_ratio(a.data, b.data), False


def _twin_of(twin: Entry, entries: Sequence[Entry]) -> Entry | None:
    key = {k: v for k, v in twin.params.items() if k != AA_TWIN}
    return next((e for e in entries if not is_twin(e) and e.group == twin.group and e.params == key), None)


#: Verdict word of a ratio kept for the record but not judged.
WITHHELD = "withheld"
#: Why: the machine never got quiet enough (see `RoundsSummary.busy`).
BUSY = (
    "BUSY: the machine never got quiet enough for a verdict (timings kept for the record; --under-load to judge anyway)"
)


def idle_work(entry: Entry, reference: Entry) -> str | None:
    """IDLE-WORK when either entry's workers used CPU while they were stopped between rounds."""
    culprits = [e.name for e in (entry, reference) if e.stats.worked_while_idle]
    if not culprits:
        return None
    return f"IDLE-WORK: {', '.join(culprits)} used CPU while stopped between its rounds"


def entry_verdicts(entries: Sequence[Entry], tie: float = DEFAULT_TIE, withheld: str | None = None) -> list[Verdict]:
    """Every entry but the fastest of each group and batch against that fastest; the A/A twin against its
    original. With `withheld` (e.g. `BUSY`), or where a worker worked while idle, the ratio is kept and the
    verdict is `WITHHELD`."""
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
            reason = withheld or idle_work(e, ref)
            word = WITHHELD if reason else verdict(ratio, tie)
            out.append(Verdict(e.name, ref.name, group, batch, ratio, word, tie, paired, reason))
    return out


def noise_check(verdicts: Sequence[Verdict], entries: Sequence[Entry]) -> NoiseCheck | None:
    """The A/A check from the twin's verdict (None: no twin was measured)."""
    twins = {e.name for e in entries if is_twin(e)}
    for v in verdicts:
        if v.name in twins:
            passed = v.ratio.contains(1.0) if v.ratio.known else None
            return NoiseCheck(v.name, v.reference, v.ratio, v.ratio.rel_half_width, passed)
    return None


#: params key of a tuned entry: its knobs as a selection writes them ('+mkldnn=off').
TUNING = "tuning"


@dataclass(frozen=True)
class TuningVerdict(Record):
    """A tuned entry against the same backend, mode, group and batch untuned: is the knob worth turning?

    Attributes:
        name, reference: the tuned entry and its untuned sibling; group, batch: where they sit; tuning: the knobs.
        ratio: tuned / untuned with its 95 % interval (below 1: the knob makes it faster); verdict: as for
            every verdict, against the tie band `tie`; paired: whether the rounds paired by sweep.
        noise_bound: the largest difference between two workers of one configuration that the A/A check
            allows (the farther bound of its interval from 1.0); None without an A/A twin.
        worth_it: faster, with the whole interval below both 1 − tie and 1 − noise_bound: the only case in
            which a default should change (a win inside the A/A band may be which worker ran it, not the knob).
    """

    name: str
    reference: str
    group: str
    batch: int
    tuning: str
    ratio: Interval
    verdict: str
    tie: float
    paired: bool
    noise_bound: float | None
    worth_it: bool

    def line(self) -> str:
        """One line for the console and bench.md."""
        bound = f"A/A bound ±{self.noise_bound:.1%}" if self.noise_bound is not None else "no A/A bound"
        call = "worth turning" if self.worth_it else "not shown to be worth turning"
        return f"{self.name} vs untuned: {verdict_cell(self.ratio, self.tie)}; {bound}: {call}"


def noise_bound(noise: NoiseCheck | None) -> float | None:
    """The largest worker-to-worker difference the A/A interval allows (None: no twin, or no interval)."""
    if noise is None or noise.ratio.low is None or noise.ratio.high is None:
        return None
    return max(abs(noise.ratio.low - 1), abs(noise.ratio.high - 1))


def tuning_verdicts(
    entries: Sequence[Entry], noise: NoiseCheck | None, tie: float = DEFAULT_TIE
) -> list[TuningVerdict]:
    """Every tuned entry against its untuned sibling, where the run measured one."""
    bound = noise_bound(noise)
    out: list[TuningVerdict] = []
    for e in entries:
        knobs = str(e.params.get(TUNING) or "")
        if not knobs or is_twin(e):
            continue
        base = {**{k: v for k, v in e.params.items() if k != TUNING}, "mode": str(e.params["mode"]).removesuffix(knobs)}
        ref = next((r for r in entries if r.group == e.group and r.params == base and not is_twin(r)), None)
        if ref is None:
            continue
        ratio, paired = ratio_of(ref, e)
        word = verdict(ratio, tie)
        clear = 1 - max(tie, bound if bound is not None else tie)
        worth = word == "faster" and ratio.high is not None and ratio.high < clear
        verdict_ = TuningVerdict(e.name, ref.name, e.group, e.batch or 0, knobs, ratio, word, tie, paired, bound, worth)
        out.append(verdict_)
    return out


#: The backend name prefix of a plain-loop reference row (`bench.plain`).
PLAIN_PREFIX = "plain:"


@dataclass(frozen=True)
class PlainVerdict(Record):
    """A harness entry against its framework's plain loop (`--plain-loops`): does the harness slow it down?

    Attributes:
        name, reference: the harness's entry and the plain loop's; ratio: harness / plain with its interval.
        verdict: as every verdict (slower: the harness is slower than the framework's own loop).
        noise_bound: the A/A check's worker-to-worker bound (None without one).
        finding: "within" (the estimate is at most 1 + the bound: the harness within what two workers of one
            configuration differ by), "beyond" (the whole interval lies above 1 + the bound: the harness is
            slower than the framework's own loop), "unsure" (neither), or "no bound" (no A/A check).
    """

    name: str
    reference: str
    ratio: Interval
    verdict: str
    noise_bound: float | None
    finding: str

    def line(self) -> str:
        """One line for the console and bench.md."""
        bound = f"±{self.noise_bound:.1%}" if self.noise_bound is not None else ""
        call = {
            "within": f"within the A/A bound {bound}: the harness does not slow it down",
            "beyond": f"beyond the A/A bound {bound}: the harness is slower than the framework's own loop",
            "unsure": f"the interval is too wide to say against the A/A bound {bound}",
        }.get(self.finding, "no A/A bound to read it against")
        return f"{self.name} vs its plain loop {self.reference}: {verdict_cell(self.ratio)}; {call}"


def plain_verdicts(entries: Sequence[Entry], noise: NoiseCheck | None, tie: float = DEFAULT_TIE) -> list[PlainVerdict]:
    """Every untuned harness entry of a group with a plain-loop row against that row (same framework)."""
    bound = noise_bound(noise)
    out = []
    for plain in entries:
        row = str(plain.params.get("backend", ""))
        if not row.startswith(PLAIN_PREFIX):
            continue
        for e in entries:
            if e.group != plain.group or is_twin(e) or e.params.get(TUNING):
                continue
            if e.params.get("backend") != row.removeprefix(PLAIN_PREFIX):
                continue
            ratio, _ = ratio_of(plain, e)
            if bound is None:
                finding = "no bound"
            elif ratio.low is not None and ratio.low > 1 + bound:
                finding = "beyond"
            elif ratio.estimate <= 1 + bound and ratio.known:
                finding = "within"
            else:
                finding = "unsure"
            out.append(PlainVerdict(e.name, plain.name, ratio, verdict(ratio, tie), bound, finding))
    return out
