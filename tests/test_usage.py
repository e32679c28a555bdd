"""Bad usage is refused before any work: one `error:` line on stderr, exit 2, and no file or folder left."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cvae_bench.backends import registry
from cvae_bench.cli import main
from cvae_bench.core.checks import cuda_device_count
from cvae_bench.core.errors import USAGE_EXIT
from cvae_bench.sweep.config import SweepFileError, read_sweep_file

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
no_cuda = pytest.mark.skipif(cuda_device_count() > 0, reason="this machine has a CUDA device")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder and home, so that anything a refused command writes would show."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home" / ".cache"))
    return work


def refused(args: list[str], workdir: Path) -> str:
    """Run the CLI in-process; assert exit 2, one `error:` line on stderr, nothing on stdout, nothing written."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == USAGE_EXIT, (result.exit_code, result.output, result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and not result.stdout.strip(), result.output
    assert list(workdir.iterdir()) == [], "a refused command left files behind"
    assert not (workdir.parent / "home" / ".cache" / "cvae-bench").exists(), "a refused command wrote a history"
    return lines[0]


#: Complete `export` and `evaluate` command lines but for what a case adds (a later option replaces an earlier).
EXPORT = ["export", "--backend", "torch", "--weights", "w.safetensors", "-o", "x.onnx"]
EVALUATE = ["evaluate", "--backend", "torch", "--weights", "w.safetensors"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["bench", "--precisions", "fp8"], "error: --precisions: 'fp8' is not one of fp32, fp16, int8"),
        (["bench", "--precisions", "fp32,fp64"], "error: --precisions: 'fp64' is not one of fp32, fp16, int8"),
        (["bench", "--batch-sizes", "1000000000"], "error: --batch-sizes: 1000000000 is above the maximum 65536"),
        (["bench", "--min-time", "inf"], "error: --min-time: 'inf' is not a finite number"),
        (["bench", "--groups", "train-stp"], "Did you mean 'train-step'?"),
        (["bench", "--device", "tpu"], "error: --device: 'tpu' is not a device"),
        (["run", "--backend", "torch", "--seed", "-1"], "error: --seed: -1 is not in the range 0<=x<=4294967295"),
        (["run", "--backend", "torch", "--seed", str(2**64)], "error: --seed: 18446744073709551616 is not in"),
        (["run", "--backend", "torch", "--target", "nan"], "error: --target: 'nan' is not a finite number"),
        (["run", "--backend", "torch", "--threads", "999"], "error: --threads: 999 threads is more than the"),
        (["run", "--backend", "pytorch"], "error: Unknown backend 'pytorch'. Did you mean 'torch'? Known: "),
        (["run", "--bogus"], "error: No such option '--bogus'"),
        (["bnech"], "error: No such command 'bnech'. Did you mean 'bench'? Commands: backends, bench, compare,"),
        (["compare"], "error: Missing argument 'BASE'."),
        (["sample", "--seed", "-3"], "error: --seed: -3 is not in the range"),
        (["export", "--backend", "torch", "--weights", "w", "-o", "x.onnx", "--precision", "fp64"], "--precision"),
        # Each command's typical mistakes are answered before a file is read or a worker started.
        ([*EXPORT, "--backend", "pytorch"], "error: Unknown backend 'pytorch'. Did you mean 'torch'? Known: "),
        ([*EXPORT, "--backend", "torch:eager"], "error: --backend: name one backend (NAME, no mode or list)"),
        ([*EXPORT, "--opset", "6"], "error: --opset: 6 is not in the range x>=7"),
        ([*EXPORT, "--val-subset", "20000"], "error: --val-subset: 20000 is more than MNIST's 10000 validation"),
        (["sample", "--onnx", "d.onnx", "--backend", "torch"], "error: give either --onnx FILE or --backend NAME"),
        (["sample", "--backend", "pytorch", "--weights", "w"], "error: Unknown backend 'pytorch'. Did you mean"),
        (["sample", "--backend", "torch", "--weights", "w", "--digit", "10"], "error: --digit: expected a class 0-9"),
        ([*EVALUATE, "--backend", "pytorch"], "error: Unknown backend 'pytorch'. Did you mean 'torch'? Known: "),
        ([*EVALUATE, "--val-subset", "10001"], "error: --val-subset: 10001 is more than MNIST's 10000 validation"),
        ([*EVALUATE, "--device", "tpu"], "error: --device: 'tpu' is not a device"),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, list) else None,
)
def test_refused_before_any_work(workdir: Path, args: list[str], says: str) -> None:
    assert says in refused(args, workdir)


