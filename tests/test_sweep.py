"""Sweeps with the default executor: the grid, the keys, bad files, and a tiny real sweep run, resumed and retried."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import deque
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cvae_bench.backends import registry
from cvae_bench.cli import main
from cvae_bench.core.defaults import DEFAULT_MAX_EPOCHS, PRECISIONS
from cvae_bench.core.errors import CvaeBenchError, UsageError
from cvae_bench.core.events import Event, Message
from cvae_bench.core.options import declared_options, sweep_defaults
from cvae_bench.sweep.api import sweep_command
from cvae_bench.sweep.cells import Cell, RunParams
from cvae_bench.sweep.config import AXES, RUN_DEFAULTS, SCHEMA, SweepFileError, read_sweep_file
from cvae_bench.sweep.execute import CellOutcome
from cvae_bench.sweep.executors import EXECUTORS, ExecutorSettings, make_executor
from cvae_bench.sweep.executors.base import Executor
from cvae_bench.sweep.options import EXECUTOR_NAMES, SweepCommand
from cvae_bench.sweep.store import SweepStore
from cvae_bench.training.command import RunCommand

#: A sweep of tiny real cells: numpy trains 10 steps of 64 images in about a second.
TINY = """
[sweep]
name = "tiny"
commands = ["run"]
backends = ["numpy"]
devices = ["cpu"]
threads = [1]
seeds = [0, 1]

[run]
epochs = 1
train_subset = 640
val_subset = 200
"""

GRID = """
[sweep]
name = "grid"
commands = ["run", "bench"]
backends = ["numpy", "torch:eager"]
threads = [1, "all"]
seeds = [0, 1, 2]
repeats = 2

[run]
target = 240.0
max_epochs = 3

[bench]
backends = ["numpy"]
groups = ["train-step"]
epochs = 2
rounds = 3
batch_sizes = [1, 64]
repeats = 1
"""


class Heard:
    """A `Reporter` that keeps the text of each message it hears: the lines, and the warnings apart."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.warnings: list[str] = []

    def report(self, event: Event) -> None:
        if isinstance(event, Message):
            (self.warnings if event.level == "warning" else self.lines).append(event.text)


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


needs_numpy = pytest.mark.skipif(
    "numpy" not in registry.all_backends(), reason="the example numpy plugin is not installed"
)


# -- the grid and its keys ------------------------------------------------------------------------------------
@needs_numpy
def test_grid_expands_every_axis_in_a_stable_order(tmp_path: Path) -> None:
    sweep = read_sweep_file(write(tmp_path, GRID))
    runs = [c for c in sweep.cells if c.command == "run"]
    benches = [c for c in sweep.cells if c.command == "bench"]
    assert len(runs) == 2 * 2 * 3 * 2  # backends × threads × seeds × repeats
    assert len(benches) == 2  # [bench] overrides backends and repeats; seeds do not apply
    assert runs[0].label == "run numpy cpu threads=1 seed=0 #0"
    assert runs[-1].label == "run torch:eager cpu threads=all seed=2 #1"
    assert {c.threads for c in runs} == {1, None}
    assert all(c.run == RunParams(target=240.0, max_epochs=3) for c in runs)
    assert benches[0].bench is not None and benches[0].bench.batch_sizes == [1, 64]
    assert sweep.out == Path("runs/sweep-grid")
    assert len({c.key for c in sweep.cells}) == len(sweep.cells)


