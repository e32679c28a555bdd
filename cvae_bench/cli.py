"""The `cvae-bench` command line: parse, call the harness, print. No framework is imported here."""

from __future__ import annotations

import math
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cvae_bench import __version__
from cvae_bench.bench.options import BenchOptions
from cvae_bench.core.defaults import DEFAULT_MAX_EPOCHS, DEFAULT_TARGET
from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.data.specs import DATASETS, DEFAULT_DATASET

err_console = Console(stderr=True)
# Pipes and files get wide, unwrapped tables rather than rich's 80-column default.
out_console = Console(width=None if sys.stdout.isatty() else 200)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it unwinds like KeyboardInterrupt (not an Exception)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: the way out is already under way
    raise _Terminated


class _Group(click.Group):
    """Turns our errors into one line on stderr and a non-zero exit, never a traceback.

    SIGTERM behaves like SIGINT: the command unwinds (each worker it holds is killed on the way, since
    a worker mid-job would not hear a polite exit), one `error:` line, exit 128 + the signal (143, 130).
    """

    def invoke(self, ctx: click.Context) -> Any:
        from cvae_bench.runtime.worker import kill_all_workers

        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return super().invoke(ctx)
        except CvaeBenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            kill_all_workers()
            click.echo("error: interrupted (SIGINT)", err=True)
            sys.exit(130)
        except _Terminated:
            kill_all_workers()
            click.echo("error: terminated (SIGTERM)", err=True)
            sys.exit(143)
        finally:
            signal.signal(signal.SIGTERM, previous)


class FiniteFloat(click.ParamType[float, Any]):
    """A float option that must be finite (click's FLOAT and FloatRange accept nan and inf), in [min, max].

    Args:
        min: the smallest value accepted, if any.
        max: the largest value accepted, if any.
    """

    name = "float"

    def __init__(self, min: float | None = None, max: float | None = None) -> None:
        self.min, self.max = min, max

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.min is not None and number < self.min:
            self.fail(f"{number:g} is below the minimum {self.min:g}", param, ctx)
        if self.max is not None and number > self.max:
            self.fail(f"{number:g} is above the maximum {self.max:g}", param, ctx)
        return number

    def __repr__(self) -> str:
        return f"FiniteFloat({self.min}, {self.max})"


def check_threads(threads: int | None) -> None:
    """Refuse a `--threads` above the cores this process may run on (a framework would cap it silently).

    Raises:
        click.BadParameter: naming both numbers.
    """
    from cvae_bench.runtime.threads import available_cores

    cores = available_cores()
    if threads is not None and threads > cores:
        raise click.BadParameter(
            f"{threads} threads is more than the {cores} core(s) available to this process", param_hint="'--threads'"
        )


def check_subsets(dataset: str, train_subset: int | None, val_subset: int | None) -> None:
    """Refuse subset sizes larger than the data set.

    Raises:
        click.BadParameter: naming the option, the value and the data set's size.
    """
    from cvae_bench.data.specs import dataset_spec

    spec = dataset_spec(dataset)
    for option, value, size, what in (
        ("--train-subset", train_subset, spec.train_size, "training"),
        ("--val-subset", val_subset, spec.test_size, "validation"),
    ):
        if value is not None and value > size:
            raise click.BadParameter(
                f"{value} is more than {spec.title}'s {size} {what} images", param_hint=f"'{option}'"
            )


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="cvae-bench")
def main() -> None:
    """Benchmark the Keras tutorial's Conditional VAE across frameworks, at matched quality."""