@needs_torch
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["export", "--backend", "torch", "--weights", "{missing}", "-o", "x.onnx"], "error: --weights: no such file"),
        (
            ["export", "--backend", "Torch", "--weights", "{weights}", "-o", "{existing}"],
            "error: -o {existing} exists;",
        ),
        (["sample", "--onnx", "{missing}"], "error: --onnx: no such file"),
        (["sample", "--backend", "TORCH", "--weights", "{missing}"], "error: --weights: no such file"),
        (["evaluate", "--backend", "torch", "--weights", "{missing}"], "error: --weights: no such file"),
    ],
    ids=["export-weights", "export-o-exists", "sample-onnx", "sample-weights", "evaluate-weights"],
)
def test_a_missing_input_or_a_kept_output_fails_before_any_work(
    workdir: Path, tmp_path: Path, args: list[str], says: str
) -> None:
    """A file problem is exit 1 (docs/cli.md), still one line, found before any work: nothing is written."""
    inputs = tmp_path / "inputs"  # outside the working folder, which must stay empty
    inputs.mkdir()
    (inputs / "w.safetensors").write_bytes(b"not read: the -o check answers first")
    (inputs / "x.onnx").write_text("kept")
    names = {"missing": inputs / "missing", "weights": inputs / "w.safetensors", "existing": inputs / "x.onnx"}
    result = CliRunner().invoke(main, [a.format(**names) for a in args])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 1 and len(lines) == 1, (result.exit_code, result.output)
    assert lines[0].startswith(says.format(**names)), lines[0]
    assert list(workdir.iterdir()) == [] and (inputs / "x.onnx").read_text() == "kept"
    assert sorted(p.name for p in inputs.iterdir()) == ["w.safetensors", "x.onnx"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["loadtest", "{missing}"], "error: MODEL: no such file '{missing}'"),
        (["web", "{missing}"], "error: {missing}: expected an ONNX decoder file"),
        (["report", "{missing}"], "error: PATHS: no such file or folder '{missing}'"),
        (["compare", "{missing}", "{missing}"], "error: BASE: no such file or folder '{missing}'"),
        (["bench", "--runs", "{missing}"], "error: --runs: no such file or folder '{missing}'"),
        (["run", "--resume", "{missing}"], "error: --resume: no such file or folder '{missing}'"),
        (["sweep", "{missing}"], "error: SWEEP_FILE: no such file '{missing}'"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_a_missing_input_is_a_file_problem_in_every_command(
    workdir: Path, tmp_path: Path, args: list[str], says: str
) -> None:
    """Whether an input is an option or an argument, a path that is not there is exit 1 (docs/cli.md), one line,
    before any work."""
    missing = str(tmp_path / "missing")
    result = CliRunner().invoke(main, [a.format(missing=missing) for a in args])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 1 and len(lines) == 1, (result.exit_code, result.output)
    assert lines[0].startswith(says.format(missing=missing)), lines[0]
    assert list(workdir.iterdir()) == []


def test_the_records_declarations_drive_the_options() -> None:
    """export's, sample's and evaluate's options are generated from their records: flags, aliases, defaults,
    bounds and choices as declared (the help shows them, the parser holds values to them)."""
    from cvae_bench.cli.options import declared_names
    from cvae_bench.core.options import declared_options
    from cvae_bench.data.evaluate_command import EvaluateCommand
    from cvae_bench.onnx.options import MIN_OPSET, ExportCommand, SampleCommand

    for name, record in (("export", ExportCommand), ("sample", SampleCommand), ("evaluate", EvaluateCommand)):
        command = _command(name)
        assert [p.name for p in command.params if p.name != "help"] == declared_names(record)
        by_name = {p.name: p for p in command.params}
        for o in declared_options(record):
            param = by_name[o.name]
            assert isinstance(param, click.Option)
            assert {o.spec.flag, *o.spec.aliases} <= set(param.opts) and param.help == o.spec.help
            assert param.required == o.spec.required and (o.spec.required or param.default == o.default)
    export = _command("export")
    text = export.get_help(click.Context(export, info_name="export"))
    assert f"[default: {ExportCommand.opset}; x>={MIN_OPSET}]" in " ".join(text.split())
    base = ["--backend", "torch", "--weights", "w", "-o", "x.onnx"]
    # The spellings and case the record accepts reach it as declared: parsed only, never run.
    parsed = export.make_context("export", [*base, "--precisions", "FP16", "--opset", str(MIN_OPSET)]).params
    assert parsed["precision"] == "fp16" and parsed["opset"] == MIN_OPSET and parsed["out"] == "x.onnx"
    assert ExportCommand(**parsed).opset == MIN_OPSET
    with pytest.raises(click.BadParameter, match=f"x>={MIN_OPSET}"):
        export.make_context("export", [*base, "--opset", str(MIN_OPSET - 1)])
    sample = _command("sample")
    assert sample.make_context("sample", ["--provider", "CPUExecutionProvider"]).params["providers"] == (
        "CPUExecutionProvider"
    )
    with pytest.raises(TypeError):  # a required option is a required field: no record without it
        ExportCommand(backend="torch", weights="w")


def test_the_records_hold_python_callers_to_the_same_rules(tmp_path: Path) -> None:
    """`check` refuses what click would, for a record built in Python, and reads names as the CLI does."""
    from cvae_bench.core.errors import UsageError
    from cvae_bench.data.evaluate_command import EvaluateCommand
    from cvae_bench.onnx.options import ExportCommand, SampleCommand

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    export = ExportCommand(backend="torch", weights=str(weights), out=str(tmp_path / "x.onnx"))
    for change, says in (
        ({"precision": "fp64"}, "--precision: 'fp64' is not one of fp32, fp16, int8."),
        ({"part": "decoer"}, "--part: 'decoer' is not one of decoder, encoder. Did you mean 'decoder'?"),
        ({"opset": 6}, "--opset: 6 is below the minimum 7"),
        ({"idle_timeout": 0.0}, "--worker-timeout: 0 is below the minimum 1"),
        ({"device": "tpu"}, "--device: 'tpu' is not a device"),
    ):
        with pytest.raises(UsageError, match=re.escape(says)):
            replace(export, **change).check()
    with pytest.raises(UsageError, match=re.escape("--seed: 4294967296 is above the maximum 4294967295")):
        SampleCommand(onnx="d.onnx", seed=2**32).check()
    with pytest.raises(UsageError, match=re.escape("--val-subset: 0 is below the minimum 1")):
        EvaluateCommand(backend="torch", weights=str(weights), val_subset=0).check()
    if registry.get("torch").available:
        checked = replace(export, backend="Torch", precision="FP16", part="Encoder", device="CPU").check()
        assert (checked.backend, checked.precision, checked.part, checked.device) == ("torch", "fp16", "encoder", "cpu")
    assert not (tmp_path / "x.onnx").exists()


def test_the_records_are_light() -> None:
    """The command line imports the records at start-up: they import neither onnx nor numpy."""
    code = (
        "import sys, cvae_bench.onnx.options, cvae_bench.data.evaluate_command, cvae_bench.cli; "
        "print(sorted(m for m in ('numpy', 'onnx', 'onnxruntime', 'safetensors') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--scenario", "bogus"], "error: --scenarios: 'bogus' is not one of single-stream, server, offline."),
        (["--offline-batches", "0"], "error: --offline-batches: 0 is below the minimum 1"),
        (["--offline-batches", "1000000000000"], "error: --offline-batches: 1000000000000 is above the maximum 65536"),
        (["--devices", "tpu"], "error: --devices: 'tpu' is not one of cpu, cuda."),
        (["--precision", "fp8"], "error: --precisions: 'fp8' is not one of fp32, fp16, int8."),
        (["--serving", "2y1"], "error: --serving: expected SESSIONSxTHREADS items such as 1x2,2x1; received '2y1'"),
        (["--scheduler", "mlperf"], "error: --scheduler: 'mlperf' is not one of 'auto', 'loadgen', 'builtin'."),
        (["--latency-bound", "nan"], "error: --latency-bound: 'nan' is not a finite number"),
        (["--min-queries", "0"], "error: --min-queries: 0 is not in the range x>=1."),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, list) else None,
)
def test_loadtest_refuses_before_any_work(workdir: Path, tmp_path: Path, args: list[str], says: str) -> None:
    """Each mistake exits 2 with one line, and the default output folder (./loadtest) is never made."""
    model = tmp_path / "decoder.onnx"
    model.write_bytes(b"not read: the options are refused first")
    assert refused(["loadtest", str(model), *args], workdir).startswith(says)


