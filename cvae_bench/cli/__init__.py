"""The `cvae-bench` command line: parse, call one function of the harness, print. No framework is imported here.

`group` holds the group and its error handling; `options` generates click options from the options records;
`output` and `console` say where things are printed; one module per family of commands registers them.
"""

from __future__ import annotations

from cvae_bench.cli import bench, onnx, registry, report, serving, sweep, training  # noqa: F401  (registers them)
from cvae_bench.cli.group import main

__all__ = ["main"]
