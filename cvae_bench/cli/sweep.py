"""`cvae-bench sweep`: every cell of a sweep file not yet done, locally or on Ray."""

from __future__ import annotations

from typing import Any

import click

from cvae_bench.cli.console import ConsoleReporter
from cvae_bench.cli.options import click_options
from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.sweep.options import SweepCommand


@click.command()
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
