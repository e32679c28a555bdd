"""What the command line prints, fitted to where it goes: rich tables on a terminal, Markdown tables (never cut)
in a pipe or file, and versioned JSON documents for programs (`--json`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console

# Lines are never hard-wrapped (soft_wrap): a terminal wraps them itself, and a log file keeps each figure whole.
#: Progress, warnings and errors: stderr.
err_console = Console(stderr=True, soft_wrap=True)
#: Results: stdout.
out_console = Console(soft_wrap=True)

#: The `schema` field of every JSON document the command line prints: `cvae-bench/<command>/<version>`. The
#: version grows when a field is removed or changes meaning (adding a field keeps it).
SCHEMA_VERSION = 1


def command_line() -> str:
    """The command as the user typed it (`cvae-bench bench --backend torch`), recorded in the results."""
    return "cvae-bench " + " ".join(sys.argv[1:])


def schema(command: str) -> str:
    """`cvae-bench/<command>/<version>`, the first field of the command's `--json` document."""
    return f"cvae-bench/{command}/{SCHEMA_VERSION}"


def json_document(command: str, body: dict[str, Any]) -> str:
    """The `--json` document of `command`: `schema` first, then `body`; strict JSON (no NaN)."""
    return json.dumps({"schema": schema(command), **body}, indent=2, allow_nan=False)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> list[str]:
    """A GitHub-flavoured Markdown table (pipes in cells escaped), under a bold title when there is one."""
    lines = [f"**{_cell(title)}**", ""] if title else []
    lines.append("| " + " | ".join(_cell(h) for h in headers) + " |")
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _where(stream: TextIO | None, markdown: bool | None) -> tuple[TextIO, bool]:
    """The stream to print to (stdout by default), and whether as Markdown: as asked, else unless a terminal."""
    out = stream or sys.stdout
    return out, (not out.isatty()) if markdown is None else markdown


def show_table(
    title: str | None,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    stream: TextIO | None = None,
    markdown: bool | None = None,
) -> None:
    """Print a table: rich on a terminal, Markdown elsewhere (a pipe or a file: never truncated or wrapped).

    Args:
        title: the heading, if any.
        headers, rows: the cells, as text (rich markup in them is not interpreted).
        stream: where to print (stdout).
        markdown: force Markdown (True) or rich (False); None: Markdown unless `stream` is a terminal.
    """
    out, markdown = _where(stream, markdown)
    if markdown:
        out.write("\n".join(markdown_table(headers, rows, title)) + "\n\n")
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for header in headers:
        table.add_column(header, no_wrap=True)
    for row in rows:
        table.add_row(*(escape(c) for c in row))
    Console(file=out).print(table)


def show_blocks(
    title: str,
    blocks: Sequence[tuple[str, Sequence[tuple[str, str]]]],
    *,
    stream: TextIO | None = None,
    markdown: bool | None = None,
) -> None:
    """Print named blocks of `key: value` lines (too many columns for one table: the fairness audit per process):
    indented under bold names on a terminal, a Markdown heading and bullets elsewhere (never cut or wrapped).

    `title`, `stream` and `markdown` as in `show_table`; `blocks`: (name, [(key, value), ...]) for each block,
    as text (rich markup in them is not interpreted).
    """
    out, markdown = _where(stream, markdown)
    if markdown:
        lines = [f"**{_cell(title)}**", ""]
        for name, pairs in blocks:
            lines += [f"- **{_cell(name)}**", *(f"  - {_cell(k)}: {_cell(v)}" for k, v in pairs)]
        out.write("\n".join(lines) + "\n\n")
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(file=out, soft_wrap=True)
    console.print(f"[bold]{escape(title)}[/bold]")
    for name, pairs in blocks:
        console.print(f"  [bold]{escape(name)}[/bold]")
        for key, value in pairs:
            console.print(f"    {escape(key)}: {escape(value)}", highlight=False)
