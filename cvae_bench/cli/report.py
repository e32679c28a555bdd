"""`cvae-bench report`: one self-contained HTML page from result files and the history."""

from __future__ import annotations

from typing import Any

import click

from cvae_bench.cli.options import ExistingPath, click_options
from cvae_bench.cli.output import command_line
from cvae_bench.report.options import ReportCommand


@click.command()
@click.argument("paths", nargs=-1, type=ExistingPath())
@click_options(ReportCommand)
def report(paths: tuple[str, ...], **declared: Any) -> None:
    """One self-contained HTML page from run folders, comparison.json, bench.json, decoder.onnx and history."""
    from cvae_bench.report.api import report_command

    command = command_line()
    for line in report_command(ReportCommand(paths=paths, command=command, **declared)):
        click.echo(line)
