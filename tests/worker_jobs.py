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


def tuned_state(backend: Any, emit: Any, names: list[str]) -> dict[str, Any]:
    """What the tuning knobs did in this worker: the environment variables asked about, torch's oneDNN switch,
    whether a denormal survives a multiplication (it does not under flush-to-zero), and the cores it may use."""
    import torch

    return {
        "env": {n: os.environ.get(n) for n in names},
        "mkldnn": bool(torch.backends.mkldnn.enabled),
        "denormal_survives": (torch.tensor([1e-39], dtype=torch.float32) * 1.0).item() != 0.0,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
