"""`cvae-bench run` and `cvae-bench evaluate`: train to the target and compare; score a weights file."""

from __future__ import annotations

from typing import Any

import click

from cvae_bench.cli.after_work import after_work_options, publish
from cvae_bench.cli.console import ConsoleReporter
from cvae_bench.cli.options import click_options, json_option
from cvae_bench.cli.output import command_line, json_document, show_table
from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.data.evaluate_command import EvaluateCommand
from cvae_bench.training.command import RunCommand


@click.command()
@click_options(RunCommand)
@click.option("--quiet", is_flag=True, help="No progress, only the summary.")
@after_work_options
@json_option
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
    cmd = RunCommand(command=command_line(), **declared)
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
        publish(folder, no_report, history_dir, no_history)
    if outcome.failures:
        raise CvaeBenchError(f"{len(outcome.failures)} run(s) failed; see the lines above")


@click.command()
@click_options(EvaluateCommand)
def evaluate(**declared: Any) -> None:
    """Score a weights file with the shared evaluator (val -ELBO, KL, NLL)."""
    from cvae_bench.data.evaluate_command import evaluate_command

    # The declared options arrive under their field names: the record is built from them as they are.
    outcome = evaluate_command(EvaluateCommand(**declared), ConsoleReporter())
    click.echo(outcome.line())