# -- backends -------------------------------------------------------------------------------------------
@main.command()
def backends() -> None:
    """List registered backends: availability, framework versions, devices, origin."""
    from cvae_bench.backends import registry

    table = Table(title="cvae-bench backends")
    for col in ("name", "available", "framework", "devices", "origin"):
        table.add_column(col, no_wrap=True)
    table.add_column("notes")
    for info in registry.all_backends().values():
        versions = ", ".join(f"{k} {v}" for k, v in info.versions().items())
        table.add_row(
            info.name,
            "yes" if info.available else "no",
            versions,
            ", ".join(info.devices),
            info.origin,
            info.unavailable_reason() or info.description,
        )
    out_console.print(table)


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

    ds = load_dataset(dataset, data_path, progress=lambda msg: err_console.print(f"[dim]{msg}[/dim]"))
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
class _RunDisplay:
    """Rich progress for training events coming from a worker."""

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

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "start":
            self.task = self.progress.add_task(
                "train", total=event["total_steps"], label=self.label, loss="-", rate="-"
            )
        elif kind == "progress" and self.task is not None:
            self.progress.update(
                self.task,
                completed=event["step"],
                loss=f"{event['loss']:.2f}",
                rate=f"{event['steps_per_s']:.0f}",
            )
        elif kind == "eval" and not self.quiet:
            self.progress.console.print(
                f"{self.label}  epoch {event['epoch']:6.2f}  step {event['step']:>6}  "
                f"val -ELBO {event['val_elbo']:8.3f}  (KL {event['kl']:.3f}, NLL {event['nll']:.3f})  "
                f"train {event['train_time_s']:.1f} s"
            )


@main.command()
@click.option(
    "--backend",
    "backend_name",
    default=None,
    help="Backend name, a comma-separated list (NAME or NAME:MODE each), or 'all'. Required unless --resume.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--mode", default=None, help="Backend mode, e.g. eager/compiled (torch); default: the backend's.")
