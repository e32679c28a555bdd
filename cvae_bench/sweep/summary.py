"""The sweep's summary, from the files in the sweep folder alone: every cell, every machine, and comparisons
made within one machine only (summary.json and summary.md)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.core.records import Record
from cvae_bench.core.tables import markdown_table
from cvae_bench.report.inputs import BenchFile
from cvae_bench.runtime.files import read_json, write_json, write_text
from cvae_bench.runtime.machine import MachineFingerprint
from cvae_bench.sweep.cells import RunParams
from cvae_bench.sweep.store import CellRecord
from cvae_bench.training.compare import HEADERS as RUN_HEADERS
from cvae_bench.training.compare import summarize, table_rows
from cvae_bench.training.records import ComparisonRow, RunResult

R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class CellBrief(Record):
    """One cell in the summary."""

    key: str
    label: str
    command: str
    status: str
    machine: str | None
    node: str
    seconds: float
    attempts: int
    deviant: bool
    summary: str
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunComparison(Record):
    """Run cells of one machine with the same threads, data set and training parameters, compared."""

    machine: str
    threads: int
    dataset: str
    params: RunParams
    rows: list[ComparisonRow]


@dataclass(frozen=True)
class BenchRow(Record):
    """One benchmark of one backend/mode on one machine: the median over the cells' medians."""

    group: str
    name: str
    median_s: float
    images_per_s: float | None
    cells: int


@dataclass(frozen=True)
class BenchComparison(Record):
    """Bench cells of one machine with the same threads."""

    machine: str
    threads: int
    rows: list[BenchRow]


@dataclass(frozen=True)
class SweepSummary(Record):
    """summary.json: every cell, every machine, and the comparisons within each machine."""

    name: str
    folder: str
    statuses: dict[str, int]
    cell_seconds: float
    machines: dict[str, MachineFingerprint]
    cells: list[CellBrief]
    runs: list[RunComparison]
    benches: list[BenchComparison]
    pending: int = 0
    unreadable: list[str] = field(default_factory=list)  # "cells/<key>/bench.json: why": left out of the tables

    def to_markdown(self) -> str:
        """The summary as Markdown: a section per machine, then every cell."""
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))
        lines = [
            f"# cvae-bench sweep `{self.name}`",
            "",
            f"{len(self.cells)} cell(s) finished ({counts}); {self.pending} not finished.  ",
            f"Cell time: {self.cell_seconds / 3600:.3f} cell-hours ({self.cell_seconds:.0f} s) on "
            f"{len(self.machines)} machine(s).  ",
            "Comparisons are made within one machine only; a deviant run is shown, never ranked.",
        ]
        if self.unreadable:
            lines += ["", "Left out of the tables, unreadable:", ""]
            lines += [f"- {why.replace(chr(10), ' ')}" for why in self.unreadable]
        for mid, machine in self.machines.items():
            versions = ", ".join(f"{k} {v}" for k, v in sorted(machine.versions.items()))
            about = f"{machine.system}, Python {machine.python}, {versions}"
            lines += ["", f"## Machine `{mid}`: {machine.title}", "", about]
            for run in (r for r in self.runs if r.machine == mid):
                target = "fixed epochs" if run.params.epochs else f"val −ELBO ≤ {run.params.target}"
                lines += ["", f"### run: {run.dataset}, {target}, {run.threads} thread(s)", ""]
                lines += markdown_table(RUN_HEADERS, table_rows(run.rows))
            for bench in (b for b in self.benches if b.machine == mid):
                lines += ["", f"### bench: {bench.threads} thread(s)", ""]
                rows = [
                    [
                        r.group,
                        r.name,
                        f"{r.median_s * 1e3:.3f}",
                        "—" if r.images_per_s is None else f"{r.images_per_s:,.0f}",
                        str(r.cells),
                    ]
                    for r in bench.rows
                ]
                lines += markdown_table(["group", "benchmark", "median ms/call", "images/s", "cells"], rows)
        lines += ["", "## Cells", ""]
        lines += markdown_table(
            ["key", "cell", "status", "machine", "node", "s", "attempts", "outcome"],
            [
                [
                    f"`{c.key}`",
                    c.label,
                    c.status + (" (deviant)" if c.deviant else ""),
                    c.machine or "—",
                    c.node,
                    f"{c.seconds:.1f}",
                    str(c.attempts),
                    c.summary.replace("|", "/"),
                ]
                for c in self.cells
            ],
        )
        failed = [c for c in self.cells if c.errors]
        if failed:
            lines += ["", "## Errors", ""]
            lines += [f"- `{c.key}` {c.label}: " + " / ".join(e.replace("\n", " ") for e in c.errors) for c in failed]
        return "\n".join(lines) + "\n"


