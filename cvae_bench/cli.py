"""The `cvae-bench` command line: parse, call the harness, print. No framework is imported here."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cvae_bench import __version__
from cvae_bench.bench.options import BenchCommand, BenchOptions, CompareCommand
from cvae_bench.cli_click import ExistingPath, click_options, declared_names
from cvae_bench.cli_output import json_document, show_blocks, show_table
from cvae_bench.core.errors import USAGE_EXIT, CvaeBenchError, UsageError
from cvae_bench.core.events import (
    Diverged,
    Evaluated,
    Event,
    Measured,
    Message,
    Stage,
    TrainProgress,
    TrainStart,
)
from cvae_bench.data.evaluate_command import EvaluateCommand
from cvae_bench.data.specs import DataChoice
from cvae_bench.onnx.options import ExportCommand, SampleCommand
from cvae_bench.report.options import ReportCommand
from cvae_bench.runtime import signals
from cvae_bench.serving.options import LoadtestCommand, WebCommand
from cvae_bench.sweep.options import SweepCommand
from cvae_bench.training.command import RunCommand

F = TypeVar("F", bound=Callable[..., Any])

# Lines are never hard-wrapped (soft_wrap): a terminal wraps them itself, and a log file keeps each figure whole.
err_console = Console(stderr=True, soft_wrap=True)
out_console = Console(soft_wrap=True)


class _Group(click.Group):
    """Turns our errors into one line on stderr and a non-zero exit, never a traceback.

    SIGTERM behaves like SIGINT (`runtime.signals`): the command unwinds (each worker it holds is killed on
    the way, since a worker mid-job would not hear a polite exit), one `error:` line, exit 128 + the signal
    (143, 130); the first signal decides, from the first moment (parsing included) to the last.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's own usage errors (a bad value, an unknown option, a missing argument) as one `error:` line
        and exit `USAGE_EXIT`, the style and status of every refusal made before work starts."""
        # Again, for a caller that did not come through `cvae_bench.entry` (a test's CliRunner gets its own
        # handlers back at the end; for `cvae-bench` itself, the entry point's stay, unchanged).
        previous = signals.install()
        try:
            return self._main(args, prog_name, complete_var, standalone_mode, **extra)
        finally:
            signals.restore(previous)

    def _main(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        standalone_mode: bool,
        **extra: Any,
    ) -> Any:
        try:
            # Never standalone: click's own way out turns a signal into "Aborted!" and exit 1.
            value = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except (KeyboardInterrupt, signals.Terminated) as exc:
            signals.stop(exc)
        except click.exceptions.Abort as exc:  # a signal during parsing, or Ctrl-C at a prompt
            signals.stop(exc.__cause__)
        except click.UsageError as exc:
            click.echo(f"error: {_usage_message(exc)}", err=True)
            sys.exit(USAGE_EXIT)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            # The reader went away (`| head`): nothing more to say; quiet the flush at exit, as click does.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        if not standalone_mode:
            return value
        sys.exit(value if isinstance(value, int) else 0)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except (KeyboardInterrupt, signals.Terminated) as exc:
            signals.stop(exc)  # before click echoes a blank line for it

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CvaeBenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(USAGE_EXIT if isinstance(exc, UsageError) else 1)
        except (KeyboardInterrupt, signals.Terminated) as exc:
            signals.stop(exc)


def _usage_message(exc: click.UsageError) -> str:
    """One line: `--opt: what is wrong` for a bad value (as our own checks say it), click's sentence otherwise."""
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        param = exc.param
        given = exc.param_hint
        hint = (
            (given if isinstance(given, str) else " / ".join(given))
            if given
            else param.opts[0]
            if isinstance(param, click.Option)
            else param.human_readable_name
            if param
            else None
        )
        message = f"{hint.strip(chr(39))}: {exc.message}" if hint else exc.message
    else:
        message = exc.format_message()
    command = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
    return " ".join(message.split()) + command


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="cvae-bench")
def main() -> None:
    """Benchmark the Keras tutorial's Conditional VAE across frameworks, at matched quality."""


# -- backends -------------------------------------------------------------------------------------------
_json_opt = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document (its `schema` field names the command and version; docs/cli.md) instead.",
)


