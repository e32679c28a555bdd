"""`cvae-bench export` and `cvae-bench sample`: a decoder to ONNX, verified; the tutorial's pictures."""

from __future__ import annotations

from typing import Any

import click

from cvae_bench.cli.console import ConsoleReporter
from cvae_bench.cli.options import click_options
from cvae_bench.onnx.options import ExportCommand, SampleCommand


@click.command()
@click_options(ExportCommand)
def export(**declared: Any) -> None:
    """Export a decoder (or encoder) to ONNX with the one interface, verified against the framework."""
    from cvae_bench.onnx.commands import export_command

    # The declared options arrive under their field names: the record is built from them as they are.
    for line in export_command(ExportCommand(**declared), ConsoleReporter()):
        click.echo(line)


@click.command()
@click_options(SampleCommand)
def sample(**declared: Any) -> None:
    """Draw a decoder: prior samples per digit, one z across labels 1-9, the latent manifold (PNGs)."""
    from cvae_bench.onnx.commands import sample_command

    for path in sample_command(SampleCommand(**declared)):
        click.echo(path)
