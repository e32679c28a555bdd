"""The contract of an executor: take cells, give back each one's outcome as it finishes.

The driver (`sweep.api`) submits every pending cell, then asks for the next finished one, writes it, and
submits it again when it failed and attempts are left. An executor runs `execute.execute_cell` somewhere
— in this process, one at a time (`local`), or as a task on a cluster (`ray`) — and never writes into
the sweep folder itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from cvae_bench.sweep.cells import Cell, Resources, resources
from cvae_bench.sweep.execute import CellOutcome


@dataclass(frozen=True)
class ExecutorSettings:
    """What every executor may be told.

    Attributes:
        data_path: a verified copy of the data set where cells run (None: each node's caches or a download).
        idle_timeout: seconds a silent worker is given before it counts as hung.
        address: the cluster's address (Ray: `--address` or $RAY_ADDRESS).
        slot: the custom resource a node advertises once per measurement it can hold.
        cpus: CPUs a cell asks for (None: its threads, else the smallest node's CPUs).
    """

    data_path: str | None = None
    idle_timeout: float = 600.0
    address: str | None = None
    slot: str = "bench_slot"
    cpus: int | None = None


class Executor(ABC):
    """Runs cells; use as a context manager (`start` and `stop` around the submissions)."""

    #: The `--executor` name.
    name: ClassVar[str]

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings

    def resources(self, cell: Cell) -> Resources:
        """What `cell` asks for while it runs (for `--dry-run` and the scheduler)."""
        return resources(cell, self.settings.cpus)

    def needs(self, cell: Cell) -> str:
        """What `cell` asks for, in words, for `--dry-run`."""
        return self.resources(cell).describe(self.settings.slot)

    def describe(self) -> str:
        """Where the cells run, in a few words."""
        return self.name

    def check(self) -> None:
        """Refuse, cheaply and before the results folder is made, an executor that cannot run here at all (a
        library that is not installed); what needs a connection is found by `start`.

        Raises:
            CvaeBenchError: the executor cannot run (the message says how to install what it needs).
        """
        return None  # the local executor needs nothing beyond cvae-bench

    @abstractmethod
    def start(self) -> None:
        """Connect or start what the executor needs.

        Raises:
            CvaeBenchError: the executor cannot run the cells (not installed, no node can hold a cell).
        """

    @abstractmethod
    def stop(self) -> None:
        """Let go of what `start` took; called however the sweep ends."""

    @abstractmethod
    def submit(self, cell: Cell) -> None:
        """Queue `cell` to run."""

    @abstractmethod
    def next_done(self) -> CellOutcome:
        """Block until a submitted cell finishes and return its outcome (a lost node is a failed outcome)."""

    @property
    @abstractmethod
    def in_flight(self) -> int:
        """Cells submitted whose outcome has not been returned yet."""

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
