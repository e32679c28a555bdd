"""The `cvae-bench` command line: parse, call the harness, print. No framework is imported here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cvae_bench import __version__
from cvae_bench.data.specs import DATASETS, DEFAULT_DATASET
from cvae_bench.errors import CvaeBenchError
from cvae_bench.training.jobs import evaluate_job

err_console = Console(stderr=True)
# Pipes and files get wide, unwrapped tables rather than rich's 80-column default.
out_console = Console(width=None if sys.stdout.isatty() else 200)


class _Group(click.Group):
    """Turns our errors into one line on stderr and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CvaeBenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)


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
    required=True,
    help="Backend name, a comma-separated list (NAME or NAME:MODE each), or 'all'.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--mode", default=None, help="Backend mode, e.g. eager/compiled (torch); default: the backend's.")
@click.option("--target", type=float, default=235.0, show_default=True, help="Stop at val -ELBO <= target (nats).")
@click.option("--max-epochs", type=click.IntRange(min=1), default=20, show_default=True)
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
@click.option("--train-subset", type=click.IntRange(min=64), default=None, help="Use only the first N training images.")
@click.option("--val-subset", type=click.IntRange(min=1), default=None, help="Use only the first N validation images.")
@click.option(
    "--worker-timeout",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    help="Seconds of silence after which a worker is declared hung.",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="Threads for every framework [its own default]."
)
@click.option("--quiet", is_flag=True, help="No progress, only the summary.")
@click.option("--export", "export_onnx", is_flag=True, help="Also export each run's verified decoder to decoder.onnx.")
def run(
    backend_name: str,
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
    train_subset: int | None,
    val_subset: int | None,
    worker_timeout: float,
    threads: int | None,
    quiet: bool,
    export_onnx: bool,
) -> None:
    """Train backends until the shared evaluator reports val -ELBO <= --target, and compare them."""
    from dataclasses import replace

    from cvae_bench.backends import registry
    from cvae_bench.data.loading import load_dataset
    from cvae_bench.runtime.files import ensure_dir
    from cvae_bench.training.compare import HEADERS, table_rows, write_comparison
    from cvae_bench.training.loop import TrainConfig
    from cvae_bench.training.run import RunOptions, default_run_dir, run_backend, summary_line

    plan = []
    for item in [p.strip() for p in backend_name.split(",")] if backend_name.strip() != "all" else ["all"]:
        name, _, item_mode = item.partition(":")
        for info in registry.resolve(name):
            if not info.available:
                raise CvaeBenchError(info.unavailable_reason())
            plan.append((info, item_mode or mode))
    if export_onnx:
        _require_export([info for info, _ in plan], device)
    single = len(plan) == 1 and repeats == 1
    folder = Path(out_dir) if out_dir else default_run_dir("runs", plan[0][0].name if single else "compare")
    ensure_dir(folder)
    # Fetch (and cache) the data here, so that the workers only ever read a verified local copy.
    ds = load_dataset(dataset, data_path, progress=lambda msg: err_console.print(f"[dim]{msg}[/dim]"))
    base = RunOptions(
        config=TrainConfig(target=target, max_epochs=max_epochs, epochs=epochs, eval_every=eval_every, seed=seed),
        device=device,
        dataset=dataset,
        data_path=str(ds.path),
        train_subset=train_subset,
        val_subset=val_subset,
        idle_timeout=worker_timeout,
        threads=threads,
    )
    results, failures = [], []
    for info, run_mode in plan:
        for r in range(repeats):
            options = replace(base, mode=run_mode, config=replace(base.config, seed=seed + r))
            sub = folder if single else folder / f"{info.name}{'-' + run_mode if run_mode else ''}-seed{seed + r}"
            label = f"{info.name}" + ("" if single else f" seed {seed + r}")
            try:
                with _RunDisplay(label, quiet) as display:
                    result = run_backend(info, options, sub, display)
                results.append(result)
                click.echo(summary_line(result, sub))
                if export_onnx:
                    _export_lines(
                        info, sub / "weights.safetensors", sub / "decoder.onnx", device, dataset, ds.path, val_subset
                    )
            except CvaeBenchError as exc:
                # One backend failing (worker died or hung, export rejected) does not stop the others.
                if single:
                    raise
                failures.append(str(exc))
                click.echo(f"error: {exc}", err=True)
    if not single and results:
        rows = write_comparison(folder, results, "cvae-bench " + " ".join(sys.argv[1:]))
        table = Table(title=f"matched runs: val -ELBO <= {target}" if epochs is None else f"{epochs} epochs")
        for header in HEADERS:
            table.add_column(header, no_wrap=True)
        for cells in table_rows(rows):
            table.add_row(*cells)
        out_console.print(table)
        click.echo(f"comparison written to {folder / 'comparison.md'} and comparison.json")
    if failures:
        raise CvaeBenchError(f"{len(failures)} run(s) failed; see the lines above")


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
    from cvae_bench.data.loading import load_dataset
    from cvae_bench.models.spec import DEFAULT_SPEC
    from cvae_bench.runtime.files import load_weights
    from cvae_bench.runtime.worker import RemoteBackend, Worker

    info = registry.get(backend_name)
    if not info.available:
        raise CvaeBenchError(info.unavailable_reason())
    weights = load_weights(weights_path)
    ds = load_dataset(dataset, data_path)
    with Worker(info) as worker:
        backend = RemoteBackend(worker, DEFAULT_SPEC, 0, device)
        ev = backend.run_job(
            evaluate_job,
            weights=weights,
            dataset=dataset,
            data_path=str(ds.path),
            val_subset=val_subset,
        )
    click.echo(
        f"{info.name}: val -ELBO {ev['val_elbo']:.4f}  (KL {ev['kl']:.4f}, NLL {ev['nll']:.4f})  [{weights_path}]"
    )


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
    help="NAME (its default mode), NAME:MODE, NAME:all (every mode), a comma-separated list, or 'all'.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda, for the backends.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Threads for every framework [cores].")
