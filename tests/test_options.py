"""Options are declared once: every option of every command is a field of that command's options record (or one
of the few flags that only say how to print), and the records follow one spelling rule (docs/cli.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from cvae_bench.bench.options import BenchCommand, BenchOptions, CompareCommand
from cvae_bench.cli import main
from cvae_bench.core.options import declared_options
from cvae_bench.data.evaluate_command import EvaluateCommand
from cvae_bench.data.specs import DataChoice
from cvae_bench.onnx.options import ExportCommand, SampleCommand
from cvae_bench.report.options import ReportCommand
from cvae_bench.serving.options import LoadtestCommand, WebCommand
from cvae_bench.sweep.options import SweepCommand
from cvae_bench.training.command import RunCommand

#: Each command's options records.
RECORDS: dict[tuple[str, ...], tuple[type, ...]] = {
    ("backends",): (),
    ("data", "fetch"): (DataChoice,),
    ("data", "info"): (DataChoice,),
    ("run",): (RunCommand,),
    ("evaluate",): (EvaluateCommand,),
    ("bench",): (BenchCommand, BenchOptions),
    ("export",): (ExportCommand,),
    ("sample",): (SampleCommand,),
    ("loadtest",): (LoadtestCommand,),
    ("sweep",): (SweepCommand,),
    ("report",): (ReportCommand,),
    ("web",): (WebCommand,),
    ("compare",): (CompareCommand,),
}
#: Flags of the command line itself, not of the work: how to print (`--json`, `--markdown`, `--quiet`), and
#: what run and bench do with their folder once the work is done (report, history); bench's `--groups` and
#: `--anatomy` read the group registry, which the light records do not import.
PRESENTATION = {"help", "as_json", "markdown", "quiet", "no_report", "history_dir", "no_history", "groups", "anatomy"}
ALL_RECORDS = sorted({r for records in RECORDS.values() for r in records}, key=lambda r: r.__name__)


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], click.Command]:
    out: dict[tuple[str, ...], click.Command] = {}
    for name in group.list_commands(click.Context(group)):
        command = group.get_command(click.Context(group), name)
        assert command is not None
        if isinstance(command, click.Group):
            out |= _commands(command, (*path, name))
        else:
            out[(*path, name)] = command
    return out


def test_every_command_has_its_records_here() -> None:
    assert set(_commands(main)) == set(RECORDS), "a new command needs its options record in RECORDS"


@pytest.mark.parametrize("path", sorted(RECORDS), ids=" ".join)
def test_every_option_is_a_declared_field(path: tuple[str, ...]) -> None:
    """The command's options are exactly its records' declared fields and the printing flags: a default, a bound
    or a help text cannot be written in the command line instead of the record."""
    command = _commands(main)[path]
    options = {p.name: p for p in command.params if isinstance(p, click.Option)}
    declared = {o.name: o for record in RECORDS[path] for o in declared_options(record)}
    assert set(options) - set(declared) <= PRESENTATION, f"not declared in {RECORDS[path]}"
    assert set(declared) <= set(options), "a declared field the command line does not offer"
    for name, o in declared.items():
        param = options[name]
        assert o.spec.flag in param.opts and set(o.spec.aliases) <= set(param.opts + param.secondary_opts)
        assert param.required == o.spec.required
        if not o.spec.required and not o.is_list:
            assert param.default == o.default, f"{o.spec.flag}: the command line's default is not the record's"


@pytest.mark.parametrize("record", ALL_RECORDS, ids=lambda r: r.__name__)
def test_one_spelling_rule(record: type) -> None:
    """A list is spelled plural and its singular is accepted; a device is `--device` (`--devices` accepted)."""
    for o in declared_options(record):
        spellings = (o.spec.flag, *o.spec.aliases)
        if o.is_list:
            assert o.spec.flag.endswith("s"), f"{o.spec.flag}: a list is spelled plural"
            assert any(o.spec.flag.startswith(a) and a != o.spec.flag for a in o.spec.aliases), (
                f"{o.spec.flag}: the singular spelling should be accepted too"
            )
        if "--device" in spellings or "--devices" in spellings:
            assert {"--device", "--devices"} <= set(spellings)
        assert o.spec.help.strip(), f"{o.spec.flag} has no help"


def test_a_shared_option_is_the_same_everywhere() -> None:
    """`--device`, `--worker-timeout`, `--dataset`, `--data` and `-o/--out` keep one default and one kind in
    every record that has them (each is declared by one factory)."""
    seen: dict[str, set[object]] = {}
    for record in ALL_RECORDS:
        for o in declared_options(record):
            if o.spec.flag in ("--worker-timeout", "--dataset", "--data") or (
                o.spec.flag == "--device" and not o.is_list
            ):
                seen.setdefault(o.spec.flag, set()).add((o.default, o.spec.minimum, o.spec.choices, o.spec.path))
    assert set(seen) == {"--device", "--worker-timeout", "--dataset", "--data"}
    assert all(len(kinds) == 1 for kinds in seen.values()), seen


def test_an_option_is_traced_from_the_command_line_through_a_sweep_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bench --rounds 3 --min-time 0.05 ...` and a sweep file's `[bench] rounds = 3, min_time = 0.05 ...` build
    the same `BenchOptions`, the record bench.json records (`cvae_bench.options`, tests/test_bench.py)."""
    from cvae_bench.sweep import execute
    from cvae_bench.sweep.config import read_sweep_file

    built: list[BenchCommand] = []

    class Stop(Exception):
        pass

    def capture(command: BenchCommand, *args: Any, **kwargs: Any) -> Any:
        built.append(command)
        raise Stop

    monkeypatch.setattr("cvae_bench.bench.api.run_bench_command", capture)
    values = {"epochs": "2", "rounds": "3", "min-time": "0.05", "warmup": "5", "batch-sizes": "1,64"}
    args = [f"--{k}={v}" for k, v in values.items()]
    CliRunner().invoke(main, ["bench", "--backend", "numpy", "--groups", "train-step", "--threads", "1", *args])
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(
        '[sweep]\nname = "trace"\ncommands = ["bench"]\nbackends = ["numpy"]\nthreads = [1]\n'
        '[bench]\ngroups = ["train-step"]\nepochs = 2\nrounds = 3\nmin_time = 0.05\nwarmup = 5\nbatch_sizes = [1, 64]\n'
    )
    (cell,) = read_sweep_file(sweep).cells
    with pytest.raises(Stop):
        execute._run_bench(cell, 1, "mnist.npz", BenchOptions().idle_timeout, tmp_path)
    from_cli, from_sweep = (c.options.to_dict() for c in built)
    assert (from_cli["rounds"], from_cli["min_time"], from_cli["batch_sizes"]) == (3, 0.05, (1, 64))
    assert from_sweep.pop("data_path") == "mnist.npz" and from_cli.pop("data_path") is None  # the sweep fetched it
    # devices are an axis of a sweep: a cpu cell times onnxruntime on cpu only; bench tries CUDA where present
    assert (from_sweep.pop("ort_devices"), from_cli.pop("ort_devices")) == (("cpu",), ("cpu", "cuda"))
    assert from_cli == from_sweep
