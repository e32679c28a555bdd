"""The default executor: every cell on this machine, one at a time, each backend in a worker of its own."""

from __future__ import annotations

import platform
from collections import deque

from cvae_bench.sweep.cells import Cell
from cvae_bench.sweep.execute import CellOutcome, execute_cell
from cvae_bench.sweep.executors.base import Executor, ExecutorSettings


class LocalExecutor(Executor):
    """Runs each cell in this process when its outcome is asked for: one measurement at a time."""

    name = "local"

    def __init__(self, settings: ExecutorSettings) -> None:
        super().__init__(settings)
        self._queue: deque[Cell] = deque()

    def describe(self) -> str:
        """'local (hostname), one cell at a time'."""
        return f"local ({platform.node()}), one cell at a time"

    def needs(self, cell: Cell) -> str:
        """'this machine alone, 2 thread(s)': cells run one at a time, so each has the machine to itself."""
        threads = "every core" if cell.threads is None else f"{cell.threads} thread(s)"
        return f"this machine alone, {threads}" + (", GPU 1" if cell.device == "cuda" else "")

    def start(self) -> None:
        """Nothing to start: cells run in this process."""

    def stop(self) -> None:
        """Drop the cells not run (an interrupted sweep)."""
        self._queue.clear()

    def submit(self, cell: Cell) -> None:
        """Queue `cell`; it runs when `next_done` reaches it."""
        self._queue.append(cell)

    def next_done(self) -> CellOutcome:
        """Run the next queued cell here and return its outcome."""
        cell = self._queue.popleft()
        return execute_cell(cell, self.settings.data_path, self.settings.idle_timeout)

    @property
    def in_flight(self) -> int:
        """Queued cells."""
        return len(self._queue)