@click.option(
    "--target",
    type=FiniteFloat(),
    default=DEFAULT_TARGET,
    show_default=True,
    help="Stop at val -ELBO <= target (nats).",
)
@click.option("--max-epochs", type=click.IntRange(min=1), default=DEFAULT_MAX_EPOCHS, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Train exactly N epochs, no target.")
@click.option("--eval-every", type=click.IntRange(min=1), default=None, help="Steps between evaluations [one epoch].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Runs per backend, with seeds seed..seed+N-1.",
)
@_dataset_opt
@_data_opt
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Run folder [runs/<backend>-<timestamp>, or runs/compare-<timestamp> for several runs].",
)
@click.option("--force", is_flag=True, help="Write into a --out folder that already holds files.")
@click.option("--train-subset", type=click.IntRange(min=64), default=None, help="Use only the first N training images.")
@click.option("--val-subset", type=click.IntRange(min=1), default=None, help="Use only the first N validation images.")
@click.option(
    "--worker-timeout",
    type=FiniteFloat(min=1),
    default=600,
    show_default=True,
    help="Seconds of silence after which a worker is declared hung.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads for every framework, at most the cores available [its own default].",
)
@click.option("--quiet", is_flag=True, help="No progress, only the summary.")
@click.option("--export", "export_onnx", is_flag=True, help="Also export each run's verified decoder to decoder.onnx.")
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Finish an interrupted run folder: keep the runs that finished, go on from the last checkpoint.",
)
@click.option("--no-report", is_flag=True, help="Do not write report.html into the run folder.")
@click.option(
    "--history",
    "history_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also append the results to this history store (see `cvae-bench report --history`).",
)
def run(
    backend_name: str | None,
    device: str,
    mode: str | None,
    target: float,
    max_epochs: int,
    epochs: int | None,
    eval_every: int | None,
    seed: int,
    repeats: int,
    dataset: str,
    data_path: str | None,
    out_dir: str | None,
    force: bool,
    train_subset: int | None,
    val_subset: int | None,
    worker_timeout: float,
    threads: int | None,
    quiet: bool,
    export_onnx: bool,
    resume_dir: str | None,
    no_report: bool,
    history_dir: str | None,
) -> None:
    """Train backends until the shared evaluator reports val -ELBO <= --target, and compare them."""
    check_threads(threads)
    check_subsets(dataset, train_subset, val_subset)
    from cvae_bench.backends.selection import parse_selection
    from cvae_bench.data.loading import load_dataset
    from cvae_bench.onnx.commands import export_lines, require_export
    from cvae_bench.training.compare import HEADERS, table_rows
    from cvae_bench.training.loop import TrainConfig
    from cvae_bench.training.matched import default_folder, resume_matched, run_matched
    from cvae_bench.training.run import RunOptions

    if (backend_name is None) == (resume_dir is None):
        raise CvaeBenchError("give --backend NAME to start runs, or --resume FOLDER to finish interrupted ones")
    display = lambda label: _RunDisplay(label, quiet)  # noqa: E731 - a factory, named for the two calls below
    warn = lambda line: click.echo(line, err=True)  # noqa: E731

    def export_after(selection: Any, result: Any, sub: Path) -> list[str]:
        weights, onnx_path = sub / "weights.safetensors", sub / "decoder.onnx"
        return export_lines(
            selection.info, weights, onnx_path, result.device.split(":")[0], dataset, data_path, val_subset
        )

    after_run = export_after if export_onnx else None
    if resume_dir is not None:
        outcome = resume_matched(Path(resume_dir), display, click.echo, warn, after_run)
        epochs = None
        if outcome.results and outcome.results[0].outcome.target is not None:
            target = outcome.results[0].outcome.target
    else:
        assert backend_name is not None
        selections = parse_selection(backend_name)
        if mode is not None:
            selections = [s if s.mode else replace(s, mode=mode) for s in selections]
        if export_onnx:
            require_export([s.info for s in selections], device)
        folder = Path(out_dir) if out_dir else default_folder(selections, repeats)
        # Fetch (and cache) the data here, so that the workers only ever read a verified local copy.
        ds = load_dataset(dataset, data_path, progress=lambda msg: err_console.print(f"[dim]{msg}[/dim]"))
        data_path = str(ds.path)
        config = TrainConfig(target=target, max_epochs=max_epochs, epochs=epochs, eval_every=eval_every, seed=seed)
        base = RunOptions(
            config=config,
            device=device,
            dataset=dataset,
            data_path=data_path,
            train_subset=train_subset,
            val_subset=val_subset,
            idle_timeout=worker_timeout,
            threads=threads,
        )
        command = "cvae-bench " + " ".join(sys.argv[1:])
        outcome = run_matched(selections, base, repeats, folder, command, display, click.echo, warn, after_run, force)
    folder = outcome.folder
    if outcome.rows:
        table = Table(title=f"matched runs: val -ELBO <= {target}" if epochs is None else f"{epochs} epochs")
        for header in HEADERS:
            table.add_column(header, no_wrap=True)
        for cells in table_rows(outcome.rows):
            table.add_row(*cells)
        out_console.print(table)
        click.echo(f"comparison written to {folder / 'comparison.md'} and comparison.json")
    if outcome.results:
        _report_and_history(folder, no_report, history_dir)
    if outcome.failures:
        raise CvaeBenchError(f"{len(outcome.failures)} run(s) failed; see the lines above")


def _report_and_history(folder: Path, no_report: bool, history_dir: str | None, result: Path | None = None) -> None:
    """report.html into `folder` (a warning, not a failure, when it cannot be made) and the history entry of
    `result` (default: the folder)."""
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
@click.option("--weights", "weights_path", required=True, type=click.Path(dir_okay=False))
@click.option("--device", default="cpu", show_default=True)
@_dataset_opt
@_data_opt
@click.option("--val-subset", type=click.IntRange(min=1), default=None)
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
def _int_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not out or min(out) < 1:
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return out


