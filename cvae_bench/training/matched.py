"""Matched runs: every selected backend/mode trained `repeats` times to one target, then compared."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cvae_bench.backends import registry
from cvae_bench.backends.selection import Selection
from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.core.events import Message, RunReporter
from cvae_bench.core.records import Record
from cvae_bench.runtime.files import claim_output_folder, file_sha256, read_json, write_json
from cvae_bench.training.checkpoint import remove_checkpoint
from cvae_bench.training.compare import write_comparison
from cvae_bench.training.records import ComparisonRow, RunResult
from cvae_bench.training.run import (
    RunOptions,
    default_run_dir,
    options_from_json,
    options_to_json,
    run_backend,
    summary_line,
)

#: Called after each run with its result folder (e.g. to export the decoder), returns lines to print.
AfterRun = Callable[[Selection, RunResult, Path], list[str]]


@dataclass(frozen=True)
class MatchedRuns:
    """What a matched comparison runs: every selection `repeats` times with `options`, the seeds counting up
    from `options.config.seed`; `command` is recorded in plan.json and in the comparison."""

    selections: tuple[Selection, ...]
    options: RunOptions
    repeats: int = 1
    command: str = "cvae-bench run"

    @property
    def single(self) -> bool:
        """Whether it is one run (into the folder itself) rather than a comparison (one sub-folder per run)."""
        return len(self.selections) == 1 and self.repeats == 1


@dataclass(frozen=True)
class Cell:
    """One run of a matched comparison: a backend in a mode, with a seed, into a folder."""

    selection: Selection
    seed: int
    folder: Path
    label: str


@dataclass(frozen=True)
class RunPlan(Record):
    """plan.json: what a `run` command set out to do, so that `run --resume FOLDER` can finish it."""

    backends: list[list[str]]  # [name, mode or ""] per selection
    repeats: int
    options: dict[str, Any]
    command: str

    @classmethod
    def make(cls, runs: MatchedRuns) -> RunPlan:
        """The plan of a command."""
        pairs = [[s.info.name, s.mode or ""] for s in runs.selections]
        return cls(backends=pairs, repeats=runs.repeats, options=options_to_json(runs.options), command=runs.command)

    def runs(self) -> MatchedRuns:
        """The runs it plans, its backends looked up in this machine's registry."""
        selections = tuple(Selection(registry.get(name), mode or None) for name, mode in self.backends)
        return MatchedRuns(selections, options_from_json(self.options), self.repeats, self.command)


PLAN_FILE = "plan.json"


def load_plan(folder: Path) -> RunPlan:
    """The plan of the `run` command that wrote `folder`.

    Raises:
        CvaeBenchError: no readable plan.json (not a run folder of this version of cvae-bench).
    """
    path = folder / PLAN_FILE
    try:
        return RunPlan.from_json(read_json(path))
    except CvaeBenchError as exc:  # missing, not strict JSON, or not a plan: say which file
        raise CvaeBenchError(f"cannot resume {folder}: no readable {PLAN_FILE} ({exc})") from exc


@dataclass
class MatchedOutcome:
    """What a matched comparison produced."""

    folder: Path
    single: bool
    results: list[RunResult] = field(default_factory=list)
    rows: list[ComparisonRow] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def plan_cells(runs: MatchedRuns, folder: Path) -> list[Cell]:
    """The runs to make, in order; one run goes straight into `folder`, several into sub-folders."""
    single, seed = runs.single, runs.options.config.seed
    cells = []
    for sel in runs.selections:
        for r in range(runs.repeats):
            sub = folder if single else folder / f"{sel.info.name}{'-' + sel.mode if sel.mode else ''}-seed{seed + r}"
            label = sel.info.name + ("" if single else f" seed {seed + r}")
            cells.append(Cell(sel, seed + r, sub, label))
    return cells


def default_folder(runs: MatchedRuns) -> Path:
    """runs/<backend>-<timestamp> for one run, runs/compare-<timestamp> for several."""
    return default_run_dir("runs", runs.selections[0].info.name if runs.single else "compare")


def run_matched(
    runs: MatchedRuns,
    folder: Path,
    reporter: RunReporter,
    *,
    after_run: AfterRun | None = None,
    force: bool = False,
    resume: bool = False,
) -> MatchedOutcome:
    """Run every cell in turn, each in a fresh worker; write comparison files when there are several.

    Each run's events go to `reporter.run(label)` (its progress display), its summary line to `reporter` as
    a `Message`. One run failing (worker died or hung, export rejected) is reported as a warning and does
    not stop the others; with a single run it is raised. `folder` is claimed for the whole comparison:
    refused when it holds anything (unless `force`) or another run is writing into it, and locked until the
    end.

    The plan is written to plan.json first. With `resume` (see `resume_matched`), cells whose result.json
    exists are read back instead of run, and the cell that was interrupted goes on from its checkpoint.

    Raises:
        CvaeBenchError: the single run failed, or the folder is refused.
    """
    with claim_output_folder(folder, force or resume):
        if not resume:
            write_json(folder / PLAN_FILE, RunPlan.make(runs).to_json())
        return _run_cells(runs, folder, reporter, after_run, resume)


def resume_matched(folder: Path, reporter: RunReporter, *, after_run: AfterRun | None = None) -> MatchedOutcome:
    """Finish the `run` command that wrote `folder`: skip the runs that finished, resume the one that did not.

    Raises:
        CvaeBenchError: `folder` has no plan, or another run is writing into it.
    """
    return run_matched(load_plan(folder).runs(), folder, reporter, after_run=after_run, resume=True)


def _run_cells(
    runs: MatchedRuns, folder: Path, reporter: RunReporter, after_run: AfterRun | None, resume: bool
) -> MatchedOutcome:
    base = runs.options
    cells = plan_cells(runs, folder)
    outcome = MatchedOutcome(folder=folder, single=len(cells) == 1)
    for cell in cells:
        options = replace(base, mode=cell.selection.mode, config=replace(base.config, seed=cell.seed))
        finished = finished_result(cell.folder) if resume else None
        if finished is not None:
            remove_checkpoint(cell.folder)  # a run killed between its result.json and this removal
            outcome.results.append(finished)
            reporter.report(Message(f"{cell.label}: finished before, kept -> {cell.folder}"))
            continue
        try:
            with reporter.run(cell.label) as shown:
                result = run_backend(cell.selection.info, options, cell.folder, shown, resume=resume)
            outcome.results.append(result)
            reporter.report(Message(summary_line(result, cell.folder)))
            if after_run is not None:
                for line in after_run(cell.selection, result, cell.folder):
                    reporter.report(Message(line))
        except CvaeBenchError as exc:
            if outcome.single:
                raise
            outcome.failures.append(str(exc))
            reporter.report(Message(f"error: {exc}", "warning"))
    if not outcome.single and outcome.results:
        outcome.rows = write_comparison(folder, outcome.results, runs.command)
    return outcome


def finished_result(folder: Path) -> RunResult | None:
    """The result of a run that completed in `folder` (its weights matching the hash it names), else None."""
    path = folder / "result.json"
    try:
        result = RunResult.from_json(read_json(path))
    except CvaeBenchError:  # missing, damaged or not a result: the run is not finished, it runs again
        return None
    weights = result.weights
    if weights is None or not (folder / weights.file).is_file():
        return None
    return result if file_sha256(folder / weights.file) == weights.sha256 else None
