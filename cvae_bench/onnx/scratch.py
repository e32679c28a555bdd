"""Scratch folders of the ONNX pipeline that leave nothing behind, even after a killed export.

Each folder is named `cvae-bench-<kind>-<pid>-<random>` in the system's temp folder and removed when its
block ends, however it ends. A process killed with SIGKILL runs no cleanup, so every new scratch folder
first removes the folders of processes that no longer exist.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

PREFIX = "cvae-bench-"
_NAME = re.compile(rf"^{re.escape(PREFIX)}(?:export|int8)-(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to touch
        return True
    return True


def sweep_stale(folder: str | Path | None = None) -> list[Path]:
    """Remove the scratch folders left by dead processes in `folder` (default: the temp folder).

    Returns:
        The folders removed.
    """
    root = Path(folder or tempfile.gettempdir())
    removed = []
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            match = _NAME.match(entry.name)
            if match and entry.is_dir() and not _alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


@contextlib.contextmanager
def scratch_dir(kind: str) -> Iterator[Path]:
    """A fresh scratch folder for `kind` ("export" or "int8"), removed when the block ends."""
    sweep_stale()
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-{os.getpid()}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
