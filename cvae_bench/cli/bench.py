"""`cvae-bench bench` and `cvae-bench compare`: the benchmark with its verdicts, and the regression gate."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from cvae_bench.bench.options import BenchCommand, BenchOptions, CompareCommand
from cvae_bench.cli.after_work import after_work_options, publish
from cvae_bench.cli.console import ConsoleReporter
from cvae_bench.cli.options import ExistingPath, click_options, declared_names, json_option
from cvae_bench.cli.output import command_line, json_document, show_blocks, show_table
from cvae_bench.core.errors import UsageError

if TYPE_CHECKING:
    from cvae_bench.bench.api import BenchOutcome


def _bench_groups(text: str | None) -> tuple[str, ...]:
    """The groups named in `--groups`, or those that declare themselves default (the registry says which)."""
    if text is None:
        from cvae_bench.bench.groups import DEFAULT_GROUPS

        return DEFAULT_GROUPS
    return tuple(g.strip() for g in text.split(",") if g.strip())


@click.command()
@click.option(
    "--groups",
    default=None,
    help="Comma-separated benchmark groups: train-step, sample-native, sample-onnxruntime, sample-onnxruntime-web, "
    "anatomy [the groups that declare themselves default: the first three].",
)
@click_options(BenchCommand)
@click_options(BenchOptions)
@after_work_options
@click.option(
    "--anatomy",
    is_flag=True,
    help="Also profile each backend's step and decoder (and onnxruntime's) by category: the anatomy groups.",
)
@click.option("--quiet", is_flag=True, help="No progress lines.")
@json_option
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
    command = BenchCommand(options=options, command=command_line(), **declared)

    # With --json, stdout holds the one document: any result line goes to stderr.
    outcome = run_bench_command(command, ConsoleReporter(quiet, to_stderr=as_json))
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
    else:
        _show(outcome)
    publish(outcome.json_path.parent, no_report, history_dir, no_history, outcome.json_path)


def _show(outcome: BenchOutcome) -> None:
    """The bench's outcome for people: its tables, the fairness audit, the load, the noise and where it went."""
    for shown in outcome.tables:
        if not shown.rows and not shown.show_empty:
            continue
        show_table(shown.title, shown.headers, shown.rows)
    show_blocks("fairness audit", outcome.fairness)  # one block per process: too many columns for one table
    click.echo(outcome.load)
    for line in outcome.noise:
        click.echo(line)
    if outcome.aa_failed:
        click.echo("warning: the A/A self-check failed; read every verdict above with suspicion", err=True)
    for line in outcome.calibration or []:
        click.echo(line)
    click.echo(f"results written to {outcome.json_path} and {outcome.md_path}")


@click.command("compare")
@click.argument("base", type=ExistingPath())
@click.argument("new", type=ExistingPath())
@click_options(CompareCommand)
@json_option
@click.option(
    "--markdown",
    is_flag=True,
    help="Print the table and verdict as Markdown, ready to paste into a pull request comment.",
)
def compare(as_json: bool, markdown: bool, **declared: Any) -> None:
    """The regression gate: each entry's change from BASE to NEW with its 95 % CI and verdict.

    BASE and NEW: bench.json, pytest-benchmark JSON (or a .benchmarks folder), comparison.json, result.json, or
    folders of them. Exits 1 on a significant regression above --fail-above, or (with --fail-above-memory) on
    an entry whose peak resident memory grew by more than that.
    """
    from cvae_bench.bench.compare import GATE_HEADERS, compare_files, gate_rows, gate_summary
    from cvae_bench.bench.compare_memory import compare_memory, memory_summary, with_memory

    if as_json and markdown:
        raise UsageError("--json and --markdown: choose one")
    cmd = CompareCommand(**declared)
    base, new = cmd.base, cmd.new
    result = compare_files(base, new, tie=cmd.tie, fail_above=cmd.fail_above)
    memory = compare_memory(base, new, cmd.fail_above_memory)
    if as_json:
        body = {"base": base, "new": new, "failed": result.failed or memory.failed, "summary": gate_summary(result)}
        doc = {**body, **result.to_json(), "memory": memory.to_json(), "memory_summary": memory_summary(memory)}
        click.echo(json_document("compare", doc))
    else:
        headers, rows = with_memory(GATE_HEADERS, gate_rows(result), [c.name for c in result.changes], memory)
        title = f"{new} vs {base} (above 0: slower; tie within ±{cmd.tie:.0%})"
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
