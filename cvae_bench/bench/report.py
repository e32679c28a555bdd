"""The `cvae-bench bench` report: tables and Markdown, read from a `BenchDocument` (bench.json) alone.

Nothing here runs or measures anything: the same tables come back from a bench.json read years later.
Each group's table is its own (`BenchGroup.headers` and `.row`); the roofline, time-to-target and fairness
tables are the report's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cvae_bench.bench.document import BenchDocument
from cvae_bench.bench.fairness import AUDIT_HEADERS, audit_rows
from cvae_bench.bench.groups import GROUPS
from cvae_bench.bench.groups.base import fmt, fmt_time
from cvae_bench.bench.groups.train_step import TrainStep
from cvae_bench.bench.memory_table import MEMORY_HEADERS, memory_note, memory_rows
from cvae_bench.bench.records import Entry
from cvae_bench.bench.roofline import CEILING_COLUMNS, Roofline
from cvae_bench.bench.verdicts import Verdict, is_twin
from cvae_bench.core.tables import markdown_table
from cvae_bench.runtime.files import write_json, write_text
from cvae_bench.runtime.machine import LoadSample, LoadWindow
from cvae_bench.training.records import ComparisonRow


@dataclass(frozen=True)
class ReportTable:
    """One table of the report: its Markdown heading, its console title, headers, rows, and notes after it."""

    heading: str
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    show_empty: bool = True


#: The column the report adds to every group's table.
CI_HEADER = "median 95 % CI"
#: The column whose bare ratio a verdict replaces.
VS_FASTEST = "vs fastest"


def ci_cell(entry: Entry) -> str:
    """The median's 95 % interval ('[2.41 ms, 2.47 ms]'), or '—' below 6 rounds."""
    ci = entry.stats.median_ci
    return f"[{fmt_time(ci[0])}, {fmt_time(ci[1])}]" if ci else "—"


def group_tables(entries: Sequence[Entry], verdicts: Sequence[Verdict] = ()) -> dict[str, list[list[str]]]:
    """Rows of each group's table, fastest first within each batch size, then the median's 95 % interval.

    The "vs fastest" cell is the entry's verdict — ratio, 95 % interval, faster / slower / tie / unsure —
    where `verdicts` has one (the fastest reads "1.00× fastest"), else the bare ratio of medians.
    """
    by_name = {v.name: v for v in verdicts}
    tables: dict[str, list[list[str]]] = {}
    for name, group in GROUPS.items():
        mine = [e for e in entries if e.group == name]
        if not mine:
            continue
        col = group.headers.index(VS_FASTEST) if VS_FASTEST in group.headers else None
        rows: list[list[str]] = []
        for batch in sorted({e.batch or 0 for e in mine}):
            same = sorted((e for e in mine if (e.batch or 0) == batch), key=lambda e: (is_twin(e), e.stats.median))
            best = same[0].stats.median
            for e in same:
                row = group.row(e, e.stats.median / best)
                v = by_name.get(e.name)
                if col is not None and verdicts:
                    if v is not None:
                        row[col] = v.cell() + (" (A/A twin)" if is_twin(e) else "")
                    elif e is same[0]:
                        row[col] = "1.00× fastest"
                rows.append([*row, ci_cell(e)])
        tables[name] = rows
    return tables


def noise_lines(doc: BenchDocument) -> list[str]:
    """The A/A self-check and how the rounds ran, in words (empty for a file without them)."""
    cb = doc.cvae_bench
    out = []
    if cb.noise is not None:
        out.append(cb.noise.line())
    if cb.tuning:
        out.append("Tuning: each tuned entry against the same backend/mode untuned (worth turning: faster, with the")
        out.append("whole interval beyond the tie band and the A/A bound):")
        out += [f"  {t.line()}" for t in cb.tuning]
    if cb.plain:
        out.append("Plain loops: each harness entry against its framework's own loop, timed in the same sweeps:")
        out += [f"  {p.line()}" for p in cb.plain]
    r = cb.rounds
    if r is not None:
        line = (
            f"Rounds: {r.sweeps_kept} of {r.sweeps_run} interleaved sweeps kept over {r.contestants} entries "
            f"in {r.seconds:.1f} s; {r.contended_sweeps} sweep(s) overlapped foreign load"
            + (f", {r.remeasured} re-measured" if r.remeasured else "")
            + f". Load during the sweeps: {r.load.line()}"
        )
        out.append(line)
        if r.epochs_run > 1 or r.epochs > 1:
            out.append(
                f"Epochs: {r.epochs_run - r.busy_epochs} clean of {r.epochs_run} run ({r.epochs} asked, "
                f"{r.rounds_per_epoch} sweeps each); each epoch fresh worker processes, every interval across epochs."
            )
        if r.phases is not None:
            p = r.phases
            out.append(
                f"Wall time: {p.total_s:.0f} s — starting workers {p.start_s:.0f} s, opening calls {p.open_s:.0f} s, "
                f"timed sweeps {p.sweeps_s:.0f} s, closing {p.close_s:.0f} s."
            )
        for comp in r.components:
            v = comp.variance
            need = (
                f"{comp.epochs_for_3pct} epochs for ±3 %" if comp.epochs_for_3pct else "no between-epoch variance seen"
            )
            best = f"{v.optimal_rounds:.0f}" if v.optimal_rounds is not None else "more"
            out.append(
                f"  variance of {comp.label}: within an epoch ±{v.within**0.5:.1%} a round, between epochs "
                f"±{v.between**0.5:.1%}; Kalibera–Jones rounds per epoch {best}; {need}"
            )
        if r.rel_precision is not None:
            if r.reached:
                out.append(f"Precision ±{r.rel_precision:.1%} reached by every ratio in {r.seconds:.1f} s.")
            else:
                out.append(f"Precision ±{r.rel_precision:.1%} NOT reached within --max-time ({r.seconds:.1f} s):")
                out += [
                    f"  {u.label}: ±{u.half_width:.1%}; {u.reason}"
                    if u.half_width is not None
                    else f"  {u.label}: no interval yet; {u.reason}"
                    for u in r.unmet
                ]
        if r.waited_quiet is not None:
            w = r.waited_quiet
            state = "became quiet" if w.quiet else "stayed BUSY"
            out.append(f"--wait-quiet {w.allowed_s:.0f}: the machine {state} after {w.waited_s:.0f} s.")
        if r.busy:
            out.append(
                "BUSY: no verdict. Foreign load overlapped too many sweeps in every epoch for the figures to be the "
                "backends' own (frameworks degrade differently under load, so pairing does not cancel it); the "
                "timings are kept for the record. Re-run on a quiet machine, or pass --under-load to judge anyway."
            )
        elif r.load.busy:
            out.append(
                "WARNING: the machine was busy during the run; the sweeps that overlapped foreign load were "
                "dropped or re-run, and absolute times are not comparable with a quiet run."
            )
    return out


