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


#: What `wire_events` sends, in order: events the parent has records for, a novel one and one half-formed.
WIRE_EVENTS: list[dict[str, Any]] = [
    {"type": "stage", "what": "first step"},
    {"type": "bench", "what": "decode batch 64", "median_s": 0.002},
    {"type": "ceiling", "shape": "64x784x512", "numpy": 1e-4, "torch": 8e-5},
    {"type": "progress", "step": 100, "epoch": 0.2, "loss": 180.5, "steps_per_s": 900.0},
    {"type": "diverged", "step": 7, "what": "training loss", "value": "nan"},
    {"type": "novel", "figures": {"a": [1, 2]}, "note": "from a newer worker"},
    {"type": "eval", "epoch": 1.0},
]


def wire_events(backend: Any, emit: Any) -> int:
    """Emits `WIRE_EVENTS` as they are (the wire format), then returns how many."""
    for event in WIRE_EVENTS:
        emit(event)
    return len(WIRE_EVENTS)


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


def audit_errors(backend: Any, emit: Any, steps: int, every: int, seed: int = 0) -> dict[str, list[float]]:
    """Train `steps` steps on full MNIST as a run does and replay every `every`-th with the float64 reference
    (training.replay, the audit's own): the float32 error of each comparison at each replayed step, before any
    tolerance. The margins of `AUDIT_TOLERANCES` come from these (tests/test_audit.py, the slow margins test)."""
    import math

    import numpy as np

    from cvae_bench.testing.support import load_mnist
    from cvae_bench.training.replay import Scratch, Snapshot, replay_step

    x, y, _, _ = load_mnist()
    spec, b = backend.spec, backend.spec.batch_size
    per_epoch = math.ceil(len(x) / b)
    rng = np.random.default_rng(seed)
    backend.load_train_data(x, y)
    found: dict[str, list[float]] = {"step": [], "loss": [], "weights": [], "m": [], "v": [], "shrink": []}
    order, scratch = np.arange(0), Scratch()
    for step in range(steps):
        index = step % per_epoch
        if index == 0:
            order = rng.permutation(len(x))
            backend.set_order(order)
        if step == 0 or ((step + 1) % every and index != per_epoch - 1):
            backend.train_step(index)
            continue
        backend.take_loss()
        before = Snapshot.of(backend)
        backend.train_step(index)
        loss = backend.take_loss()
        eps = np.asarray(backend.last_train_noise(), np.float32)
        rows = order[index * b : (index + 1) * b]
        got = replay_step(before, Snapshot.of(backend), x[rows], y[rows], eps, loss, spec, scratch)
        found["step"].append(step)
        found["loss"].append(abs(got.loss - got.reference_loss) / abs(got.reference_loss))
        found["weights"].append(got.weights[0])
        found["m"].append(got.m[0])
        found["v"].append(got.v[0])
        found["shrink"].append(abs(got.shrink))
        emit({"step": step, "weights": got.weights, "v": got.v})
    return found


def silent_stage(backend: Any, emit: Any, seconds: float) -> str:
    """Announces a stage that reports nothing, then works silently for longer than the idle limit."""
    emit({"type": "stage", "what": "loading"})
    time.sleep(seconds)
    return "done"


#: Bytes of the array `big_array_setup`'s call allocates: far above any worker's noise.
BIG_ARRAY_BYTES = 200 * 1024 * 1024


def big_array_setup(backend: Any, emit: Any) -> tuple[Any, None]:
    """A timed call (for the rounds engine) that allocates and touches a 200 MiB array, then frees it."""
    import numpy as np

    from cvae_bench.bench.rounds import Timed

    def call() -> None:
        a = np.ones(BIG_ARRAY_BYTES, dtype=np.uint8)  # np.ones writes every page: all of it is resident
        del a

    return Timed(fn=call), None


def allocate(backend: Any, emit: Any, nbytes: int) -> int:
    """Allocates and touches `nbytes`, then frees them (a run's transient peak)."""
    import numpy as np

    return int(np.ones(nbytes, dtype=np.uint8).sum())