@needs_torch
def test_a_mode_the_backend_lacks_leaves_no_plan(workdir: Path) -> None:
    line = refused(["run", "--backend", "torch:jit", "--epochs", "1"], workdir)
    assert line == "error: backend 'torch' has no mode 'jit'; choose one of eager, compiled or all."
    assert refused(["run", "--backend", "torch", "--mode", "jit"], workdir) == line


@needs_torch
def test_a_knob_beyond_the_cores_is_refused(workdir: Path) -> None:
    line = refused(["bench", "--backend", "torch:eager+threads=99"], workdir)
    assert line.startswith("error: --backend torch:eager+threads=99: knob 'threads': 99 threads is more than")


@needs_torch
@no_cuda
@pytest.mark.parametrize("command", ["bench", "run"])
@pytest.mark.parametrize("device", ["cuda", "GPU", "cuda:1"])
def test_a_missing_cuda_device_is_found_before_any_work(workdir: Path, command: str, device: str) -> None:
    args = [command, "--device", device] + (["--backend", "torch"] if command == "run" else [])
    line = refused(args, workdir)
    assert "the driver shows no CUDA device on this machine; use cpu" in line


@needs_torch
def test_backend_names_are_case_insensitive() -> None:
    assert registry.get("Torch").name == registry.get("TORCH").name == "torch"