@main.command()
@click.option(
    "--backend",
    "backend_name",
    default="all",
    show_default=True,
    help="NAME (its default mode), NAME:MODE, NAME:all (every mode), a comma-separated list, or 'all'; "
    "each item may end in +KNOB=VALUE... to time a tuned worker beside the untuned one (knobs: threads, "
    "flush-denormal, mkldnn, torch-compile-mode, onednn, env:VAR; docs/design.md, 'Tuning knobs').",
)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda, for the backends.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Threads for every framework [cores].")
@click.option(
    "--groups",
    default="train-step,sample-native,sample-onnxruntime",
    show_default=True,
    help="Comma-separated: train-step, sample-native, sample-onnxruntime.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1, max=100),
    default=_BENCH_DEFAULTS.epochs,
    show_default=True,
    help="Epochs of fresh worker processes per contestant; every interval is taken across them.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=_BENCH_DEFAULTS.rounds,
    show_default=True,
    help="Interleaved timed rounds per epoch.",
)
@click.option(
    "--min-time", type=FiniteFloat(min=0), default=0.1, show_default=True, help="Seconds per round, at least."
)
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True, help="Untimed training steps.")
@click.option(
    "--batch-sizes", default="1,64,1024,8192", show_default=True, callback=_int_list, help="Sampling batch sizes."
)
@click.option("--precisions", default="fp32,fp16,int8", show_default=True, help="onnxruntime model precisions.")
@click.option(
    "--runs",
    "runs_path",
    type=click.Path(exists=True),
    default=None,
    help="Time-to-target from `cvae-bench run --repeats N` output (comparison.json, result.json or a folder).",
)
@click.option(
    "--with-runs",
    type=click.IntRange(min=1),
    default=None,
    help="Also train every benchmarked backend/mode N times to the target, for time-to-target.",
)
@_dataset_opt
@_data_opt
@click.option("--train-subset", type=click.IntRange(min=64), default=None, help="Train steps on the first N images.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Results folder [runs/bench-<timestamp>].",
)
@click.option("--worker-timeout", type=FiniteFloat(min=1), default=600, show_default=True)
@click.option("--force", is_flag=True, help="Write into an --out folder that already holds files.")
@click.option("--no-report", is_flag=True, help="Do not write report.html into the results folder.")
@click.option(
    "--history",
    "history_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also append bench.json to this history store (see `cvae-bench report --history`).",
)
@click.option(
    "--anatomy",
    is_flag=True,
    help="Also profile each backend's step and decoder (and onnxruntime's) by category: the anatomy groups.",
)
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option(
    "--tie",
    type=FiniteFloat(min=0, max=0.5),
    default=0.03,
    show_default=True,
    help="Ratios within ±TIE are a tie.",
)
@click.option(
    "--rel-precision",
    type=FiniteFloat(min=0.001, max=0.5),
    default=None,
    help="Add interleaved sweeps until every ratio's 95 % CI half-width is within this (e.g. 0.02), or --max-time.",
)
@click.option(
    "--max-time",
    type=FiniteFloat(min=1),
    default=300,
    show_default=True,
    help="Seconds of timed sweeps at most with --rel-precision.",
)
@click.option(
    "--self-check/--no-self-check",
    default=True,
    show_default=True,
    help="Time the first backend/mode twice, in two workers (A/A): its ratio gives this machine's noise floor.",
)
@click.option(
    "--wait-quiet",
    type=FiniteFloat(min=0),
    default=0,
    show_default=True,
    help="Wait up to SECONDS for an idle machine before timing.",
)
@click.option(
    "--replicate",
    type=click.IntRange(min=1, max=100),
    default=1,
    show_default=True,
    help="Run the bench N times, independently, and write calibration.md: how often each interval holds the "
    "pooled estimate, and how often the A/A check fails.",
)
@click.option(
    "--plain-loops",
    is_flag=True,
    help="Also time each selected framework's own plain training loop beside train-step (torch: nn.Module + "
    "torch.optim.Adam; Keras: the tutorial's fit), to show the harness does not slow a framework down.",
)
@click.option(
    "--under-load",
    is_flag=True,
    help="Judge even when foreign load overlapped too many sweeps (BUSY runs otherwise get no verdict).",
)
def bench(
    backend_name: str,
    device: str,
    threads: int | None,
    groups: str,
    epochs: int,
    rounds: int,
    min_time: float,
    warmup: int,
    batch_sizes: tuple[int, ...],
    precisions: str,
    runs_path: str | None,
    with_runs: int | None,
    dataset: str,
    data_path: str | None,
    train_subset: int | None,
    out_dir: str | None,
    worker_timeout: float,
    force: bool,
    no_report: bool,
    history_dir: str | None,
    anatomy: bool,
    quiet: bool,
    tie: float,
    rel_precision: float | None,
    max_time: float,
    self_check: bool,
    wait_quiet: float,
    replicate: int,
    plain_loops: bool,
    under_load: bool,
) -> None:
    """Benchmark training steps and sampling in interleaved rounds, with verdicts, roofline and fairness audit."""
    from cvae_bench.bench.api import BenchCommand, run_bench_command

    options = BenchOptions(
        groups=tuple(g.strip() for g in groups.split(",") if g.strip()) + (("anatomy",) if anatomy else ()),
        device=device,
        threads=threads,
        epochs=epochs,
        rounds=rounds,
        min_time=min_time,
        warmup=warmup,
        batch_sizes=batch_sizes,
        precisions=tuple(p.strip() for p in precisions.split(",") if p.strip()),
        dataset=dataset,
        data_path=data_path,
        train_subset=train_subset,
        idle_timeout=worker_timeout,
        tie=tie,
        rel_precision=rel_precision,
        max_time=max_time,
        self_check=self_check,
        wait_quiet=wait_quiet,
        under_load=under_load,
        plain_loops=plain_loops,
    )
    command = BenchCommand(
        backends=backend_name,
        options=options,
        command="cvae-bench " + " ".join(sys.argv[1:]),
        out_dir=out_dir,
        runs_path=runs_path,
        with_runs=with_runs,
        force=force,
        replicate=replicate,
    )

    def on_event(event: dict[str, Any]) -> None:
        if quiet:
            return
        if event.get("type") == "stage":
            err_console.print(f"[bold]bench[/bold] {event['what']}")
        elif event.get("type") == "bench" and "median_s" in event:
            err_console.print(f"[dim]  {event['what']}: {event['median_s'] * 1e3:.3f} ms median[/dim]")

    outcome = run_bench_command(command, on_event, progress=lambda msg: err_console.print(f"[dim]{msg}[/dim]"))
    for shown in outcome.tables:
        if not shown.rows and not shown.show_empty:
            continue
        table = Table(title=shown.title)
        for h in shown.headers:
            table.add_column(h, no_wrap=True)
        for cells in shown.rows:
            table.add_row(*cells)
        out_console.print(table)
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
    _report_and_history(outcome.json_path.parent, no_report, history_dir, outcome.json_path)


