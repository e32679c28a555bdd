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
from cvae_bench.bench.options import BenchCommand, BenchOptions
from cvae_bench.cli_click import FiniteFloat, click_options, declared_names, out_option
from cvae_bench.cli_output import json_document, show_table
from cvae_bench.core.defaults import (
    DEFAULT_IDLE_TIMEOUT,
    MAX_SEED,
    PRECISIONS,
)
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
from cvae_bench.data.specs import DATASETS, DEFAULT_DATASET
from cvae_bench.runtime import signals
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
#: bench's defaults, declared once in `BenchOptions`.
_BENCH_DEFAULTS = BenchOptions()

_dataset_opt = click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    default=DEFAULT_DATASET,
    show_default=True,
    help="Which data set.",
)
#: One declaration of each option that several commands share, so that its default and help are written once.
_worker_timeout_opt = click.option(
    "--worker-timeout",
    type=FiniteFloat(min=1),
    default=DEFAULT_IDLE_TIMEOUT,
    show_default=True,
    help="Seconds of silence after which a worker is declared hung (a worker speaks at least this often).",
)
_data_opt = click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Read the data set from this .npz file (else $CVAE_BENCH_DATA, caches, download).",
)


@main.group()
def data() -> None:
    """Obtain and inspect the data sets (checksummed)."""


@data.command("fetch")
@_dataset_opt
@_data_opt
def data_fetch(dataset: str, data_path: str | None) -> None:
    """Find or download the data set, verify it and cache it."""
    from cvae_bench.data.loading import load_dataset

    ds = load_dataset(dataset, data_path, progress=ConsoleReporter().progress)
    click.echo(
        f"{ds.name}: {len(ds.x_train)} train + {len(ds.x_test)} test images, checksums OK, from {ds.source} ({ds.path})"
    )


@data.command("info")
@_dataset_opt
@_data_opt
def data_info(dataset: str, data_path: str | None) -> None:
    """Show where the data set comes from, its shapes and whether its checksums verify (no download)."""
    from cvae_bench.data.loading import dataset_info

    info = dataset_info(dataset, data_path)
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


def _history(history_dir: str | None, no_history: bool) -> str | None:
    """The history store results go to: `--history`, else the default store; None with `--no-history`."""
    if no_history:
        return None
    from cvae_bench.report.history import default_history_dir

    return history_dir or str(default_history_dir())


def _report_and_history(folder: Path, no_report: bool, history_dir: str | None, result: Path | None = None) -> None:
    """report.html into `folder` (a warning, not a failure, when it cannot be made) and the history entry of
    `result` (default: the folder; none when `history_dir` is None)."""
    if not no_report:
        from cvae_bench.report.api import write_report
        from cvae_bench.report.inputs import ReportError

        try:
            click.echo(f"report written to {write_report(folder)}", err=True)
        except ReportError as exc:
            click.echo(f"warning: no report.html: {exc}", err=True)
    if history_dir is not None:
        from cvae_bench.report.history import append_history

        append_history(result or folder, Path(history_dir))
        click.echo(f"results appended to the history in {history_dir}", err=True)