def test_click_errors_and_ours_share_one_style(workdir: Path) -> None:
    """A bad value that click checks reads like one our own checks refuse: `error: --opt: what is wrong`."""
    ours = refused(["run", "--backend", "torch", "--threads", "999"], workdir)
    clicks = refused(["bench", "--epochs", "0"], workdir)
    assert ours.startswith("error: --threads: ") and clicks.startswith("error: --epochs: ")
    assert isinstance(click.UsageError("x"), click.ClickException)


# -- the sweep file is held to the rules of the commands it runs -------------------------------------------------
SWEEP = '[sweep]\nbackends = ["torch"]\n'


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (SWEEP + "[run]\ntarget = nan\n", "[run] target: expected a finite number"),
        (SWEEP + "[run]\ntarget = inf\n", "[run] target: expected a finite number"),
        (SWEEP + "[bench]\nmin_time = inf\n", "[bench] min_time: expected a finite number >= 0 and <= 60"),
        (SWEEP + "[bench]\nmin_time = nan\n", "[bench] min_time: expected a finite number"),
        (SWEEP + "threads = [999]\n[run]\n", "[sweep] threads: 999 threads is more than the"),
        (SWEEP + "[run]\ntrain_subset = 1000000000\n", "[run] train_subset: 1000000000 is more than MNIST's"),
        (SWEEP + "[run]\nval_subset = 10001\n", "[run] val_subset: 10001 is more than MNIST's 10000"),
        (SWEEP + "[bench]\nbatch_sizes = [1000000000]\n", "[bench] batch_sizes: expected a list of an integer from 1"),
        ('[sweep]\nbackends = ["torch:jit"]\n[run]\n', "[sweep] backends: backend 'torch' has no mode 'jit'"),
        ('[sweep]\nname = "x/../../../../../escaped-sweep"\nbackends = ["torch"]\n[run]\n', "[sweep] name: expected a"),
        ('[sweep]\nname = ".."\nbackends = ["torch"]\n[run]\n', "[sweep] name: expected a"),
        (SWEEP + "seeds = [-1]\n[run]\n", "[sweep] seeds: expected a list of an integer from 0 to 4294967295"),
        (
            SWEEP + "seeds = " + str(list(range(1000))) + "\nrepeats = 1000\n[run]\n",
            "the grid has 1000000 cells, more than the 10000 a sweep may hold",
        ),
    ],
    ids=[
        "target-nan",
        "target-inf",
        "min-time-inf",
        "min-time-nan",
        "threads",
        "train-subset",
        "val-subset",
        "batch-size",
        "mode",
        "name-escapes",
        "name-dots",
        "seed",
        "grid",
    ],
)
def test_sweep_files_are_held_to_the_commands_rules(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    with pytest.raises(SweepFileError) as info:
        read_sweep_file(path)
    assert says in str(info.value) and str(info.value).startswith(str(path))


def test_sweep_dry_run_refuses_a_bad_cell_in_one_line(workdir: Path, tmp_path: Path) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP + "[bench]\nmin_time = inf\n")
    line = refused(["sweep", str(path), "--dry-run"], workdir)
    assert line.startswith(f"error: {path}:4: [bench] min_time: ")


