"""The `cvae-bench` command line: parse, call one function of the harness, print. No framework is imported here.

`group` holds the group (its error handling, and where each command is defined: a command's module is imported
when that command runs); `options` generates click options from the options records; `output` and `console`
say where things are printed; one module per family of commands defines them.
"""

from __future__ import annotations

from cvae_bench.cli.group import main

__all__ = ["main"]
