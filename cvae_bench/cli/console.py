"""The console's `Reporter`: where each event is shown (stdout, stderr, a progress bar per training run)."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cvae_bench.cli.output import err_console
from cvae_bench.core.events import Diverged, Evaluated, Event, Measured, Message, Stage, TrainProgress, TrainStart


class RunDisplay:
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

    def __enter__(self) -> RunDisplay:
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

    def run(self, label: str) -> RunDisplay:
        """The progress display of one training run, `label`, while it trains."""
        return RunDisplay(label, self.quiet)