# -- the same surface everywhere ----------------------------------------------------------------------------------
def _command(name: str) -> click.Command:
    """The command `name` of `cvae-bench` (its module imported, as when it runs)."""
    command = main.get_command(click.Context(main), name)
    assert command is not None, name
    return command


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out: list[tuple[tuple[str, ...], click.Command]] = []
    for name in group.list_commands(click.Context(group)):
        command = group.get_command(click.Context(group), name)
        assert command is not None
        if isinstance(command, click.Group):
            out += _commands(command, (*path, name))
        else:
            out.append(((*path, name), command))
    return out


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{' '.join(path)} {param.opts[0]}"
        for path, command in _commands(main)
        for param in command.params
        if isinstance(param, click.Option) and not param.help and param.name != "help"
    ]
    assert missing == []


def test_every_output_option_is_o_out() -> None:
    """Whatever a command writes (a file or a folder) is named by `-o/--out`."""
    for path, command in _commands(main):
        for param in command.params:
            if isinstance(param, click.Option) and "--out" in param.opts:
                assert "-o" in param.opts, f"{' '.join(path)}: --out without -o"


def test_singular_and_plural_spellings_are_both_accepted() -> None:
    for path, command in _commands(main):
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            for one, many in (("--device", "--devices"), ("--precision", "--precisions")):
                if one in param.opts or many in param.opts:
                    assert one in param.opts and many in param.opts, f"{' '.join(path)} {param.opts}"


def test_bench_options_are_declared_once() -> None:
    """The command line, the sweep file's [bench] table and bench.json's options all come from BenchOptions."""
    from dataclasses import fields

    from cvae_bench.bench.options import BenchOptions
    from cvae_bench.core.options import declared_options
    from cvae_bench.sweep.config import BENCH_DEFAULTS, SCHEMA

    bench = _command("bench")
    by_name = {p.name: p for p in bench.params}
    defaults = {f.name: f.default for f in fields(BenchOptions)}
    for o in declared_options(BenchOptions):
        param = by_name[o.name]
        assert o.spec.flag in param.opts
        assert param.help and o.spec.help in param.help
        if o.spec.sweep:
            assert o.name in SCHEMA["bench"]
            assert BENCH_DEFAULTS[o.name] == (list(o.default) if isinstance(o.default, tuple) else o.default)
        assert defaults[o.name] == o.default
    # What bench.json records is the record itself, so a declared option is recorded under its field name.
    recorded = BenchOptions().to_dict()
    assert all(o.name in recorded for o in declared_options(BenchOptions))


@pytest.mark.parametrize("command", ["loadtest", "sweep"])
def test_loadtest_and_sweep_options_are_declared_once(command: str) -> None:
    """Each option of loadtest and sweep is a declared field of its record: its flags, help and default."""
    from cvae_bench.core.options import declared_options
    from cvae_bench.serving.options import LoadtestCommand
    from cvae_bench.sweep.options import SweepCommand

    record = {"loadtest": LoadtestCommand, "sweep": SweepCommand}[command]
    by_name = {p.name: p for p in _command(command).params}
    declared = list(declared_options(record))
    for o in declared:
        param = by_name[o.name]
        assert set(param.opts) == {o.spec.flag, *o.spec.aliases}
        assert param.help and param.help.startswith(o.spec.help)
        assert param.default == (",".join(map(str, o.default)) if o.is_list else o.default)
    # Besides the record's fields, only the argument and what shows the work (--quiet) are the command's own.
    assert set(by_name) - {o.name for o in declared} <= {"model", "sweep_file", "quiet"}


@needs_torch
def test_registry_modes_are_the_classes_modes() -> None:
    """The modes a registry entry restates (checked without a framework) are those its class declares."""
    # Each class is loaded in a process of its own: importing jax here would make every later fork in this
    # test process (workers started with a pre-exec hook) warn that JAX is multithreaded.
    for info in registry.all_backends().values():
        if info.origin != "builtin" or not info.available:
            continue
        code = (
            "import sys; from cvae_bench.backends import registry; "
            "print(','.join(registry.get(sys.argv[1]).load_class().capabilities.modes))"
        )
        env = {**os.environ, **info.env}
        proc = subprocess.run([sys.executable, "-c", code, info.name], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        assert info.modes == tuple(proc.stdout.strip().split(",")), info.name