ROOFLINE_HEADERS = [
    "workload",
    "batch",
    "FLOPs (spec)",
    "GEMM FLOPs",
    "floor (best)",
    "ceiling GFLOP/s",
    "bytes",
    "full floor",
    "full floor by category",
]


def roofline_headers(roof: Roofline) -> list[str]:
    """The roofline table's headers: the fixed ones, then one floor per library measured."""
    present = {lib for w in roof.workloads() for lib in w.floor_by_library_s}
    return [*ROOFLINE_HEADERS, *(f"floor {lib}" for lib in CEILING_COLUMNS if lib in present)]


def roofline_rows(roof: Roofline) -> list[list[str]]:
    """The roofline table: FLOPs and the bare-matmul floor of each workload, best and per library."""
    libs = [h.removeprefix("floor ") for h in roofline_headers(roof)[len(ROOFLINE_HEADERS) :]]
    return [
        [
            w.label,
            str(w.batch),
            f"{w.spec_flops:,}",
            f"{w.gemm_flops:,}",
            fmt_time(w.floor_s),
            f"{w.ceiling_gflops:.1f}",
            f"{w.bytes / 1e6:.2f} MB" if w.bytes else "—",
            fmt_time(w.full_floor_s),
            ", ".join(f"{c} {fmt_time(s)}" for c, s in w.category_floor_s.items()) or "—",
            *(fmt_time(w.floor_by_library_s.get(lib)) for lib in libs),
        ]
        for w in roof.workloads()
    ]


def bandwidth_notes(roof: Roofline) -> list[str]:
    """The measured bandwidth behind the full floor, one line (none for a bench.json without it)."""
    if not roof.bandwidth:
        return []
    cells = ", ".join(
        f"{int(size) // 1024} KiB {max(per_lib.values()) / 1e9:.1f}"
        for size, per_lib in sorted(roof.bandwidth.items(), key=lambda kv: int(kv[0]))
    )
    flops = max(roof.elementwise_flops.values(), default=0.0)
    return [
        "",
        "Full floor: every part (each GEMM, and each element-wise, loss, optimizer and data pass counted in bytes"
        " from the spec) at max(compute time, memory time), summed. Bandwidth measured in the same run"
        f" (GB/s, best of copy/triad, NumPy and torch, by working set): {cells}; element-wise FLOP rate"
        f" {flops / 1e9:.1f} GFLOP/s (triad).",
    ]


TTT_HEADERS = [
    "backend",
    "mode",
    "ms/step (bench)",
    "time-to-target s, median (spread)",
    "reached",
    "steps-to-target",
    "final val −ELBO",
]


def ttt_rows(runs: Sequence[ComparisonRow], entries: Sequence[Entry]) -> list[list[str]]:
    """Time-to-target beside the benchmark's ms/step (the train-step group's), per backend and mode."""
    ms = {
        (e.extra_info["backend"], e.extra_info["mode"]): e.stats.median * 1e3
        for e in entries
        if e.group == TrainStep.name
    }
    rows = []
    for r in runs:
        spread = r.time_to_target_spread_s
        ttt = fmt(r.time_to_target_s, ".1f")
        if spread and r.converged > 1:
            ttt += f" ({spread[0]:.1f}–{spread[1]:.1f})"
        reached = f"{r.converged}/{r.runs}"
        if r.not_converged:
            reached += f" ({r.not_converged} not converged)"
        rows.append(
            [
                r.backend,
                r.mode,
                fmt(ms.get((r.backend, r.mode)), ".3f"),
                ttt,
                reached,
                fmt(r.steps_to_target, ".0f"),
                fmt(r.final_val_elbo, ".3f"),
            ]
        )
    return rows


