"""What `run` and `bench` do with their results folder once the work is done: its report.html and the
history entry (the flags that say so, and the step)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cvae_bench.cli.console import ConsoleReporter

F = TypeVar("F", bound=Callable[..., Any])


def after_work_options(function: F) -> F:
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


def publish(
    folder: Path, no_report: bool, history_dir: str | None, no_history: bool, result: Path | None = None
) -> None:
    """report.html into `folder` (unless `no_report`) and the history entry of `result` (default: the folder) in
    `--history`, else the default store (none with `no_history`), each said on stderr."""
    from cvae_bench.report.api import publish_results
    from cvae_bench.report.history import history_store

    history = history_store(history_dir, no_history)
    publish_results(folder, ConsoleReporter(to_stderr=True), report=not no_report, history=history, result=result)