# -- export, sample ---------------------------------------------------------------------------------------
@main.command()
@click.option("--backend", "backend_name", required=True, help="Backend whose exporter writes the file.")
@click.option("--weights", "weights_path", required=True, type=click.Path(dir_okay=False), help="Canonical weights.")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False), help="ONNX file to write.")
@click.option("--part", type=click.Choice(["decoder", "encoder"]), default="decoder", show_default=True)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default="fp32",
    show_default=True,
    help="fp16: onnxconverter-common, float32 inputs/outputs kept; int8: onnxruntime dynamic quantisation.",
)
@click.option("--opset", type=click.IntRange(min=7), default=18, show_default=True, help="ONNX opset of the file.")
@click.option("--device", default="cpu", show_default=True, help="Where the backend runs (the check's reference).")
@_dataset_opt
@_data_opt
@click.option("--val-subset", type=click.IntRange(min=1), default=None, help="Score on the first N validation images.")
@click.option("--worker-timeout", type=FiniteFloat(min=1), default=600, show_default=True)
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
    from cvae_bench.onnx.commands import export_command

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
        progress=lambda msg: err_console.print(f"[dim]{msg}[/dim]"),
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
@click.option("--device", default="cpu", show_default=True, help="Where --backend runs.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="samples", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the prior draws.")
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
    from cvae_bench.onnx.commands import sample_command

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
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="loadtest", show_default=True)
@click.option("--precisions", default="fp32,fp16,int8", show_default=True, help="Variants to measure (made from fp32).")
@click.option("--devices", default="cpu,cuda", show_default=True, help="onnxruntime providers, where available.")
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
@click.option("--offline-queries", type=click.IntRange(min=1), default=16384, show_default=True)
@click.option("--scheduler", type=click.Choice(["auto", "loadgen", "builtin"]), default="auto", show_default=True)
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
) -> None:
    """Measure an ONNX decoder under MLPerf's single-stream, server and offline scenarios."""
    from cvae_bench.serving.loadtest import loadtest_command

    try:
        batches = [int(b) for b in offline_batches.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected integers such as 64,1024; received {offline_batches!r}") from None
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
        say=(lambda msg: None) if quiet else (lambda msg: err_console.print(f"[dim]{msg}[/dim]")),
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
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Results [the file's out].")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Times a failed cell is run again before it is recorded as failed.",
)
@click.option("--retry-failed", is_flag=True, help="Run again the cells an earlier sweep recorded as failed.")
@click.option(
    "--worker-timeout",
    type=FiniteFloat(min=1),
    default=600,
    show_default=True,
    help="Seconds of silence after which a worker is declared hung.",
)
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
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False), default="report.html", show_default=True)
@click.option(
    "--history",
    "history_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="A results history folder to draw as trends across commits (run/bench append to "
    "~/.cache/cvae-bench/history by default).",
)
@click.option("--append", is_flag=True, help="Add the result files of PATHS to --history first.")
def report(paths: tuple[str, ...], out_path: str, history_dir: str | None, append: bool) -> None:
    """One self-contained HTML page from run folders, comparison.json, bench.json, decoder.onnx and history."""
    from cvae_bench.report.api import report_command

    command = "cvae-bench " + " ".join(sys.argv[1:])
    for line in report_command(paths, out_path, history=history_dir, append=append, command=command):
        click.echo(line)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default="site", show_default=True)
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
@click.option("--tie", type=FiniteFloat(min=0, max=0.5), default=0.03, show_default=True)
@click.option(
    "--fail-above-memory",
    type=FiniteFloat(min=0),
    default=None,
    help="Exit 1 when an entry's peak resident memory grew by more than this (0.10: 10 %) [default: not gated].",
)
def compare(base: str, new: str, fail_above: float, tie: float, fail_above_memory: float | None) -> None:
    """The regression gate: each entry's change from BASE to NEW with its 95 % CI and verdict.

    BASE and NEW: bench.json, pytest-benchmark JSON (or a .benchmarks folder), comparison.json, result.json, or
    folders of them. Exits 1 on a significant regression above --fail-above, or (with --fail-above-memory) on
    an entry whose peak resident memory grew by more than that.
    """
    from rich.markup import escape

    from cvae_bench.bench.compare import GATE_HEADERS, compare_files, gate_rows, gate_summary
    from cvae_bench.bench.compare_memory import compare_memory, memory_summary, with_memory

    result = compare_files(base, new, tie=tie, fail_above=fail_above)
    memory = compare_memory(base, new, fail_above_memory)
    headers, rows = with_memory(GATE_HEADERS, gate_rows(result), [c.name for c in result.changes], memory)
    table = Table(title=f"{new} vs {base} (above 0: slower; tie within ±{tie:.0%})")
    for header in headers:
        table.add_column(header)
    for cells in rows:
        table.add_row(*(escape(c) for c in cells))  # entry names hold brackets, which rich reads as markup
    out_console.print(table)
    for name in result.only_base:
        click.echo(f"only in BASE: {name}")
    for name in result.only_new:
        click.echo(f"only in NEW: {name}")
    click.echo(gate_summary(result))
    memory_line = memory_summary(memory)
    if memory_line is not None:
        click.echo(memory_line)
    if result.failed or memory.failed:
        sys.exit(1)