@main.command()
@click.option("--backend", "backend_name", required=True, help="Backend that runs the networks.")
@click.option(
    "--weights", "weights_path", required=True, type=click.Path(dir_okay=False), help="Canonical weights to score."
)
@click.option(
    "--device",
    "--devices",
    "device",
    default="cpu",
    show_default=True,
    help="cpu, cuda or cuda:N (gpu reads as cuda), where the backend runs.",
)
@_dataset_opt
@_data_opt
@click.option("--val-subset", type=click.IntRange(min=1), default=None, help="Score on the first N validation images.")
def evaluate(
    backend_name: str,
    weights_path: str,
    device: str,
    dataset: str,
    data_path: str | None,
    val_subset: int | None,
) -> None:
    """Score a weights file with the shared evaluator (val -ELBO, KL, NLL)."""
    from cvae_bench.backends import registry
    from cvae_bench.core.checks import check_device
    from cvae_bench.data.specs import check_subsets

    device = check_device("--device", device)
    check_subsets(dataset, None, val_subset)
    from cvae_bench.data.evaluation import evaluate_weights

    ev = evaluate_weights(
        registry.get(backend_name),
        weights_path,
        device=device,
        dataset=dataset,
        data_path=data_path,
        val_subset=val_subset,
    )
    click.echo(f"{backend_name}: val -ELBO {ev.val_elbo:.4f}  (KL {ev.kl:.4f}, NLL {ev.nll:.4f})  [{weights_path}]")


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
    out_console.print("[bold]fairness audit[/bold]")
    for process, audit in outcome.fairness:  # one block per process: too many columns for one table
        out_console.print(f"  [bold]{process}[/bold]")
        for header, cell in audit:
            out_console.print(f"    {header}: {cell}", highlight=False)
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
@click.option("--backend", "backend_name", required=True, help="Backend whose exporter writes the file.")
@click.option("--weights", "weights_path", required=True, type=click.Path(dir_okay=False), help="Canonical weights.")
@out_option("out_path", folder=False, help="ONNX file to write.", required=True)
@click.option(
    "--part",
    type=click.Choice(["decoder", "encoder"]),
    default="decoder",
    show_default=True,
    help="Which network to export.",
)
@click.option(
    "--precision",
    "--precisions",
    "precision",
    type=click.Choice(PRECISIONS, case_sensitive=False),
    default="fp32",
    show_default=True,
    help="fp16: onnxconverter-common, float32 inputs/outputs kept; int8: onnxruntime dynamic quantisation.",
)
@click.option("--opset", type=click.IntRange(min=7), default=18, show_default=True, help="ONNX opset of the file.")
@click.option(
    "--device",
    "--devices",
    "device",
    default="cpu",
    show_default=True,
    help="Where the backend runs (the check's reference). cpu, cuda, cuda:N (gpu reads as cuda).",
)
@_dataset_opt
@_data_opt
@click.option("--val-subset", type=click.IntRange(min=1), default=None, help="Score on the first N validation images.")
@_worker_timeout_opt
@click.option("--force", is_flag=True, help="Replace an existing -o file.")
def export(
    backend_name: str,
    weights_path: str,
    out_path: str,
    part: str,
    precision: str,
    opset: int,
    device: str,
    dataset: str,
    data_path: str | None,
    val_subset: int | None,
    worker_timeout: float,
    force: bool,
) -> None:
    """Export a decoder (or encoder) to ONNX with the one interface, verified against the framework."""
    from cvae_bench.core.checks import check_device
    from cvae_bench.data.specs import check_subsets
    from cvae_bench.onnx.commands import export_command

    device = check_device("--device", device)
    check_subsets(dataset, None, val_subset)

    lines = export_command(
        backend_name,
        weights_path,
        out_path,
        part=part,
        precision=precision,
        opset=opset,
        device=device,
        dataset=dataset,
        data_path=data_path,
        val_subset=val_subset,
        idle_timeout=worker_timeout,
        force=force,
        progress=ConsoleReporter().progress,
    )
    for line in lines:
        click.echo(line)