@needs_numpy
def test_keys_are_stable_and_change_with_every_parameter(tmp_path: Path) -> None:
    cells = read_sweep_file(write(tmp_path, TINY)).cells
    cell = cells[0]
    # The key is a hash of the parameters alone: the same in every process and on every machine.
    assert cell.key == "5483fb9889810fb2"
    assert Cell.from_json(json.loads(json.dumps(cell.to_json()))).key == cell.key
    assert cells[1].key != cell.key
    assert cell.run is not None
    changed = [
        replace(cell, threads=2),
        replace(cell, device="cuda"),
        replace(cell, mode="eager"),
        replace(cell, repeat=1),
        replace(cell, dataset="fashion-mnist"),
        replace(cell, run=replace(cell.run, val_subset=201)),
    ]
    assert len({c.key for c in changed} | {cell.key}) == len(changed) + 1
    # Tables and keys written in another order make the same cells.
    reordered = TINY.replace('devices = ["cpu"]\n', "").replace('name = "tiny"\n', 'name = "tiny"\ndevices = "cpu"\n')
    assert [c.key for c in read_sweep_file(write(tmp_path, reordered, "b.toml")).cells] == [c.key for c in cells]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[sweep]\nbackends = [\n", "not valid TOML"),
        ('[sweep]\nbackends = ["numpy"]\ncolour = "red"\n', ":3: [sweep] colour: unknown key"),
        (
            '[sweep]\nbackends = ["numpy"]\n[run]\n\nmax_epochs = "ten"\n',
            ":5: [run] max_epochs: expected an integer >= 1, got 'ten'",
        ),
        ('[sweep]\nbackends = ["tf"]\n[run]\n', ":2: [sweep] backends: Unknown backend 'tf'. Known: "),
        ('[sweep]\nbackends = ["torch:all"]\n[run]\n', "name one mode per entry"),
        ('[sweep]\nbackends = ["torch:eager+threads=1"]\n[bench]\n', "tuning knobs (+KNOB=VALUE) are for"),
        ('[sweep]\nbackends = ["numpy"]\n[run]\nbatch_sizes = [32]\n', "the training recipe fixes batch 64"),
        (
            '[sweep]\nbackends = ["numpy"]\nthreads = [0]\n[run]\n',
            ':3: [sweep] threads: expected a list of an integer from 1 to 4096 or "all", got [0]',
        ),
        ('[sweep]\nbackends = ["numpy"]\n[bench]\ngroups = ["nope"]\n', ":4: [bench] groups: unknown group 'nope'"),
        ('[sweep]\nbackends = ["numpy"]\n', "no command"),
        ('[sweeps]\nbackends = ["numpy"]\n', ":1: [sweeps]: unknown table"),
    ],
    ids=[
        "toml",
        "unknown-key",
        "wrong-type",
        "unknown-backend",
        "every-mode",
        "tuned",
        "misplaced",
        "threads",
        "group",
        "no-command",
        "table",
    ],
)
def test_bad_sweep_files_say_where(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SweepFileError) as info:
        read_sweep_file(path)
    assert expected in str(info.value)
    assert str(info.value).startswith(str(path))


# -- [run] is generated from RunCommand, as [bench] from BenchOptions ----------------------------------------------
def test_run_keys_are_run_commands_sweep_options() -> None:
    """[run]'s own keys, their checks and their defaults are RunCommand's options declared for sweep files."""
    declared = [o for o in declared_options(RunCommand) if o.spec.sweep]
    assert [o.name for o in declared] == [k for k in SCHEMA["run"] if k not in AXES]
    assert {o.name: o.default for o in declared} == RUN_DEFAULTS
    assert [f.name for f in fields(RunParams)] == list(RUN_DEFAULTS)  # a cell records every one of them


@pytest.mark.parametrize("key", ["max_epochs", "epochs", "eval_every", "train_subset", "val_subset"])
def test_a_run_key_below_its_options_bound_is_refused_with_that_bound(tmp_path: Path, key: str) -> None:
    (o,) = [o for o in declared_options(RunCommand) if o.name == key]
    assert o.spec.minimum is not None
    low = int(o.spec.minimum)
    path = write(tmp_path, f'[sweep]\nbackends = ["torch"]\n[run]\n{key} = {low - 1}\n')
    with pytest.raises(SweepFileError) as info:
        read_sweep_file(path)
    expected = f"an integer >= {low}" + (" or false" if o.optional else "")
    assert str(info.value) == f"{path}:4: [run] {key}: expected {expected}, got {low - 1}"


def test_a_run_cell_gets_run_commands_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the file does not say, a cell takes from RunCommand: `--max-epochs`'s default is a cell's max_epochs."""
    path = write(tmp_path, '[sweep]\nbackends = ["torch"]\n[run]\nepochs = 1\n')
    (cell,) = read_sweep_file(path).cells
    assert cell.run is not None
    assert cell.run.max_epochs == RunCommand().max_epochs == DEFAULT_MAX_EPOCHS
    assert cell.run == RunParams(**{**sweep_defaults(RunCommand), "epochs": 1})
    # The cell reads the defaults generated from the record, not a copy of its own.
    monkeypatch.setitem(RUN_DEFAULTS, "max_epochs", 7)
    (cell,) = read_sweep_file(path).cells
    assert cell.run is not None and cell.run.max_epochs == 7


@needs_numpy
def test_a_cells_command_is_built_from_its_params_through_the_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run cell becomes a RunCommand, a bench cell a BenchOptions, each from the cell's params by field name."""
    from cvae_bench.sweep import execute

    class Built(Exception):
        pass

    def built(*args: Any) -> Any:
        raise Built(*args)

    cells = read_sweep_file(write(tmp_path, GRID)).cells
    run = next(c for c in cells if c.command == "run" and c.backend == "numpy" and c.seed == 2)
    monkeypatch.setattr("cvae_bench.training.run.run_backend", built)
    with pytest.raises(Built) as info:
        execute._run_train(run, 3, "mnist.npz", 60.0, tmp_path)
    options = info.value.args[1]
    assert (options.config.target, options.config.max_epochs, options.config.seed) == (240.0, 3, 2)
    assert options.config.epochs is None and options.train_subset is None and options.val_subset is None
    assert (options.device, options.threads, options.data_path, options.idle_timeout) == ("cpu", 3, "mnist.npz", 60.0)

    bench = next(c for c in cells if c.command == "bench")
    monkeypatch.setattr("cvae_bench.bench.api.run_bench_command", built)
    with pytest.raises(Built) as info:
        execute._run_bench(bench, 3, "mnist.npz", 60.0, tmp_path)
    command = info.value.args[0]
    assert (command.backends, command.out_dir) == (bench.selection, str(tmp_path))
    got = command.options
    assert (got.groups, got.epochs, got.rounds, got.batch_sizes) == (("train-step",), 2, 3, (1, 64))
    assert (got.precisions, got.train_subset, got.threads, got.data_path) == (PRECISIONS, None, 3, "mnist.npz")


