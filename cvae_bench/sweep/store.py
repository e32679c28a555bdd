"""The sweep folder: one folder per finished cell, written whole or not at all, and the records in them.

Layout::

    <out>/sweep.toml            the sweep file as last run
    <out>/cells/<key>/cell.json the `CellRecord` (written last, inside the folder)
    <out>/cells/<key>/…         result.json and weights.safetensors, or bench.json and bench.md
    <out>/summary.json, summary.md

A cell's files are written into `cells/.tmp-<key>-…` (each file durably) and the folder is then renamed to
`cells/<key>`: a crash leaves either no folder for the cell, and it runs again, or the whole folder.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.core.records import Record
from cvae_bench.runtime.files import FolderLock, ensure_dir, fsync_dir, read_json, write_bytes, write_json, write_text
from cvae_bench.runtime.machine import MachineFingerprint
from cvae_bench.sweep.cells import Cell, ThreadSettings
from cvae_bench.sweep.execute import CellOutcome

CELL_FILE = "cell.json"


@dataclass(frozen=True)
class CellRecord(Record):
    """cell.json: the cell, how it ended, where and how long, and every attempt's error.

    Attributes:
        key: the cell's key (its folder's name).
        label: its human name.
        cell: its parameters.
        status: `execute.CELL_STATUSES`.
        attempts: how many times it was run (a lost node counts).
        errors: the error of each failed attempt, in order.
        summary: one line on the outcome.
        deviant: a run that trained unlike the recipe (shown, never ranked).
        machine: the node's fingerprint; node: its host name.
        seconds: wall time of the last attempt on the node.
        threads: the fairness audit of its threads.
        executor: "local" or "ray".
        files: the files beside cell.json.
        finished: when the driver wrote it (UTC).
    """

    key: str
    label: str
    cell: Cell
    status: str
    attempts: int
    errors: list[str]
    summary: str
    deviant: bool
    machine: MachineFingerprint | None
    node: str
    seconds: float
    threads: ThreadSettings | None
    executor: str
    files: list[str]
    finished: str


class SweepStore:
    """A sweep's results folder, held by one driver at a time."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.cells = self.folder / "cells"
        self._lock: FolderLock | None = None

    def open(self, sweep_text: str) -> None:
        """Create and lock the folder, remove what a killed driver left half-written, keep the sweep file.

        Raises:
            CvaeBenchError: another living process drives this sweep, or the folder is not writable.
        """
        ensure_dir(self.cells)
        self._lock = FolderLock(self.folder)
        self._lock.acquire()
        for leftover in self.cells.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        write_text(self.folder / "sweep.toml", sweep_text)

    def close(self) -> None:
        """Release the folder."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, key: str) -> CellRecord | None:
        """The record of the cell `key`, or None when it has not finished (or its record is unreadable)."""
        path = self.cells / key / CELL_FILE
        try:
            return CellRecord.from_json(read_json(path))
        except CvaeBenchError:  # missing, not strict JSON, or not a cell record: the cell runs again
            return None

    def records(self) -> list[CellRecord]:
        """Every finished cell's record, by key."""
        if not self.cells.is_dir():
            return []
        found = (self.record(p.name) for p in sorted(self.cells.iterdir()) if not p.name.startswith("."))
        return [r for r in found if r is not None]

    def write(self, outcome: CellOutcome, attempts: int, errors: list[str], executor: str) -> CellRecord:
        """Write a cell's files and its record as one folder, atomically; replaces an older record.

        Returns:
            The record written.
        """
        key = outcome.cell.key
        record = CellRecord(
            key=key,
            label=outcome.cell.label,
            cell=outcome.cell,
            status=outcome.status,
            attempts=attempts,
            errors=errors,
            summary=outcome.summary,
            deviant=outcome.deviant,
            machine=outcome.machine,
            node=outcome.node,
            seconds=round(outcome.seconds, 3),
            threads=outcome.threads,
            executor=executor,
            files=sorted(outcome.files),
            finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=self.cells))
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; give it a plain mkdir's permissions
            for name, data in outcome.files.items():
                write_bytes(tmp / name, data)
            write_json(tmp / CELL_FILE, record.to_json())
            fsync_dir(tmp)
            final = self.cells / key
            if final.exists():  # an older record (a failed cell run again): move it aside, then drop it
                old = Path(tempfile.mkdtemp(prefix=f".tmp-old-{key}-", dir=self.cells))
                os.replace(final, old / key)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
            fsync_dir(self.cells)
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
        return record