@main.command()
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None, help="An exported decoder.")
@click.option(
    "--providers",
    default=None,
    help="Comma-separated onnxruntime providers, in order [CUDAExecutionProvider if present, CPUExecutionProvider].",
)
@click.option("--backend", "backend_name", default=None, help="Decode with this backend instead (needs --weights).")
@click.option("--weights", "weights_path", type=click.Path(dir_okay=False), default=None, help="Canonical weights.")
@click.option(
    "--device",
    "--devices",
    "device",
    default="cpu",
    show_default=True,
    help="Where --backend runs. cpu, cuda, cuda:N (gpu reads as cuda).",
)
@out_option("out_dir", folder=True, help="Folder for the PNGs.", default="samples")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Seed of the prior draws.")
@click.option("--digit", type=click.IntRange(min=0), default=0, show_default=True, help="Digit of the latent manifold.")
def sample(
    onnx_path: str | None,
    providers: str | None,
    backend_name: str | None,
    weights_path: str | None,
    device: str,
    out_dir: str,
    seed: int,
    digit: int,
) -> None:
    """Draw a decoder: prior samples per digit, one z across labels 1-9, the latent manifold (PNGs)."""
    from cvae_bench.core.checks import check_device
    from cvae_bench.onnx.commands import sample_command

    device = check_device("--device", device)

    paths = sample_command(
        onnx_path=onnx_path,
        providers=providers,
        backend=backend_name,
        weights=weights_path,
        device=device,
        out_dir=out_dir,
        seed=seed,
        digit=digit,
    )
    for path in paths:
        click.echo(path)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@out_option(
    "out_dir", folder=True, help="Folder for loadtest.json, loadtest.md and LoadGen's logs.", default="loadtest"
)
@click.option(
    "--precisions",
    "--precision",
    "precisions",
    default=",".join(PRECISIONS),
    show_default=True,
    help="Variants to measure (made from fp32).",
)
@click.option(
    "--devices",
    "--device",
    "devices",
    default="cpu,cuda",
    show_default=True,
    help="onnxruntime providers, where available (gpu reads as cuda).",
)
@click.option(
    "--serving", default=None, help="SESSIONSxTHREADS choices, e.g. 1x1,1x2,2x1 [default: 1x1,1xN,Nx1 for N cores]."
)
@click.option(
    "--latency-bound",
    "latency_bound_ms",
    type=FiniteFloat(min=1e-3),
    default=1.0,
    show_default=True,
    help="Server p99 bound, ms.",
)
@click.option(
    "--duration",
    "duration_s",
    type=FiniteFloat(min=0.01),
    default=0.5,
    show_default=True,
    help="Seconds per run at least.",
)
@click.option(
    "--min-queries", type=click.IntRange(min=1), default=1000, show_default=True, help="Queries per run at least."
)
@click.option(
    "--max-probes", type=click.IntRange(min=1), default=6, show_default=True, help="Server rates tried at most."
)
@click.option("--offline-batches", default="64,1024", show_default=True, help="Offline batch sizes.")
@click.option(
    "--scenario",
    "--scenarios",
    "scenarios",
    default="single-stream,server,offline",
    show_default=True,
    help="LoadGen's scenarios to run, comma-separated: single-stream, server, offline.",
)
@click.option(
    "--offline-queries",
    type=click.IntRange(min=1),
    default=16384,
    show_default=True,
    help="Samples in the offline scenario's one query.",
)
@click.option(
    "--scheduler",
    type=click.Choice(["auto", "loadgen", "builtin"]),
    default="auto",
    show_default=True,
    help="Who issues the queries: MLPerf LoadGen, the built-in scheduler, or LoadGen where it imports.",
)
@click.option("--quiet", is_flag=True, help="No progress lines.")
def loadtest(
    model: str,
    out_dir: str,
    precisions: str,
    devices: str,
    serving: str | None,
    latency_bound_ms: float,
    duration_s: float,
    min_queries: int,
    max_probes: int,
    offline_batches: str,
    offline_queries: int,
    scheduler: str,
    quiet: bool,
    scenarios: str,
) -> None:
    """Measure an ONNX decoder under MLPerf's single-stream, server and offline scenarios."""
    from cvae_bench.core.checks import check_int_list
    from cvae_bench.serving.loadtest import loadtest_command

    batches = check_int_list("--offline-batches", offline_batches, minimum=1)
    paths = loadtest_command(
        model,
        out_dir,
        precisions=precisions.split(","),
        devices=devices.split(","),
        serving=serving,
        latency_bound_ms=latency_bound_ms,
        duration_s=duration_s,
        min_queries=min_queries,
        max_probes=max_probes,
        offline_batches=batches,
        offline_queries=offline_queries,
        scheduler=scheduler,
        scenarios=scenarios.split(","),
        say=ConsoleReporter(quiet).progress,
    )
    for path in paths:
        click.echo(path)


