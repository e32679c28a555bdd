"""`cvae-bench loadtest` and `cvae-bench web`: the decoder as it is deployed, under load and in a browser."""

from __future__ import annotations

from typing import Any

import click

from cvae_bench.cli.console import ConsoleReporter
from cvae_bench.cli.options import click_options
from cvae_bench.cli.output import err_console
from cvae_bench.serving.options import LoadtestCommand, WebCommand


@click.command()
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


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click_options(WebCommand)
def web(model: str, **declared: Any) -> None:
    """Write a static page that runs the decoder in the browser (onnxruntime-web, WASM or WebGPU)."""
    from cvae_bench.serving.web import web_command

    cmd = WebCommand(model=model, **declared)
    click.echo(web_command(cmd))
    how = f"python -m cvae_bench.serving.browser {cmd.out}"
    err_console.print(f"[dim]serve it (COOP/COEP set, for WASM threads): {how}[/dim]")
