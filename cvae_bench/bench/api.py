"""The `cvae-bench bench` command as one call: options in, written files and the tables to show out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cvae_bench.backends.selection import Selection, check_selections, parse_selection
from cvae_bench.bench.calibration import calibrate, markdown
from cvae_bench.bench.document import BenchDocument, build_document
from cvae_bench.bench.groups import select
from cvae_bench.bench.groups.base import BenchGroup
from cvae_bench.bench.options import BenchCommand
from cvae_bench.bench.report import (
    ReportTable,
    fairness_blocks,
    load_line,
    noise_lines,
    report_tables,
    write_results,
)
from cvae_bench.bench.roofline import Roofline
from cvae_bench.bench.runner import run_bench, with_runs
from cvae_bench.core.events import SILENT, Reporter, Stage
from cvae_bench.runtime.files import claim_output_folder, read_json, write_json, write_text


@dataclass(frozen=True)
class BenchOutcome:
    """What the command shows: the tables, the fairness audit per process, the load, the A/A self-check and
    rounds in words (`noise`), whether the A/A check failed, and the files written."""

    tables: list[ReportTable]
    fairness: list[tuple[str, list[tuple[str, str]]]]
    load: str
    noise: list[str]
    aa_failed: bool
    json_path: Path
    md_path: Path
    calibration: list[str] | None = None


def run_bench_command(cmd: BenchCommand, reporter: Reporter = SILENT) -> BenchOutcome:
    """Benchmark, write bench.json and bench.md, and return what to show.

    Args:
        cmd: the command's options.
        reporter: hears the stages and measurements, and the data set's download or verification as
            progress messages.

    Raises:
        CvaeBenchError: an unknown backend or group, a missing data set, a failed worker.
    """
    from cvae_bench.training.run import default_run_dir

    # Everything is checked (and the device probed) before a folder is made or a worker started.
    cmd = replace(cmd, options=cmd.options.check())
    selections = check_selections(parse_selection(cmd.backends, all_modes=True, tunable=True), cmd.options.device)
    groups = select(cmd.options.groups)
    folder = Path(cmd.out_dir) if cmd.out_dir else default_run_dir("runs", "bench")
    with claim_output_folder(folder, cmd.force):
        if cmd.replicate <= 1:
            return _bench_into(folder, selections, groups, cmd, reporter)[0]
        outcomes = []
        ceiling: Roofline | None = None
        for k in range(1, cmd.replicate + 1):
            reporter.report(Stage(f"replicate {k}/{cmd.replicate}"))
            rep = folder / f"rep-{k:02d}"
            rep.mkdir(exist_ok=True)
            # Each replicate shuffles its own order: the same order every time would sample one schedule only.
            one = replace(cmd, options=replace(cmd.options, seed=cmd.options.seed + k - 1))
            # The matmul ceiling is the machine's, not the contestants': measured once, the later replicates
            # reuse it (it is a fifth of a short bench's wall time and no interval depends on it).
            outcome, ceiling = _bench_into(rep, selections, groups, one, reporter, ceiling)
            outcomes.append(outcome)
        docs = [BenchDocument.from_json(read_json(o.json_path)) for o in outcomes]
        cal = calibrate(docs)
        write_json(folder / "calibration.json", cal.to_json())
        write_text(folder / "calibration.md", markdown(cal, cmd.command))
        return replace(outcomes[-1], calibration=cal.lines())


def _bench_into(
    folder: Path,
    selections: list[Selection],
    groups: list[BenchGroup[Any]],
    cmd: BenchCommand,
    reporter: Reporter,
    ceiling: Roofline | None = None,
) -> tuple[BenchOutcome, Roofline]:
    """One bench into `folder`: its outcome, and the roofline it measured (or was given as `ceiling`)."""
    from cvae_bench.data.loading import load_dataset
    from cvae_bench.training.compare import load_comparison_rows

    options = cmd.options
    if any(g.needs_data for g in groups) or cmd.with_runs:
        ds = load_dataset(options.dataset, options.data_path, reporter=reporter)
        options = replace(options, data_path=str(ds.path))
    run = run_bench(selections, options, reporter, ceiling)
    runs, source = None, None
    if cmd.runs_path:
        runs, source = load_comparison_rows(cmd.runs_path), cmd.runs_path
    elif cmd.with_runs:
        # Training runs take no tuning knobs: a tuned entry is trained as it ships, once, beside its untuned twin.
        pairs = list(
            dict.fromkeys((b.identity.backend, b.identity.mode) for b in run.backends if not b.twin and not b.reference)
        )
        runs = with_runs(pairs, cmd.with_runs, options, folder / "runs", reporter, cmd.command)
        source = str(folder / "runs" / "comparison.json")
    doc = build_document(run, cmd.command, runs, source)
    json_path, md_path = write_results(folder, doc)
    outcome = BenchOutcome(
        tables=report_tables(doc),
        fairness=fairness_blocks(doc),
        load=load_line(doc.cvae_bench.load),
        noise=noise_lines(doc),
        aa_failed=doc.cvae_bench.noise is not None and doc.cvae_bench.noise.passed is False,
        json_path=json_path,
        md_path=md_path,
    )
    return outcome, run.roofline