# -- sweep ----------------------------------------------------------------------------------------------
@main.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="List the cells, whether each will run, and the resources it needs.")
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this machine, one cell at a time; ray: each cell a Ray task on a cluster.",
)
@click.option("--address", default=None, help="The Ray cluster (ray://HOST:10001 or HOST:6379) [$RAY_ADDRESS].")
@out_option("out_dir", folder=True, help="Results folder [the file's out].")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Times a failed cell is run again before it is recorded as failed.",
)
@click.option("--retry-failed", is_flag=True, help="Run again the cells an earlier sweep recorded as failed.")
@_worker_timeout_opt
def sweep(
    sweep_file: str,
    dry_run: bool,
    executor: str,
    address: str | None,
    out_dir: str | None,
    retries: int,
    retry_failed: bool,
    worker_timeout: float,
) -> None:
    """Run every cell of a sweep file (run/bench × backends × devices × threads × seeds × repeats) not yet done."""
    from cvae_bench.sweep.api import SweepCommand, sweep_command

    cmd = SweepCommand(
        path=sweep_file,
        executor=executor,
        address=address,
        out=out_dir,
        retries=retries,
        retry_failed=retry_failed,
        dry_run=dry_run,
        idle_timeout=worker_timeout,
    )
    outcome = sweep_command(cmd, say=click.echo)
    if outcome.summary_md is not None:
        click.echo(f"summary written to {outcome.summary_md} and {outcome.summary_json}")
    if outcome.report is not None:
        click.echo(f"report written to {outcome.report}")
    if outcome.failed:
        raise CvaeBenchError(f"{len(outcome.failed)} cell(s) failed; see {outcome.summary_md}")


# -- report ---------------------------------------------------------------------------------------------
@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@out_option("out_path", folder=False, help="The HTML page to write.", default="report.html")
@click.option(
    "--history",
    "history_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="A results history folder to draw as trends across commits (run/bench append to "
    "~/.cache/cvae-bench/history by default).",
)
@click.option("--append", is_flag=True, help="Add the result files of PATHS to --history first.")
@click.option("--force", is_flag=True, help="Replace an existing -o file (never one the report reads).")
def report(paths: tuple[str, ...], out_path: str, history_dir: str | None, append: bool, force: bool) -> None:
    """One self-contained HTML page from run folders, comparison.json, bench.json, decoder.onnx and history."""
    from cvae_bench.report.api import report_command

    command = "cvae-bench " + " ".join(sys.argv[1:])
    for line in report_command(paths, out_path, history=history_dir, append=append, command=command, force=force):
        click.echo(line)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@out_option("out_dir", folder=True, help="Folder for the static site.", default="site")
@click.option("--no-webgpu", is_flag=True, help="Ship the WASM build only (14 MB instead of 40 MB).")
def web(model: str, out_dir: str, no_webgpu: bool) -> None:
    """Write a static page that runs the decoder in the browser (onnxruntime-web, WASM or WebGPU)."""
    from cvae_bench.serving.web import write_site

    index = write_site(model, out_dir, webgpu=not no_webgpu)
    click.echo(index)
    how = f"python -m cvae_bench.serving.browser {out_dir}"
    err_console.print(f"[dim]serve it (COOP/COEP set, for WASM threads): {how}[/dim]")


# -- compare: the regression gate ------------------------------------------------------------------------
@main.command("compare")
@click.argument("base", type=click.Path(exists=True))
@click.argument("new", type=click.Path(exists=True))
@click.option(
    "--fail-above",
    type=FiniteFloat(min=0),
    default=0.05,
    show_default=True,
    help="Exit 1 when an entry is significantly slower by more than this (0.05: 5 %).",
)
@click.option(
    "--tie",
    type=FiniteFloat(min=0, max=0.5),
    default=_BENCH_DEFAULTS.tie,
    show_default=True,
    help="Changes within ±TIE are a tie, never a regression (0.03: 3 %).",
)
@click.option(
    "--fail-above-memory",
    type=FiniteFloat(min=0),
    default=None,
    help="Exit 1 when an entry's peak resident memory grew by more than this (0.10: 10 %) [default: not gated].",
)
@_json_opt
@click.option(
    "--markdown",
    is_flag=True,
    help="Print the table and verdict as Markdown, ready to paste into a pull request comment.",
)
def compare(
    base: str, new: str, fail_above: float, tie: float, fail_above_memory: float | None, as_json: bool, markdown: bool
) -> None:
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
    result = compare_files(base, new, tie=tie, fail_above=fail_above)
    memory = compare_memory(base, new, fail_above_memory)
    if as_json:
        body = {"base": base, "new": new, "failed": result.failed or memory.failed, "summary": gate_summary(result)}
        doc = {**body, **result.to_json(), "memory": memory.to_json(), "memory_summary": memory_summary(memory)}
        click.echo(json_document("compare", doc))
    else:
        headers, rows = with_memory(GATE_HEADERS, gate_rows(result), [c.name for c in result.changes], memory)
        title = f"{new} vs {base} (above 0: slower; tie within ±{tie:.0%})"
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