def _read(path: Path, as_record: type[R], unreadable: list[str]) -> R | None:
    """The record in `path`, read strictly (`runtime.files.read_json`, then the record's own reader); None, and a
    line in `unreadable`, when the file is not what a cell of ours writes (damaged or hand-edited)."""
    try:
        return as_record.from_json(read_json(path))
    except CvaeBenchError as exc:
        unreadable.append(f"{path.parent.name}/{path.name}: {exc}")
        return None


def summarize_sweep(name: str, folder: Path, records: Sequence[CellRecord], pending: int = 0) -> SweepSummary:
    """The summary of `records`, whose files lie in `folder/cells/<key>/`."""
    machines: dict[str, MachineFingerprint] = {}
    run_groups: dict[tuple[str, int, str, str], list[RunResult]] = {}
    bench_groups: dict[tuple[str, int], dict[tuple[str, str], list[tuple[float, float | None]]]] = {}
    unreadable: list[str] = []
    for rec in records:
        if rec.machine is None:
            continue
        mid = rec.machine.id
        machines.setdefault(mid, rec.machine)
        used = rec.threads.used if rec.threads else 0
        cell_dir = folder / "cells" / rec.key
        if rec.cell.command == "run" and rec.cell.run is not None and "result.json" in rec.files:
            result = _read(cell_dir / "result.json", RunResult, unreadable)
            if result is not None:
                key = (mid, used, rec.cell.dataset, json.dumps(rec.cell.run.to_json(), sort_keys=True))
                run_groups.setdefault(key, []).append(result)
        elif rec.cell.command == "bench" and "bench.json" in rec.files:
            bench = _read(cell_dir / "bench.json", BenchFile, unreadable)
            table = bench_groups.setdefault((mid, used), {})
            for entry in bench.benchmarks if bench is not None else []:
                images_per_s = entry.info("images_per_s")
                table.setdefault((entry.group, entry.name), []).append(
                    (entry.stats.median, float(images_per_s) if isinstance(images_per_s, (int, float)) else None)
                )
    runs = [
        RunComparison(machine=m, threads=t, dataset=d, params=RunParams.from_json(json.loads(p)), rows=summarize(rs))
        for (m, t, d, p), rs in run_groups.items()
    ]
    benches = [
        BenchComparison(
            machine=m,
            threads=t,
            rows=[
                BenchRow(
                    group=g,
                    name=n,
                    median_s=statistics.median(v[0] for v in values),
                    images_per_s=_median_or_none([v[1] for v in values]),
                    cells=len(values),
                )
                for (g, n), values in table.items()
            ],
        )
        for (m, t), table in bench_groups.items()
    ]
    statuses: dict[str, int] = {}
    for rec in records:
        statuses[rec.status] = statuses.get(rec.status, 0) + 1
    return SweepSummary(
        name=name,
        folder=str(folder),
        statuses=statuses,
        cell_seconds=round(sum(r.seconds for r in records), 3),
        machines=machines,
        cells=[
            CellBrief(
                key=r.key,
                label=r.label,
                command=r.cell.command,
                status=r.status,
                machine=r.machine.id if r.machine else None,
                node=r.node,
                seconds=r.seconds,
                attempts=r.attempts,
                deviant=r.deviant,
                summary=r.summary,
                errors=r.errors,
            )
            for r in records
        ],
        runs=runs,
        benches=benches,
        pending=pending,
        unreadable=unreadable,
    )


def _median_or_none(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def write_summary(summary: SweepSummary, folder: Path) -> tuple[Path, Path]:
    """Write summary.json and summary.md into `folder`; returns their paths."""
    json_path, md_path = folder / "summary.json", folder / "summary.md"
    write_json(json_path, summary.to_json())
    write_text(md_path, summary.to_markdown())
    return json_path, md_path
