"""What `cvae-bench sweep` was asked: one frozen record whose declared fields generate the command's options.

The command line imports this module for the options, so it stays light: it imports no executor.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvae_bench.core.options import option, out_option, worker_timeout_option

#: The executors `--executor` names (`sweep.executors.EXECUTORS` loads each, late).
EXECUTOR_NAMES = ("local", "ray")


@dataclass(frozen=True)
class SweepCommand:
    """What `cvae-bench sweep` was asked.

    Attributes:
        path: the sweep file (the command's argument).
        dry_run: list the cells and the resources each needs; run nothing.
        executor: "local" (this machine, one cell at a time) or "ray".
        address: the Ray cluster's address (default: the file's [ray] address, then $RAY_ADDRESS).
        out: the results folder instead of the file's `[sweep] out`.
        retries: times a failed cell is run again before it is recorded as failed.
        retry_failed: run again the cells an earlier sweep recorded as failed.
        idle_timeout: seconds a silent worker is given before it counts as hung.
    """

    path: str
    dry_run: bool = option(False, "--dry-run", "List the cells, whether each will run, and the resources it needs.")
    executor: str = option(
        "local",
        "--executor",
        "local: this machine, one cell at a time; ray: each cell a Ray task on a cluster.",
        choices=EXECUTOR_NAMES,
    )
    address: str | None = option(None, "--address", "The Ray cluster (ray://HOST:10001 or HOST:6379) [$RAY_ADDRESS].")
    out: str | None = out_option("Results folder [the file's out].", folder=True)
    retries: int = option(
        1, "--retries", "Times a failed cell is run again before it is recorded as failed.", minimum=0
    )
    retry_failed: bool = option(False, "--retry-failed", "Run again the cells an earlier sweep recorded as failed.")
    idle_timeout: float = worker_timeout_option()
