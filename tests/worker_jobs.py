"""Jobs the worker tests run inside a worker process."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from cvae_bench.core.errors import DataError


def chatty(backend: Any, emit: Any, n: int) -> int:
    """Prints to stdout (which must not corrupt the protocol) and emits n events."""
    for i in range(n):
        print(f"noise {i}")
        sys.stdout.flush()
        emit({"i": i})
    return n


def die(backend: Any, emit: Any) -> None:
    """The worker is killed from inside, after a word on stderr."""
    print("about to be killed", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def hang(backend: Any, emit: Any, seconds: float) -> None:
    """Never answers in time."""
    time.sleep(seconds)


def raise_ours(backend: Any, emit: Any) -> None:
    """Raises one of cvae-bench's errors."""
    raise DataError("the data went missing")


def raise_other(backend: Any, emit: Any) -> None:
    """Raises a foreign error."""
    raise ValueError("bad value")