# -- the command's options --------------------------------------------------------------------------------------
def test_sweep_options_are_the_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line's defaults are SweepCommand's own; a record built in Python is held to the same rules."""
    from cvae_bench.sweep import api

    asked: list[SweepCommand] = []
    monkeypatch.setattr(api, "sweep_command", lambda cmd, reporter: asked.append(cmd) or api.SweepOutcome(tmp_path, 0))
    assert CliRunner().invoke(main, ["sweep", "s.toml"]).exit_code == 0
    assert asked == [SweepCommand(path="s.toml")]
    assert CliRunner().invoke(main, ["sweep", "s.toml", "--executor", "Ray", "--worker-timeout", "5"]).exit_code == 0
    assert (asked[-1].executor, asked[-1].idle_timeout) == ("ray", 5.0)
    monkeypatch.undo()
    for wrong, says in (
        ({"retries": -1}, "--retries: -1 is below the minimum 0"),
        ({"executor": "slurm"}, "--executor: 'slurm' is not one of local, ray"),
        ({"idle_timeout": 0.5}, "--worker-timeout: 0.5 is below the minimum 1"),
    ):
        with pytest.raises(UsageError, match=re.escape(says)):  # before the file is read: it does not exist
            sweep_command(SweepCommand(str(tmp_path / "missing.toml"), **wrong), Heard())
    assert tuple(EXECUTORS) == EXECUTOR_NAMES


def test_cli_answers_a_bad_sweep_file_with_one_error_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[sweep]\nbackends = ["numpy"]\n[run]\nepochs = 0\n')
    result = CliRunner().invoke(main, ["sweep", str(path), "--dry-run"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines == [f"error: {path}:4: [run] epochs: expected an integer >= 1 or false, got 0"]


@needs_numpy
def test_dry_run_lists_cells_and_resources_and_runs_nothing(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GRID.replace('threads = [1, "all"]', "threads = [2]").replace("devices", "x") + '\n[ray]\nslot = "node"\n',
    )
    for executor, resources in (("local", "this machine alone, 2 thread(s)"), ("ray", "node 1, CPU 2")):
        heard = Heard()
        sweep_command(SweepCommand(str(path), executor=executor, dry_run=True, out=str(tmp_path / "out")), heard)
        lines = heard.lines
        assert lines[0].startswith(f"sweep 'grid': 13 cells, 0 finished, 13 to run with the {executor} executor")
        assert len(lines) == 3 + 13 and all(resources in ln for ln in lines[3:])
    assert not (tmp_path / "out").exists()


def test_ray_executor_without_ray_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def no_ray(name: str, package: str | None = None) -> object:
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", no_ray)
    with pytest.raises(
        CvaeBenchError, match=r"^Ray is not installed; install it with: pip install 'cvae-bench\[ray\]'$"
    ):
        make_executor("ray", ExecutorSettings()).start()


def test_a_sweep_on_ray_without_ray_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray is looked for before the results folder is made: one line, nothing written, nothing locked."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    out = tmp_path / "out"
    with pytest.raises(CvaeBenchError, match=r"^Ray is not installed"):
        sweep_command(SweepCommand(str(write(tmp_path, TINY)), out=str(out), executor="ray"), Heard())
    assert not out.exists()
    assert set(EXECUTORS) == {"local", "ray"}
    with pytest.raises(CvaeBenchError, match="unknown executor 'slurm'; known: local, ray"):
        make_executor("slurm", ExecutorSettings())


# -- retries, without workers ---------------------------------------------------------------------------------
class FlakyExecutor(Executor):
    """Fails each cell `failures[key]` times, then succeeds; counts every run."""

    name = "flaky"

    def __init__(self, failures: dict[str, int]) -> None:
        super().__init__(ExecutorSettings(data_path="unused"))
        self.failures = failures
        self.runs: dict[str, int] = {}
        self._queue: deque[Cell] = deque()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self._queue.clear()

    def submit(self, cell: Cell) -> None:
        self._queue.append(cell)

    def next_done(self) -> CellOutcome:
        cell = self._queue.popleft()
        self.runs[cell.key] = self.runs.get(cell.key, 0) + 1
        if self.runs[cell.key] <= self.failures.get(cell.key, 0):
            return CellOutcome.failed(cell, f"boom {self.runs[cell.key]}")
        return CellOutcome(cell=cell, status="fixed-epochs", files={"note.txt": b"ok"}, summary="ok")

    @property
    def in_flight(self) -> int:
        return len(self._queue)


@needs_numpy
def test_a_failing_cell_is_retried_then_recorded_and_not_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, TINY)
    first, second = (c.key for c in read_sweep_file(path).cells)
    flaky = FlakyExecutor({first: 1, second: 99})
    monkeypatch.setattr("cvae_bench.sweep.api.make_executor", lambda name, settings: flaky)
    cmd = SweepCommand(str(path), out=str(tmp_path / "out"), retries=2)
    outcome = sweep_command(cmd, Heard())
    assert flaky.runs == {first: 2, second: 3}  # recovered on its retry / failed 1 + 2 retries times
    by_key = {r.key: r for r in outcome.ran}
    assert by_key[first].status == "fixed-epochs" and by_key[first].errors == ["boom 1"]
    assert by_key[second].status == "failed" and by_key[second].attempts == 3
    assert by_key[second].errors == ["boom 1", "boom 2", "boom 3"]
    # Recorded as failed: the next sweep leaves it alone, unless asked to run failed cells again.
    assert sweep_command(cmd, Heard()).ran == []
    flaky.failures = {}
    again = sweep_command(replace(cmd, retry_failed=True, retries=0), Heard())
    assert [(r.key, r.status, r.attempts) for r in again.ran] == [(second, "fixed-epochs", 4)]
    assert flaky.runs == {first: 2, second: 4}


# -- a real sweep ---------------------------------------------------------------------------------------------
@needs_numpy
def test_tiny_real_sweep_runs_resumes_and_summarises(tmp_path: Path) -> None:
    """Two real cells: one trains, one fails in its worker (numpy declares no CUDA); then a resume."""
    path = write(tmp_path, TINY.replace('devices = ["cpu"]', 'devices = ["cpu", "cuda"]').replace("[0, 1]", "[0]"))
    out = tmp_path / "out"
    cmd = SweepCommand(str(path), out=str(out), retries=0)  # retries themselves: the test above
    cpu, cuda = read_sweep_file(path).cells
    first = sweep_command(cmd, Heard())
    assert first.skipped == 0 and [r.key for r in first.ran] == [cpu.key, cuda.key]

    records = {r.key: r for r in SweepStore(out).records()}
    record = records[cpu.key]
    assert record.status == "fixed-epochs" and record.attempts == 1 and record.executor == "local"
    assert record.files == ["result.json", "weights.safetensors"]
    assert record.threads is not None and record.threads.used == 1
    assert record.threads.worker_env["OMP_NUM_THREADS"] == "1"
    result = json.loads((out / "cells" / cpu.key / "result.json").read_text())
    assert (result["backend"], result["seed"], result["status"]) == ("numpy", 0, "fixed-epochs")
    failed = records[cuda.key]
    assert failed.status == "failed" and failed.attempts == 1 and "cuda" in failed.errors[0]
    assert failed.files == [] and (out / "cells" / cuda.key / "cell.json").is_file()

    summary = json.loads((out / "summary.json").read_text())
    assert summary["statuses"] == {"fixed-epochs": 1, "failed": 1}
    ((machine, fingerprint),) = summary["machines"].items()
    assert fingerprint["cores"] >= 1 and summary["runs"][0]["machine"] == machine
    assert summary["runs"][0]["rows"][0]["runs"] == 1
    markdown = (out / "summary.md").read_text()
    assert f"## Machine `{machine}`" in markdown and "## Errors" in markdown

    # Run again: nothing is run twice. Lose the trained cell (and leave a half-written folder): only it runs.
    again = sweep_command(cmd, Heard())
    assert again.ran == [] and again.skipped == 2
    kept = (out / "cells" / cuda.key / "cell.json").read_bytes()
    shutil.rmtree(out / "cells" / cpu.key)
    (out / "cells" / f".tmp-{cpu.key}-killed").mkdir()
    resumed = sweep_command(cmd, Heard())
    assert [r.key for r in resumed.ran] == [cpu.key]
    assert (out / "cells" / cuda.key / "cell.json").read_bytes() == kept
    assert json.loads((out / "cells" / cpu.key / "result.json").read_text())["final"] == result["final"]
    assert sorted(p.name for p in (out / "cells").iterdir()) == sorted([cpu.key, cuda.key])


def test_scratch_of_a_dead_process_is_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task killed with its node leaves its scratch folder; the next cell on that node removes it."""
    import subprocess
    import sys
    import tempfile

    from cvae_bench.sweep.execute import SCRATCH_PREFIX, sweep_scratch

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / f"{SCRATCH_PREFIX}{dead.stdout.strip()}-0123456789abcdef-x"
    alive = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-0123456789abcdef-y"
    for folder in (gone, alive):
        folder.mkdir()
        (folder / "result.json").write_text("{}")
    sweep_scratch()
    assert not gone.exists() and alive.exists()


