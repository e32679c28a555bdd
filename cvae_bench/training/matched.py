"""Matched runs: every selected backend/mode trained `repeats` times to one target, then compared."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cvae_bench.backends.selection import Selection
from cvae_bench.errors import CvaeBenchError
from cvae_bench.runtime.files import claim_output_folder
from cvae_bench.training.compare import write_comparison
from cvae_bench.training.records import ComparisonRow, RunResult
from cvae_bench.training.run import RunOptions, default_run_dir, run_backend, summary_line

#: Makes the progress display of one run, given its label; it receives the run's events.
DisplayFactory = Callable[[str], AbstractContextManager[Callable[[dict[str, Any]], None]]]
#: Called after each run with its result folder (e.g. to export the decoder), returns lines to print.
AfterRun = Callable[[Selection, RunResult, Path], list[str]]


@dataclass(frozen=True)
class Cell:
    """One run of a matched comparison: a backend in a mode, with a seed, into a folder."""

    selection: Selection
    seed: int
    folder: Path
    label: str


@dataclass
class MatchedOutcome:
    """What a matched comparison produced."""

    folder: Path
    single: bool
    results: list[RunResult] = field(default_factory=list)
    rows: list[ComparisonRow] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def plan_cells(selections: Sequence[Selection], repeats: int, seed: int, folder: Path) -> list[Cell]:
    """The runs to make, in order; one run goes straight into `folder`, several into sub-folders."""
    single = len(selections) == 1 and repeats == 1
    cells = []
    for sel in selections:
        for r in range(repeats):
            sub = folder if single else folder / f"{sel.info.name}{'-' + sel.mode if sel.mode else ''}-seed{seed + r}"
            label = sel.info.name + ("" if single else f" seed {seed + r}")
            cells.append(Cell(sel, seed + r, sub, label))
    return cells


def default_folder(selections: Sequence[Selection], repeats: int) -> Path:
    """runs/<backend>-<timestamp> for one run, runs/compare-<timestamp> for several."""
    single = len(selections) == 1 and repeats == 1
    return default_run_dir("runs", selections[0].info.name if single else "compare")


def run_matched(
    selections: Sequence[Selection],
    base: RunOptions,
    repeats: int,
    folder: Path,
    command: str,
    display: DisplayFactory,
    say: Callable[[str], None],
    warn: Callable[[str], None],
    after_run: AfterRun | None = None,
    force: bool = False,
) -> MatchedOutcome:
    """Run every cell in turn, each in a fresh worker; write comparison files when there are several.

    Each run's summary line goes to `say`. One run failing (worker died or hung, export rejected) is
    reported through `warn` and does not stop
    the others; with a single run it is raised. `folder` is claimed for the whole comparison: refused when
    it holds anything (unless `force`) or another run is writing into it, and locked until the end.

    Raises:
        CvaeBenchError: the single run failed, or the folder is refused.
    """
    with claim_output_folder(folder, force):
        return _run_cells(selections, base, repeats, folder, command, display, say, warn, after_run)


def _run_cells(
    selections: Sequence[Selection],
    base: RunOptions,
    repeats: int,
    folder: Path,
    command: str,
    display: DisplayFactory,
    say: Callable[[str], None],
    warn: Callable[[str], None],
    after_run: AfterRun | None,
) -> MatchedOutcome:
    cells = plan_cells(selections, repeats, base.config.seed, folder)
    outcome = MatchedOutcome(folder=folder, single=len(cells) == 1)
    for cell in cells:
        options = replace(base, mode=cell.selection.mode, config=replace(base.config, seed=cell.seed))
        try:
            with display(cell.label) as on_event:
                result = run_backend(cell.selection.info, options, cell.folder, on_event)
            outcome.results.append(result)
            say(summary_line(result, cell.folder))
            if after_run is not None:
                for line in after_run(cell.selection, result, cell.folder):
                    say(line)
        except CvaeBenchError as exc:
            if outcome.single:
                raise
            outcome.failures.append(str(exc))
            warn(f"error: {exc}")
    if not outcome.single and outcome.results:
        outcome.rows = write_comparison(folder, outcome.results, command)
    return outcome
