"""What `cvae-bench report` was asked: a light record (the command line imports it to build its options)."""

from __future__ import annotations

from dataclasses import dataclass

from cvae_bench.core.options import force_option, option, out_option


@dataclass(frozen=True)
class ReportCommand:
    """What `cvae-bench report` was asked.

    Attributes:
        paths: run folders, result.json, comparison.json, bench.json, decoder.onnx or history files.
        out: the page to write.
        history: a history folder whose entries are drawn as trends (None: no history).
        append: add every result file of `paths` to `history` first (as `cvae-bench run`/`bench` do).
        force: replace an existing `out` (never one of the files read).
        command: the command line, shown on the page.
    """

    paths: tuple[str, ...] = ()
    out: str = out_option("The HTML page to write.", folder=False, default="report.html")
    history: str | None = option(
        None,
        "--history",
        "A results history folder to draw as trends across commits (run/bench append to "
        "~/.cache/cvae-bench/history by default).",
        path="folder",
    )
    append: bool = option(False, "--append", "Add the result files of PATHS to --history first.")
    force: bool = force_option("Replace an existing -o file (never one the report reads).")
    command: str | None = None