@main.command()
@_json_opt
def backends(as_json: bool) -> None:
    """List registered backends: availability, framework versions, devices, modes, origin."""
    from cvae_bench.backends import registry
    from cvae_bench.cli_output import json_document, show_table

    infos = list(registry.all_backends().values())
    if as_json:
        entries = [
            {
                "name": info.name,
                "available": info.available,
                "versions": info.versions(),
                "devices": list(info.devices),
                "modes": list(info.modes),
                "origin": info.origin,
                "description": info.description,
                "unavailable_reason": info.unavailable_reason() or None,
            }
            for info in infos
        ]
        click.echo(json_document("backends", {"backends": entries}))
        return
    rows = [
        [
            info.name,
            "yes" if info.available else "no",
            ", ".join(f"{k} {v}" for k, v in info.versions().items()),
            ", ".join(info.devices),
            ", ".join(info.modes),
            info.origin,
            info.unavailable_reason() or info.description,
        ]
        for info in infos
    ]
    headers = ("name", "available", "framework", "devices", "modes", "origin", "notes")
    show_table("cvae-bench backends", headers, rows)


# -- data -----------------------------------------------------------------------------------------------
@main.group()
def data() -> None:
    """Obtain and inspect the data sets (checksummed)."""


@data.command("fetch")
@click_options(DataChoice)
def data_fetch(**declared: Any) -> None:
    """Find or download the data set, verify it and cache it."""
    from cvae_bench.data.loading import load_dataset

    choice = DataChoice(**declared)
    ds = load_dataset(choice.dataset, choice.data_path, progress=ConsoleReporter().progress)
    click.echo(
        f"{ds.name}: {len(ds.x_train)} train + {len(ds.x_test)} test images, checksums OK, from {ds.source} ({ds.path})"
    )


@data.command("info")
@click_options(DataChoice)
def data_info(**declared: Any) -> None:
    """Show where the data set comes from, its shapes and whether its checksums verify (no download)."""
    from cvae_bench.data.loading import dataset_info

    choice = DataChoice(**declared)
    info = dataset_info(choice.dataset, choice.data_path)
    for key, value in info.to_json().items():
        click.echo(f"{key:>12}: {value}")


# -- run ------------------------------------------------------------------------------------------------
def _after_work_options(function: F) -> F:
    """What run and bench do with their results folder once the work is done: its report, the history."""
    for decorate in reversed(
        (
            click.option("--no-report", is_flag=True, help="Do not write report.html into the results folder."),
            click.option(
                "--history",
                "history_dir",
                type=click.Path(file_okay=False),
                default=None,
                help="The history store the results are appended to (see `cvae-bench report --history`) "
                "[$CVAE_BENCH_HISTORY, else ~/.cache/cvae-bench/history].",
            ),
            click.option("--no-history", is_flag=True, help="Do not append the results to any history store."),
        )
    ):
        function = decorate(function)
    return function


