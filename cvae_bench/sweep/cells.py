"""A sweep's cell: one `run` or `bench` with every parameter fixed, keyed by a stable hash of them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from cvae_bench.core.records import Record

#: The commands a cell can run.
COMMANDS = ("run", "bench")
#: Bumped when the meaning of a parameter changes, so that old keys no longer match new cells.
KEY_VERSION = "cvae-bench-sweep-cell/1"


@dataclass(frozen=True)
class RunParams(Record):
    """How a `run` cell trains (the recipe fixes everything else, batch 64 included)."""

    target: float | None
    max_epochs: int
    epochs: int | None = None
    eval_every: int | None = None
    train_subset: int | None = None
    val_subset: int | None = None


@dataclass(frozen=True)
class BenchParams(Record):
    """What a `bench` cell measures and how long (`BenchOptions`' fields of the same names)."""

    groups: list[str]
    rounds: int
    min_time: float
    warmup: int
    batch_sizes: list[int]
    precisions: list[str]
    train_subset: int | None = None
    epochs: int = 1


@dataclass(frozen=True)
class Cell(Record):
    """One unit of a sweep: a command for one backend in one mode, on one device, with fixed threads.

    Attributes:
        command: "run" (train to the target) or "bench" (the benchmark groups).
        backend, mode: the backend and its mode (None: the backend's default mode).
        device: "cpu" or "cuda".
        threads: threads for every framework; None: every core of the node that runs it.
        seed: the training seed (`run` only; a bench builds its model with seed 0).
        repeat: 0, 1, …: the same parameters again, for the statistics.
        dataset: the data set's registered name.
        run, bench: the command's own parameters (the other is None).
    """

    command: str
    backend: str
    mode: str | None
    device: str
    threads: int | None
    seed: int | None
    repeat: int
    dataset: str
    run: RunParams | None = None
    bench: BenchParams | None = None

    @property
    def key(self) -> str:
        """16 hex digits of the SHA-256 of the parameters' canonical JSON: the same cell, the same key."""
        text = json.dumps([KEY_VERSION, self.to_json()], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def selection(self) -> str:
        """`NAME` or `NAME:MODE`, as `parse_selection` reads it."""
        return f"{self.backend}:{self.mode}" if self.mode else self.backend

    @property
    def label(self) -> str:
        """A human name, e.g. 'run torch:eager cpu threads=2 seed=1 #0'."""
        threads = "all" if self.threads is None else str(self.threads)
        seed = f" seed={self.seed}" if self.seed is not None else ""
        return f"{self.command} {self.selection} {self.device} threads={threads}{seed} #{self.repeat}"


@dataclass(frozen=True)
class Resources(Record):
    """What a cell holds while it runs: one bench slot (a whole node), CPUs (None: the node's) and GPUs."""

    slots: int = 1
    cpus: int | None = None
    gpus: int = 0

    def describe(self, slot_name: str = "bench_slot") -> str:
        """'bench_slot 1, CPU 2, GPU 1'."""
        cpus = "all of the node's" if self.cpus is None else str(self.cpus)
        gpu = f", GPU {self.gpus}" if self.gpus else ""
        return f"{slot_name} {self.slots}, CPU {cpus}{gpu}"


def resources(cell: Cell, cpus: int | None = None) -> Resources:
    """The resources `cell` asks for: a slot, `cpus` (default: its threads) and a GPU for CUDA cells."""
    return Resources(slots=1, cpus=cpus if cpus is not None else cell.threads, gpus=1 if cell.device == "cuda" else 0)


@dataclass(frozen=True)
class ThreadSettings(Record):
    """The fairness audit of a cell's threads: what was asked, what the cell set, what the executor had set.

    Ray sets OMP_NUM_THREADS in its task processes; the cell overrides every framework's thread variables
    for the worker itself (`runtime.threads.thread_env`), as `bench` does, and keeps what it found here.
    """

    requested: int | None
    used: int
    worker_env: dict[str, str] = field(default_factory=dict)
    executor_env: dict[str, str] = field(default_factory=dict)