@needs_numpy
def test_a_bug_in_a_cell_fails_that_cell_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any exception of a cell (a half-edited module, a bug) is its failed outcome, never the sweep's crash."""
    from cvae_bench.sweep import execute

    def broken(*args: object) -> tuple[str, str, bool]:
        raise ImportError("cannot import name 'calibrate'")

    monkeypatch.setattr(execute, "_run", broken)
    cell = read_sweep_file(write(tmp_path, TINY)).cells[0]
    outcome = execute.execute_cell(cell)
    assert outcome.status == "failed" and outcome.error == "ImportError: cannot import name 'calibrate'"
    assert outcome.machine is not None and outcome.files == {}


@needs_numpy
def test_a_report_that_cannot_be_written_fails_the_sweep_like_run_and_bench(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cvae_bench.report.api as report_api
    from cvae_bench.report.inputs import ReportError

    path = write(tmp_path, TINY)
    monkeypatch.setattr("cvae_bench.sweep.api.make_executor", lambda name, settings: FlakyExecutor({}))

    def full_disk(*args: Any, **kwargs: Any) -> Path:
        raise CvaeBenchError(f"cannot write {tmp_path / 'out' / 'report.html'}: No space left on device")

    monkeypatch.setattr(report_api, "write_report", full_disk)
    with pytest.raises(CvaeBenchError, match=r"report\.html: No space left on device"):
        sweep_command(SweepCommand(str(path), out=str(tmp_path / "out")), Heard())

    def unreadable(*args: Any, **kwargs: Any) -> Path:
        raise ReportError("no results to report")

    monkeypatch.setattr(report_api, "write_report", unreadable)
    heard = Heard()
    sweep_command(SweepCommand(str(path), out=str(tmp_path / "again")), heard)
    assert heard.warnings == ["warning: no report: no results to report"]


class DamagedFilesExecutor(FlakyExecutor):
    """Every cell "succeeds" with a file that is not what a cell of ours writes (as a hand edit or a bad disk)."""

    def next_done(self) -> CellOutcome:
        from cvae_bench.runtime.machine import machine_fingerprint

        cell = self._queue.popleft()
        name = "bench.json" if cell.command == "bench" else "result.json"
        damaged = b'{"benchmarks": [{"group": "train-step"}]}' if cell.command == "bench" else b'{"final": NaN}'
        return CellOutcome(cell=cell, status="fixed-epochs", files={name: damaged}, machine=machine_fingerprint())


def test_a_damaged_cell_file_is_named_in_the_summary_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary reads each cell's file strictly: one it cannot read is left out of the tables by name."""
    path = write(tmp_path, GRID.replace("repeats = 2", "repeats = 1").replace("[0, 1, 2]", "[0]"))
    monkeypatch.setattr("cvae_bench.sweep.api.make_executor", lambda name, settings: DamagedFilesExecutor({}))
    out = tmp_path / "out"
    sweep_command(SweepCommand(str(path), out=str(out)), Heard())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == [] and all(not b["rows"] for b in summary["benches"])
    unreadable = summary["unreadable"]
    assert any("/result.json: " in u and "NaN is not strict JSON" in u for u in unreadable), unreadable
    assert any("/bench.json: " in u for u in unreadable), unreadable
    assert "Left out of the tables, unreadable:" in (out / "summary.md").read_text()