class _RunDisplay:
    """One training run's `Reporter` on the console while it trains: a rich progress bar (none with `quiet`)
    and a line per evaluation; entered before the run and left after it (`ConsoleReporter.run`)."""

    def __init__(self, label: str, quiet: bool) -> None:
        self.label, self.quiet = label, quiet
        self.progress = Progress(
            TextColumn("[bold]{task.fields[label]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:>8}  {task.fields[rate]:>9} steps/s"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=quiet,
        )
        self.task: Any = None

    def __enter__(self) -> _RunDisplay:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def report(self, event: Event) -> None:
        """Show one training event: the bar's start and progress, a line per evaluation, a divergence."""
        if isinstance(event, TrainStart):
            self.task = self.progress.add_task("train", total=event.total_steps, label=self.label, loss="-", rate="-")
        elif isinstance(event, TrainProgress) and self.task is not None:
            self.progress.update(
                self.task, completed=event.step, loss=f"{event.loss:.2f}", rate=f"{event.steps_per_s:.0f}"
            )
        elif isinstance(event, Evaluated) and not self.quiet:
            self.progress.console.print(
                f"{self.label}  epoch {event.epoch:6.2f}  step {event.step:>6}  "
                f"val -ELBO {event.val_elbo:8.3f}  (KL {event.kl:.3f}, NLL {event.nll:.3f})  "
                f"train {event.train_time_s:.1f} s"
            )
        elif isinstance(event, Diverged) and not self.quiet:
            self.progress.console.print(
                f"{self.label}  diverged at step {event.step}: {escape(event.what)} = {escape(event.value)}"
            )


class ConsoleReporter:
    """The console's `RunReporter`: stages and measurements and progress on stderr (none with `quiet`), result
    lines on stdout (stderr with `to_stderr`, when stdout holds a JSON document), warnings on stderr, and a
    progress bar per training run (`run`)."""

    def __init__(self, quiet: bool = False, to_stderr: bool = False) -> None:
        self.quiet, self.to_stderr = quiet, to_stderr

    def report(self, event: Event) -> None:
        """Show one event where it belongs."""
        if isinstance(event, Message):
            if event.level == "info":
                click.echo(event.text, err=self.to_stderr)
            elif event.level == "warning":
                click.echo(event.text, err=True)
            elif not self.quiet:
                err_console.print(f"[dim]{escape(event.text)}[/dim]")
        elif self.quiet:
            return
        elif isinstance(event, Stage):
            err_console.print(f"[bold]bench[/bold] {escape(event.what)}")
        elif isinstance(event, Measured):
            err_console.print(f"[dim]  {escape(event.what)}: {event.median_s * 1e3:.3f} ms median[/dim]")

    def run(self, label: str) -> _RunDisplay:
        """The progress display of one training run, `label`, while it trains."""
        return _RunDisplay(label, self.quiet)

    def progress(self, text: str) -> None:
        """A progress line, for the commands whose work reports plain lines (data, export, loadtest)."""
        self.report(Message(text, "progress"))


@main.command()
@click_options(RunCommand)
@click.option("--quiet", is_flag=True, help="No progress, only the summary.")
@_after_work_options
@_json_opt
def run(
    quiet: bool,
    no_report: bool,
    history_dir: str | None,
    no_history: bool,
    as_json: bool,
    **declared: Any,
) -> None:
    """Train backends until the shared evaluator reports val -ELBO <= --target, and compare them."""
    from cvae_bench.onnx import commands as onnx_commands
    from cvae_bench.training.command import run_command
    from cvae_bench.training.compare import HEADERS, table_rows

    # The declared options arrive under their field names: the record is built from them as they are.
    cmd = RunCommand(
        command="cvae-bench " + " ".join(sys.argv[1:]),
        **declared,
    )
    # With --json, stdout holds the one document: the result lines go to stderr.
    done = run_command(
        cmd,
        ConsoleReporter(quiet, to_stderr=as_json),
        exporter=onnx_commands if cmd.export_onnx else None,
    )
    outcome = done.matched
    folder = outcome.folder
    if as_json:
        rows = [dict(zip(HEADERS, cells, strict=True)) for cells in table_rows(outcome.rows)]
        body = {
            "folder": str(folder),
            "results": [r.to_json() for r in outcome.results],  # each run's result.json
            "comparison": rows,  # comparison.json's table, when several runs were made
            "failures": outcome.failures,
        }
        click.echo(json_document("run", body))
    elif outcome.rows:
        show_table(done.title, HEADERS, table_rows(outcome.rows))
        click.echo(f"comparison written to {folder / 'comparison.md'} and comparison.json")
    if outcome.results:
        _report_and_history(folder, no_report, _history(history_dir, no_history))
    if outcome.failures:
        raise CvaeBenchError(f"{len(outcome.failures)} run(s) failed; see the lines above")


def _history(history_dir: str | None, no_history: bool) -> Path | None:
    """The history store results go to: `--history`, else the default store; None with `--no-history`."""
    from cvae_bench.report.history import history_store

    return history_store(history_dir, no_history)


def _report_and_history(folder: Path, no_report: bool, history: Path | None, result: Path | None = None) -> None:
    """report.html into `folder` and the history entry of `result` (default: the folder), said on stderr."""
    from cvae_bench.report.api import publish_results

    publish_results(folder, ConsoleReporter(to_stderr=True), report=not no_report, history=history, result=result)


@main.command()
@click_options(EvaluateCommand)
def evaluate(**declared: Any) -> None:
    """Score a weights file with the shared evaluator (val -ELBO, KL, NLL)."""
    from cvae_bench.data.evaluate_command import evaluate_command

    # The declared options arrive under their field names: the record is built from them as they are.
    outcome = evaluate_command(EvaluateCommand(**declared), ConsoleReporter())
    click.echo(outcome.line())


# -- bench ----------------------------------------------------------------------------------------------
def _bench_groups(text: str | None) -> tuple[str, ...]:
    """The groups named in `--groups`, or those that declare themselves default (the registry says which)."""
    if text is None:
        from cvae_bench.bench.groups import DEFAULT_GROUPS

        return DEFAULT_GROUPS
    return tuple(g.strip() for g in text.split(",") if g.strip())


@main.command()
@click.option(
    "--groups",
    default=None,
    help="Comma-separated benchmark groups: train-step, sample-native, sample-onnxruntime, sample-onnxruntime-web, "
    "anatomy [the groups that declare themselves default: the first three].",
)
@click_options(BenchCommand)
@click_options(BenchOptions)
@_after_work_options
@click.option(
    "--anatomy",
    is_flag=True,
    help="Also profile each backend's step and decoder (and onnxruntime's) by category: the anatomy groups.",
)
@click.option("--quiet", is_flag=True, help="No progress lines.")
@_json_opt
def bench(
    groups: str | None,
    no_report: bool,
    history_dir: str | None,
    no_history: bool,
    anatomy: bool,
    quiet: bool,
    as_json: bool,
    **declared: Any,
) -> None:
    """Benchmark training steps and sampling in interleaved rounds, with verdicts, roofline and fairness audit."""
    from cvae_bench.bench.api import run_bench_command

    # The declared options arrive under their field names: each record is built from its own.
    options = BenchOptions(
        groups=_bench_groups(groups) + (("anatomy",) if anatomy else ()),
        **{name: declared.pop(name) for name in declared_names(BenchOptions)},
    )
    command = BenchCommand(options=options, command="cvae-bench " + " ".join(sys.argv[1:]), **declared)

    outcome = run_bench_command(command, ConsoleReporter(quiet))
    if as_json:
        tables = [
            {"title": t.title, "headers": list(t.headers), "rows": [list(r) for r in t.rows]} for t in outcome.tables
        ]
        body = {
            "results": str(outcome.json_path),
            "markdown": str(outcome.md_path),
            "tables": tables,
            "fairness": {process: dict(audit) for process, audit in outcome.fairness},
            "load": outcome.load,
            "noise": outcome.noise,
            "aa_failed": outcome.aa_failed,
            "calibration": outcome.calibration,
        }
        click.echo(json_document("bench", body))
        _report_and_history(outcome.json_path.parent, no_report, _history(history_dir, no_history), outcome.json_path)
        return
    for shown in outcome.tables:
        if not shown.rows and not shown.show_empty:
            continue
        show_table(shown.title, shown.headers, shown.rows)
    show_blocks("fairness audit", outcome.fairness)  # one block per process: too many columns for one table
    click.echo(outcome.load)
    for line in outcome.noise:
        click.echo(line)
    if outcome.aa_failed:
        click.echo("warning: the A/A self-check failed; read every verdict above with suspicion", err=True)
    for line in outcome.calibration or []:
        click.echo(line)
    click.echo(f"results written to {outcome.json_path} and {outcome.md_path}")
    _report_and_history(outcome.json_path.parent, no_report, _history(history_dir, no_history), outcome.json_path)


# -- export, sample ---------------------------------------------------------------------------------------
@main.command()
@click_options(ExportCommand)
def export(**declared: Any) -> None:
    """Export a decoder (or encoder) to ONNX with the one interface, verified against the framework."""
    from cvae_bench.onnx.commands import export_command

    # The declared options arrive under their field names: the record is built from them as they are.
    for line in export_command(ExportCommand(**declared), ConsoleReporter()):
        click.echo(line)


@main.command()
@click_options(SampleCommand)
def sample(**declared: Any) -> None:
    """Draw a decoder: prior samples per digit, one z across labels 1-9, the latent manifold (PNGs)."""
    from cvae_bench.onnx.commands import sample_command

    for path in sample_command(SampleCommand(**declared)):
        click.echo(path)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click_options(LoadtestCommand)
@click.option("--quiet", is_flag=True, help="No progress lines.")
def loadtest(model: str, quiet: bool, **declared: Any) -> None:
    """Measure an ONNX decoder under MLPerf's single-stream, server and offline scenarios."""
    from cvae_bench.serving.loadtest import loadtest_command

    # The declared options arrive under their field names: the record is built from them as they are.
    paths = loadtest_command(LoadtestCommand(model=model, **declared), ConsoleReporter(quiet))
    for path in paths:
        click.echo(path)


# -- sweep ----------------------------------------------------------------------------------------------
@main.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click_options(SweepCommand)
def sweep(sweep_file: str, **declared: Any) -> None:
    """Run every cell of a sweep file (run/bench × backends × devices × threads × seeds × repeats) not yet done."""
    from cvae_bench.sweep.api import sweep_command

    # The declared options arrive under their field names: the record is built from them as they are.
    outcome = sweep_command(SweepCommand(path=sweep_file, **declared), ConsoleReporter())
    if outcome.summary_md is not None:
        click.echo(f"summary written to {outcome.summary_md} and {outcome.summary_json}")
    if outcome.report is not None:
        click.echo(f"report written to {outcome.report}")
    if outcome.failed:
        raise CvaeBenchError(f"{len(outcome.failed)} cell(s) failed; see {outcome.summary_md}")


# -- report ---------------------------------------------------------------------------------------------
@main.command()
@click.argument("paths", nargs=-1, type=ExistingPath())
@click_options(ReportCommand)
def report(paths: tuple[str, ...], **declared: Any) -> None:
    """One self-contained HTML page from run folders, comparison.json, bench.json, decoder.onnx and history."""
    from cvae_bench.report.api import report_command

    command = "cvae-bench " + " ".join(sys.argv[1:])
    for line in report_command(ReportCommand(paths=paths, command=command, **declared)):
        click.echo(line)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click_options(WebCommand)
def web(model: str, **declared: Any) -> None:
    """Write a static page that runs the decoder in the browser (onnxruntime-web, WASM or WebGPU)."""
    from cvae_bench.serving.web import web_command

    cmd = WebCommand(model=model, **declared)
    click.echo(web_command(cmd))
    how = f"python -m cvae_bench.serving.browser {cmd.out}"
    err_console.print(f"[dim]serve it (COOP/COEP set, for WASM threads): {how}[/dim]")


# -- compare: the regression gate ------------------------------------------------------------------------
@main.command("compare")
@click.argument("base", type=ExistingPath())
@click.argument("new", type=ExistingPath())
@click_options(CompareCommand)
@_json_opt
@click.option(
    "--markdown",
    is_flag=True,
    help="Print the table and verdict as Markdown, ready to paste into a pull request comment.",
)
def compare(as_json: bool, markdown: bool, **declared: Any) -> None:
    """The regression gate: each entry's change from BASE to NEW with its 95 % CI and verdict.

    BASE and NEW: bench.json, pytest-benchmark JSON (or a .benchmarks folder), comparison.json, result.json, or
    folders of them. Exits 1 on a significant regression above --fail-above, or (with --fail-above-memory) on
    an entry whose peak resident memory grew by more than that.
    """
    from cvae_bench.bench.compare import GATE_HEADERS, compare_files, gate_rows, gate_summary
    from cvae_bench.bench.compare_memory import compare_memory, memory_summary, with_memory
    from cvae_bench.cli_output import json_document, show_table

    if as_json and markdown:
        raise UsageError("--json and --markdown: choose one")
    cmd = CompareCommand(**declared)
    base, new = cmd.base, cmd.new
    result = compare_files(base, new, tie=cmd.tie, fail_above=cmd.fail_above)
    memory = compare_memory(base, new, cmd.fail_above_memory)
    if as_json:
        body = {"base": base, "new": new, "failed": result.failed or memory.failed, "summary": gate_summary(result)}
        doc = {**body, **result.to_json(), "memory": memory.to_json(), "memory_summary": memory_summary(memory)}
        click.echo(json_document("compare", doc))
    else:
        headers, rows = with_memory(GATE_HEADERS, gate_rows(result), [c.name for c in result.changes], memory)
        title = f"{new} vs {base} (above 0: slower; tie within ±{cmd.tie:.0%})"
        show_table(title, headers, rows, markdown=True if markdown else None)
        bullet = "- " if markdown else ""
        for name in result.only_base:
            click.echo(f"{bullet}only in BASE: {name}")
        for name in result.only_new:
            click.echo(f"{bullet}only in NEW: {name}")
        click.echo(f"**{gate_summary(result)}**" if markdown else gate_summary(result))
        memory_line = memory_summary(memory)
        if memory_line is not None:
            click.echo(memory_line)
    if result.failed or memory.failed:
        sys.exit(1)