def load_line(load: LoadWindow) -> str:
    """'load average 1/5/15 min before: 0.12/0.30/0.41 (other busy processes: none); after: …'."""

    def one(sample: LoadSample) -> str:
        avg = "/".join(f"{v:.2f}" for v in sample.loadavg) if sample.loadavg else "?"
        busy = ", ".join(f"{b.name}({b.pid}) {b.cpu:.0%}" for b in sample.busy) or "none"
        return f"{avg} (other busy processes: {busy})"

    return f"load average 1/5/15 min before: {one(load.before)}; after: {one(load.after)}"


def report_tables(doc: BenchDocument) -> list[ReportTable]:
    """Every table of the report but the fairness audit, in order: groups, roofline, time to target."""
    cb = doc.cvae_bench
    tables = group_tables(doc.benchmarks, cb.verdicts)
    out = []
    for name, group in GROUPS.items():
        notes = group.notes(cb.sections.get(group.section)) if group.section else []
        notes += group.entry_notes([e for e in doc.benchmarks if e.group == name]) if name in tables else []
        if name in tables or notes:
            rows = tables.get(name, [])
            headers = [*group.headers, CI_HEADER]
            out.append(ReportTable(group.title, group.title, headers, rows, notes, show_empty=False))
    out.append(
        ReportTable(
            "Roofline",
            "roofline (fp32 matmul floor on this machine)",
            roofline_headers(cb.roofline),
            roofline_rows(cb.roofline),
            [
                "",
                "Floor: every GEMM of the workload timed alone (fp32, pre-allocated operands, fastest of 9 calibrated"
                " rounds) in "
                + ", ".join(f"{k} {v}" for k, v in cb.roofline.libraries.items())
                + " (onnxruntime-const: B a pre-packed constant); the fastest per GEMM, summed."
                " Ceiling = GEMM FLOPs ÷ floor.",
                *bandwidth_notes(cb.roofline),
            ],
        )
    )
    ttt = cb.time_to_target
    if ttt:
        out.append(
            ReportTable(
                f"Time to target (from {ttt.source})",
                f"time to target ({ttt.source})",
                TTT_HEADERS,
                ttt_rows(ttt.rows, doc.benchmarks),
            )
        )
    return out


def fairness_blocks(doc: BenchDocument) -> list[tuple[str, list[tuple[str, str]]]]:
    """The fairness audit per process: (process, [(header, cell), …]), for displays too narrow for a table."""
    return [
        (cells[0], list(zip(AUDIT_HEADERS[1:], cells[1:], strict=True)))
        for cells in audit_rows(doc.cvae_bench.fairness)
    ]


def to_markdown(doc: BenchDocument) -> str:
    """The whole report as Markdown: command, machine, load, one table per group, roofline,
    time-to-target and the fairness audit."""
    cb = doc.cvae_bench
    mi = doc.machine_info
    lines = [
        "# cvae-bench benchmarks",
        "",
        f"Command: `{cb.command}`  ",
        f"Machine: {mi['cpu']['brand_raw']}, {mi['cpu']['count']} cores; "
        f"threads per framework: {mi['threads'] or 'default'}  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(mi["versions"].items())) + "  ",
        f"Started: {cb.started}; {load_line(cb.load)}",
        "",
        "Per-call statistics over timed rounds (median, IQR = Q3 − Q1, and the typical call's 95 % interval: across"
        " epochs of fresh worker processes, Student's t on the epochs' medians, where there are two or more);"
        " 'of floor' = the bare fp32 matmul time of the same arithmetic on this machine ÷ the measured time;"
        " 'vs fastest' within the table (and batch): the ratio, its 95 % interval (each epoch's ratio paired by"
        f" interleaved sweep, then t across epochs) and the verdict, a tie within ±{cb.tie:.0%}.",
        *(["", *noise_lines(doc)] if noise_lines(doc) else []),
    ]
    for table in report_tables(doc):
        if table.rows or table.show_empty:
            lines += ["", f"## {table.heading}", "", *markdown_table(table.headers, table.rows)]
        lines += table.notes
    memory = memory_rows(doc.benchmarks)
    if memory:
        lines += ["", "## Memory", "", *markdown_table(MEMORY_HEADERS, memory), "", memory_note(doc.benchmarks)]
    lines += ["", "## Fairness audit", "", *markdown_table(AUDIT_HEADERS, audit_rows(cb.fairness))]
    return "\n".join(lines) + "\n"


def write_results(folder: Path, doc: BenchDocument) -> tuple[Path, Path]:
    """Write bench.json and bench.md into `folder`; returns their paths."""
    json_path, md_path = folder / "bench.json", folder / "bench.md"
    write_json(json_path, doc.to_json())
    write_text(md_path, to_markdown(doc))
    return json_path, md_path
