"""`cvae-bench sweep` as one call: read the sweep file, skip finished cells, run the rest, write the summary."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from cvae_bench.core.events import Message, Reporter
from cvae_bench.core.options import check_declared
from cvae_bench.sweep.cells import Cell
from cvae_bench.sweep.config import SweepFile, read_sweep_file
from cvae_bench.sweep.executors import Executor, ExecutorSettings, make_executor
from cvae_bench.sweep.options import SweepCommand
from cvae_bench.sweep.store import CellRecord, SweepStore
from cvae_bench.sweep.summary import summarize_sweep, write_summary


@dataclass
class SweepOutcome:
    """What a sweep did: the folder, the cells it skipped, ran and failed, and the files it wrote."""

    folder: Path
    cells: int
    skipped: int = 0
    ran: list[CellRecord] = field(default_factory=list)
    summary_json: Path | None = None
    summary_md: Path | None = None
    report: Path | None = None

    @property
    def failed(self) -> list[CellRecord]:
        """Cells of this sweep that ended as failed."""
        return [r for r in self.ran if r.status == "failed"]


def _ignore(_: CellRecord) -> None:
    pass


def sweep_command(
    cmd: SweepCommand,
    reporter: Reporter,
    on_cell: Callable[[CellRecord], None] = _ignore,
) -> SweepOutcome:
    """Run (or, with `dry_run`, list) every cell of a sweep file that has not finished yet.

    A cell is finished when `cells/<key>/cell.json` exists in the results folder: it is never run again,
    so a stopped sweep resumes by running the same command. A cell that fails is run again up to
    `retries` times, then recorded as failed (and skipped by later sweeps unless `retry_failed`).

    Args:
        cmd: the command's options.
        reporter: hears the sweep's lines (each cell as it is written, the dry run's table) and warnings.
        on_cell: called with each cell's record once it is written.

    Raises:
        UsageError: an option out of its bounds, or a bad sweep file (one line naming the key and line).
        CvaeBenchError: an executor that cannot run (Ray missing, no node that can hold a cell), a folder
            another sweep is writing.
    """
    cmd = check_declared(cmd)  # what the command line checked while parsing; a caller in Python comes here
    sweep = read_sweep_file(cmd.path, cmd.out, local=cmd.executor == "local")
    settings = ExecutorSettings(
        data_path=sweep.data_path,
        idle_timeout=cmd.idle_timeout,
        address=cmd.address or sweep.ray.address,
        slot=sweep.ray.slot,
        cpus=sweep.ray.cpus,
    )
    executor = make_executor(cmd.executor, settings)
    store = SweepStore(sweep.out)
    if cmd.dry_run:
        for line in plan_lines(sweep, store, executor, cmd.retry_failed):
            reporter.report(Message(line))
        return SweepOutcome(folder=sweep.out, cells=len(sweep.cells))
    outcome = SweepOutcome(folder=sweep.out, cells=len(sweep.cells))
    executor.check()  # before the results folder is made: a missing Ray leaves nothing behind
    with store:
        store.open(sweep.text)
        previous = {c.key: store.record(c.key) for c in sweep.cells}
        todo = [c for c in sweep.cells if _should_run(previous[c.key], cmd.retry_failed)]
        outcome.skipped = len(sweep.cells) - len(todo)
        reporter.report(
            Message(
                f"sweep {sweep.name!r}: {len(sweep.cells)} cells, {outcome.skipped} finished before, "
                f"{len(todo)} to run -> {sweep.out}"
            )
        )
        if todo:
            if executor.name == "local" and settings.data_path is None:
                executor.settings = replace(settings, data_path=_local_data(sweep, reporter))

            def written(record: CellRecord) -> None:
                outcome.ran.append(record)
                on_cell(record)

            _run_cells(todo, previous, executor, store, cmd.retries, reporter, written)
        records = [r for c in sweep.cells if (r := store.record(c.key)) is not None]
        summary = summarize_sweep(sweep.name, sweep.out, records, pending=len(sweep.cells) - len(records))
        outcome.summary_json, outcome.summary_md = write_summary(summary, sweep.out)
        outcome.report = _report(sweep.out, reporter)
    return outcome


def _should_run(record: CellRecord | None, retry_failed: bool) -> bool:
    return record is None or (retry_failed and record.status == "failed")


def _local_data(sweep: SweepFile, reporter: Reporter) -> str:
    """Fetch and verify the data set once, here, so that every cell reads the same local copy."""
    from cvae_bench.data.loading import load_dataset

    datasets = {c.dataset for c in sweep.cells}
    (dataset,) = datasets
    return str(load_dataset(dataset, reporter=reporter).path)


def _run_cells(
    todo: list[Cell],
    previous: dict[str, CellRecord | None],
    executor: Executor,
    store: SweepStore,
    retries: int,
    reporter: Reporter,
    written: Callable[[CellRecord], None],
) -> None:
    """Submit every cell, write each as it finishes, submit a failed one again while attempts are left."""
    attempts: dict[str, int] = {}
    errors: dict[str, list[str]] = {}
    for cell in todo:
        old = previous.get(cell.key)
        attempts[cell.key] = old.attempts if old is not None else 0
        errors[cell.key] = list(old.errors) if old is not None else []
    budget = {cell.key: attempts[cell.key] + retries + 1 for cell in todo}
    with executor:
        reporter.report(Message(f"executor: {executor.describe()}"))
        for cell in todo:
            executor.submit(cell)
        done = 0
        while executor.in_flight:
            result = executor.next_done()
            key = result.cell.key
            attempts[key] += 1
            if result.status == "failed":
                errors[key].append(result.error or "unknown error")
                if attempts[key] < budget[key]:
                    reporter.report(Message(f"retrying {result.cell.label} ({key}): {result.error}"))
                    executor.submit(result.cell)
                    continue
            record = store.write(result, attempts[key], errors[key], executor.name)
            done += 1
            where = f" on {record.node}" if record.node else ""
            line = (
                f"[{done}/{len(todo)}] {record.label}: {record.summary} ({record.seconds:.1f} s{where}) -> cells/{key}"
            )
            reporter.report(Message(line))
            written(record)


def _report(folder: Path, reporter: Reporter) -> Path | None:
    """One report over the sweep folder, where the report wing exists.

    Inputs that cannot make a report are a warning; a report that cannot be written is an error.
    """
    # Looked up by name: the summary stands without the report wing (an older or trimmed install).
    write_report = None
    for module in ("cvae_bench.report", "cvae_bench.report.api"):
        try:
            write_report = getattr(importlib.import_module(module), "write_report", None)
        except ImportError:
            continue
        if write_report is not None:
            break
    if write_report is None:
        return None
    from cvae_bench.report.inputs import ReportError

    try:
        path: Path = write_report(folder)
    except ReportError as exc:  # the inputs cannot make a report: the sweep's own files still stand
        reporter.report(Message(f"warning: no report: {exc}", "warning"))
        return None
    # Any other error (a full disk, a folder that cannot be written) fails the command, as for run and bench.
    return path


def plan_lines(sweep: SweepFile, store: SweepStore, executor: Executor, retry_failed: bool = False) -> list[str]:
    """The dry run: every cell with its key, whether it will run, and the resources it asks for."""
    from cvae_bench.core.tables import markdown_table

    rows = []
    todo = 0
    for cell in sweep.cells:
        record = store.record(cell.key)
        runs = _should_run(record, retry_failed)
        todo += runs
        state = "to run" if record is None else f"done: {record.status}" + (", to run again" if runs else "")
        rows.append([cell.key, cell.label, state, executor.needs(cell)])
    head = (
        f"sweep {sweep.name!r}: {len(sweep.cells)} cells, {len(sweep.cells) - todo} finished, {todo} to run "
        f"with the {executor.name} executor -> {sweep.out}"
    )
    return [head, *markdown_table(["key", "cell", "state", "resources"], rows)]
