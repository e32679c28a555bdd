"""One cell, run where the executor puts it: in a fresh worker, in a scratch folder, returned as bytes.

`execute_cell` is the whole of what runs on a node. It never writes into the sweep folder: it runs the
command into a scratch folder of its own, reads back every file it wrote and returns them in a
`CellOutcome`, which the driver writes atomically. A node lost mid-cell so leaves nothing half-written.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.runtime.files import read_json
from cvae_bench.runtime.machine import MachineFingerprint, machine_fingerprint
from cvae_bench.runtime.threads import THREAD_VARS, available_cores, thread_env
from cvae_bench.sweep.cells import Cell, ThreadSettings

#: How a cell ended. A `run` cell ends as its run did; `failed` is an error (a worker that died, a
#: missing framework, a lost node) once its attempts are spent.
CELL_STATUSES = ("reached", "fixed-epochs", "not-reached", "diverged", "measured", "failed")


@dataclass
class CellOutcome:
    """What one attempt at a cell produced, carried back to the driver (pickled; files as bytes).

    Attributes:
        cell: the cell.
        status: one of `CELL_STATUSES`.
        error: the error, for a failed attempt.
        files: every file the command wrote, by name (result.json and weights.safetensors, or bench.json
            and bench.md).
        machine: the fingerprint of the node that ran it (None when it never started).
        node: the node's host name.
        seconds: wall time of the attempt on the node, worker start included.
        threads: the thread settings of the fairness audit.
        summary: one line on the outcome, for the terminal and the summary.
        deviant: a run that left the recipe's convergence band (shown, never ranked).
    """

    cell: Cell
    status: str
    error: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    machine: MachineFingerprint | None = None
    node: str = ""
    seconds: float = 0.0
    threads: ThreadSettings | None = None
    summary: str = ""
    deviant: bool = False

    @classmethod
    def failed(cls, cell: Cell, error: str, **kwargs: object) -> CellOutcome:
        """An attempt that ended in an error."""
        return cls(cell=cell, status="failed", error=error, summary=f"FAILED: {error}", **kwargs)  # type: ignore[arg-type]


#: Scratch folders are `<tmp>/cvae-bench-cell-<pid>-<key>-…`.
SCRATCH_PREFIX = "cvae-bench-cell-"


def sweep_scratch() -> None:
    """Remove the scratch folders of processes that are gone (a task killed with its node runs no cleanup)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name.removeprefix(SCRATCH_PREFIX).split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # alive, someone else's
            continue


def execute_cell(cell: Cell, data_path: str | None = None, idle_timeout: float = 600.0) -> CellOutcome:
    """Run one cell on this machine, each backend in a worker of its own, and return what it wrote.

    Every framework's thread count is set here, for the worker, before it imports anything: to the cell's
    `threads`, or to every core this process may use. An executor's own setting (Ray's OMP_NUM_THREADS)
    is recorded and overridden, never inherited.

    Args:
        cell: the cell.
        data_path: a verified copy of the data set (None: the caches, else a download).
        idle_timeout: seconds a silent worker is given before it counts as hung.

    Returns:
        The outcome; an error (worker died or hung, framework missing, data missing, a bug) is a failed
        outcome, not an exception.
    """
    started = time.perf_counter()
    threads = cell.threads or available_cores()
    settings = ThreadSettings(
        requested=cell.threads,
        used=threads,
        worker_env=thread_env(threads),
        executor_env={k: os.environ[k] for k in THREAD_VARS if k in os.environ},
    )
    common = {"machine": machine_fingerprint(), "node": platform.node(), "threads": settings}
    sweep_scratch()
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-{cell.key}-"))
    try:
        try:
            status, summary, deviant = _run(cell, threads, data_path, idle_timeout, scratch)
        except CvaeBenchError as exc:
            return CellOutcome.failed(cell, str(exc), seconds=time.perf_counter() - started, **common)
        except Exception as exc:  # a bug or a broken install fails this cell, never the sweep's other cells
            error = f"{type(exc).__name__}: {exc}"
            return CellOutcome.failed(cell, error, seconds=time.perf_counter() - started, **common)
        files = {p.name: p.read_bytes() for p in sorted(scratch.iterdir()) if p.is_file()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return CellOutcome(
        cell=cell,
        status=status,
        files=files,
        seconds=time.perf_counter() - started,
        summary=summary,
        deviant=deviant,
        **common,  # type: ignore[arg-type]
    )


def _run(cell: Cell, threads: int, data_path: str | None, idle_timeout: float, out: Path) -> tuple[str, str, bool]:
    """Run the cell's command into `out`; returns (status, one line, deviant)."""
    from cvae_bench.data.loading import load_dataset

    # A verified local copy first, so that the worker only reads it (a node fetches and caches its own).
    data_path = str(load_dataset(cell.dataset, data_path).path)
    if cell.command == "run":
        return _run_train(cell, threads, data_path, idle_timeout, out)
    if cell.command == "bench":
        return _run_bench(cell, threads, data_path, idle_timeout, out)
    raise CvaeBenchError(f"unknown command {cell.command!r} in cell {cell.key}")


def _run_train(cell: Cell, threads: int, data_path: str, idle_timeout: float, out: Path) -> tuple[str, str, bool]:
    from cvae_bench.backends.selection import parse_selection
    from cvae_bench.training.command import RunCommand, run_options
    from cvae_bench.training.run import run_backend, summary_line

    assert cell.run is not None and cell.seed is not None
    (selection,) = parse_selection(cell.selection)
    # The fields a sweep file sets are those RunCommand declares for it, under the same names.
    cmd = RunCommand(
        backends=cell.selection,
        device=cell.device,
        seed=cell.seed,
        dataset=cell.dataset,
        data_path=data_path,
        idle_timeout=idle_timeout,
        threads=threads,
        command=f"cvae-bench sweep (cell {cell.key}: {cell.label})",
        **asdict(cell.run),
    )
    options = replace(run_options(cmd), mode=selection.mode)
    result = run_backend(selection.info, options, out)
    deviant = result.convergence is not None and result.convergence.deviant
    return result.outcome.status, summary_line(result, out).rsplit(" -> ", 1)[0], deviant


def _run_bench(cell: Cell, threads: int, data_path: str, idle_timeout: float, out: Path) -> tuple[str, str, bool]:
    from cvae_bench.bench.api import run_bench_command
    from cvae_bench.bench.options import BenchCommand, BenchOptions
    from cvae_bench.sweep.config import BENCH_DEFAULTS

    assert cell.bench is not None
    p = cell.bench
    # The fields a sweep file sets are those BenchOptions declares for it, under the same names (lists as tuples).
    swept: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in asdict(p).items() if k in BENCH_DEFAULTS
    }
    options = BenchOptions(
        groups=tuple(p.groups),
        device=cell.device,
        threads=threads,
        ort_devices=(cell.device,),
        dataset=cell.dataset,
        data_path=data_path,
        idle_timeout=idle_timeout,
        **swept,
    )
    command = f"cvae-bench sweep (cell {cell.key}: {cell.label})"
    done = run_bench_command(BenchCommand(backends=cell.selection, options=options, command=command, out_dir=str(out)))
    entries = len(read_json(done.json_path)["benchmarks"])
    return "measured", f"{cell.selection}: {entries} benchmark(s) of {', '.join(p.groups)}", False
