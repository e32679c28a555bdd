"""History entries turned into series across commits, one per metric and machine, with their steps."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cvae_bench.report.inputs import HistoryEntry, Loaded
from cvae_bench.report.page import safe_link
from cvae_bench.report.steps import Step, detect_steps


@dataclass
class Series:
    """One metric on one machine across commits: x are indexes into the commit axis."""

    family: str
    name: str
    machine: str
    machine_name: str
    x: list[int] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    sigma: list[float | None] = field(default_factory=list)
    low: list[float | None] = field(default_factory=list)
    high: list[float | None] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    hover: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)


@dataclass
class Trends:
    """Every series of a history, the commit axis, and the steps found."""

    commits: list[str]
    series: list[Series]

    def families(self) -> dict[str, list[Series]]:
        """Series by family, in first-seen order."""
        out: dict[str, list[Series]] = {}
        for s in self.series:
            out.setdefault(s.family, []).append(s)
        return out


def link(path: Path, base: Path | None) -> str:
    """A link to `path` from a page in `base`: a plain relative file link ('./…', percent-encoded), or '' when
    there is none (no base, another drive, a name that looks like a scheme): a shared page never carries an
    absolute file: URI, and no file name can become a `javascript:` URL."""
    if base is None:
        return ""
    try:
        relative = Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return ""
    return safe_link(relative) or ""


def build_trends(entries: Sequence[Loaded], base: Path | None = None) -> Trends:
    """Series per (metric, machine) over the commits of `entries` (ordered by when each result was made).

    Several results of one metric at one commit and machine (repeats, re-runs) are one point, their median.
    """
    ordered = sorted(entries, key=lambda x: x.record.recorded)
    commits: list[str] = []
    for item in ordered:
        label = item.record.short_commit
        if label not in commits:
            commits.append(label)
    points: dict[tuple[str, str, str], dict[int, list[tuple[HistoryEntry, Path, int]]]] = {}
    for item in ordered:
        e: HistoryEntry = item.record
        for i, m in enumerate(e.metrics):
            per = points.setdefault((m.family, m.name, e.machine), {})
            per.setdefault(commits.index(e.short_commit), []).append((e, item.path, i))
    out = []
    for (family, name, machine), per in points.items():
        first = next(iter(per.values()))[0][0]
        s = Series(family, name, machine, first.machine_name)
        for x in sorted(per):
            found = per[x]
            metrics = [entry.metrics[i] for entry, _, i in found]
            s.x.append(x)
            s.y.append(statistics.median(m.value for m in metrics))
            sigmas = [m.sigma for m in metrics if m.sigma is not None]
            s.sigma.append(statistics.median(sigmas) if sigmas else None)
            s.low.append(min((m.low for m in metrics if m.low is not None), default=None))
            s.high.append(max((m.high for m in metrics if m.high is not None), default=None))
            entry, path, _ = found[-1]
            s.links.append(link(path, base))
            s.hover.append(
                f"{name}<br>{s.y[-1]:.4g} s at {entry.short_commit} ({entry.recorded})<br>{first.machine_name}"
                f"<br>{len(found)} result(s); click to open {path.name}"
            )
        s.steps = detect_steps(s.y, s.sigma)
        out.append(s)
    return Trends(commits, out)