@click.option(
    "--groups",
    default="train-step,sample-native,sample-onnxruntime",
    show_default=True,
    help="Comma-separated: train-step, sample-native, sample-onnxruntime.",
)
@click.option("--rounds", type=click.IntRange(min=1), default=15, show_default=True, help="Timed rounds each.")
@click.option(
    "--min-time", type=click.FloatRange(min=0), default=0.1, show_default=True, help="Seconds per round, at least."
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
@click.option("--worker-timeout", type=click.FloatRange(min=1), default=600, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress lines.")
def bench(
    backend_name: str,
    device: str,
    threads: int | None,
    groups: str,
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
    quiet: bool,
) -> None:
    """Benchmark training steps and sampling, one isolated worker at a time, with roofline and fairness audit."""
    from cvae_bench.bench.api import BenchCommand, run_bench_command
    from cvae_bench.bench.options import BenchOptions
    from cvae_bench.runtime.threads import available_cores

    options = BenchOptions(
        groups=tuple(g.strip() for g in groups.split(",") if g.strip()),
        device=device,
        threads=threads or available_cores(),
        rounds=rounds,
        min_time=min_time,
        warmup=warmup,
        batch_sizes=batch_sizes,
        precisions=tuple(p.strip() for p in precisions.split(",") if p.strip()),
        dataset=dataset,
        data_path=data_path,
        train_subset=train_subset,
        idle_timeout=worker_timeout,
    )
    command = BenchCommand(
        backends=backend_name,
        options=options,
        command="cvae-bench " + " ".join(sys.argv[1:]),
        out_dir=out_dir,
        runs_path=runs_path,
        with_runs=with_runs,
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
    click.echo(f"results written to {outcome.json_path} and {outcome.md_path}")


# -- export, sample ---------------------------------------------------------------------------------------
def _require_export(infos: list[Any], device: str) -> None:
    """`run --export`: see `onnx.commands.require_export`."""
    from cvae_bench.onnx.commands import require_export

    require_export(infos, device)


def _export_lines(*args: Any, **kwargs: Any) -> None:
    """`run --export`: print `onnx.commands.export_lines` (same arguments)."""
    from cvae_bench.onnx.commands import export_lines

    for line in export_lines(*args, **kwargs):
        click.echo(line)


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
@click.option("--worker-timeout", type=click.FloatRange(min=1), default=600, show_default=True)
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
