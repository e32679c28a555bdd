"""Calibration you can run: do a bench's intervals mean what they say when the same bench is asked again?

`cvae-bench bench --replicate N` runs N independent benches of one selection, back to back, and reads them
here. For every ratio (an entry against the fastest of its table, or the A/A twin against its original) the
pooled estimate is the median of the N runs' estimates; a 95 % interval that means what it says holds it in
about 95 % of the runs. The A/A check should fail in about 5 % of them. Both are counted and written down —
with few runs the counts are themselves uncertain (7 runs cannot tell 95 % from 70 %), so the count of runs
is always printed beside them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from cvae_bench.bench.document import BenchDocument
from cvae_bench.core.records import Record


@dataclass(frozen=True)
class RatioCalibration(Record):
    """One ratio over N benches.

    Attributes:
        name: the entry; reference: what it is compared with; runs: benches that gave it an interval.
        pooled: the median of the runs' estimates; held: runs whose interval holds `pooled`.
        spread: (smallest, largest) estimate; half_width: the median relative half-width (log scale).
    """

    name: str
    reference: str
    runs: int
    pooled: float
    held: int
    spread: tuple[float, float]
    half_width: float | None

    @property
    def coverage(self) -> float:
        """The fraction of runs whose interval holds the pooled estimate."""
        return self.held / self.runs if self.runs else float("nan")


@dataclass(frozen=True)
class Calibration(Record):
    """N benches of one selection read together.

    Attributes:
        runs: benches read; ratios: each ratio's calibration.
        aa_checked, aa_failed: benches whose A/A check gave an interval, and those whose interval excluded 1.0.
        busy: benches whose verdicts were withheld (BUSY): they still count, their intervals are what they are.
    """

    runs: int
    ratios: list[RatioCalibration]
    aa_checked: int
    aa_failed: int
    busy: int

    def lines(self) -> list[str]:
        """The calibration in words, one line a ratio."""
        out = [f"Calibration over {self.runs} independent benches (95 % intervals should hold the pooled estimate"]
        out.append("in about 95 % of runs; with few runs these counts are themselves uncertain):")
        for r in self.ratios:
            hw = f"median half-width ±{r.half_width:.1%}" if r.half_width is not None else "no interval"
            out.append(
                f"  {r.name} vs {r.reference}: pooled {r.pooled:.3f}, estimates {r.spread[0]:.3f}–{r.spread[1]:.3f}; "
                f"held by {r.held}/{r.runs} intervals; {hw}"
            )
        out.append(f"A/A check failed in {self.aa_failed} of {self.aa_checked} benches that checked it.")
        if self.busy:
            out.append(f"{self.busy} of {self.runs} benches were BUSY (verdicts withheld).")
        return out


def calibrate(docs: Sequence[BenchDocument]) -> Calibration:
    """Every ratio's coverage of its pooled estimate, and the A/A failure rate, over `docs`."""
    by_name: dict[tuple[str, str], list[tuple[float, float | None, float | None, float | None]]] = {}
    aa_checked = aa_failed = busy = 0
    for doc in docs:
        cb = doc.cvae_bench
        for v in cb.verdicts:
            r = v.ratio
            by_name.setdefault((v.name, v.reference), []).append((r.estimate, r.low, r.high, r.rel_half_width))
        if cb.noise is not None and cb.noise.ratio.known:
            aa_checked += 1
            aa_failed += not cb.noise.ratio.contains(1.0)
        if cb.rounds is not None and cb.rounds.busy:
            busy += 1
    ratios = []
    for (name, reference), rows in by_name.items():
        pooled = statistics.median(e for e, _, _, _ in rows)
        known = [(lo, hi) for _, lo, hi, _ in rows if lo is not None and hi is not None]
        held = sum(1 for lo, hi in known if lo <= pooled <= hi)
        widths = [w for _, _, _, w in rows if w is not None]
        ratios.append(
            RatioCalibration(
                name=name,
                reference=reference,
                runs=len(known),
                pooled=pooled,
                held=held,
                spread=(min(e for e, _, _, _ in rows), max(e for e, _, _, _ in rows)),
                half_width=statistics.median(widths) if widths else None,
            )
        )
    return Calibration(runs=len(docs), ratios=ratios, aa_checked=aa_checked, aa_failed=aa_failed, busy=busy)


def markdown(cal: Calibration, command: str) -> str:
    """calibration.md: the command, then the calibration in a table."""
    rows = [
        f"| {r.name} | {r.reference} | {r.pooled:.3f} | {r.spread[0]:.3f}–{r.spread[1]:.3f} | {r.held}/{r.runs} | "
        + (f"±{r.half_width:.1%}" if r.half_width is not None else "—")
        + " |"
        for r in cal.ratios
    ]
    return "\n".join(
        [
            "# Calibration",
            "",
            f"Command: `{command}`  ",
            f"{cal.runs} independent benches; A/A check failed in {cal.aa_failed} of {cal.aa_checked}"
            + (f"; {cal.busy} BUSY" if cal.busy else "")
            + ".",
            "",
            "| entry | against | pooled ratio | estimates | intervals holding it | median half-width |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
