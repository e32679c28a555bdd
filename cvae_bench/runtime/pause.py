"""Idle workers stopped, and watched: SIGSTOP while another contestant is timed, SIGCONT for their own rounds.

Why stop them. A worker waiting for its next request should cost the timed one nothing, but a framework's
idle threads may not be idle: torch's OpenMP pool spins after each parallel region by default (GNU OpenMP's
`OMP_WAIT_POLICY`), TensorFlow's and XLA's Eigen pools spin briefly, and a plugin may leave work running in a
thread of its own (an asynchronous step it never waited for). The harness once made every worker passive
(`OMP_WAIT_POLICY=PASSIVE`), which changes torch and no one else and made a plain torch loop 1.3–1.9× slower
on a 2-vCPU VM. Stopping the whole process tree between its rounds keeps each framework at its own defaults
and guarantees that only the timed worker runs: a stopped process gets no CPU at all.

Why watch them as well. A stopped process cannot work, so the CPU time a worker's tree used between its
rounds (read from /proc around every other contestant's round) should be zero; if it is not (a process the
tree spawned outside it, a kernel that delays the stop), the bench says so and withholds that worker's
verdicts instead of trusting it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from cvae_bench.core.records import Record

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

#: Idle CPU a worker may show before it counts as working while idle: 20 ms in all (a few scheduler ticks
#: of signal delivery), or 1 % of the time it was idle, whichever is larger.
IDLE_CPU_FLOOR_S = 0.02
IDLE_CPU_FRACTION = 0.01


def process_tree(pid: int) -> list[int]:
    """`pid` and every descendant alive now (from /proc/<pid>/task/<tid>/children; only `pid` where that is
    not available)."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
            except OSError:
                continue
    return out


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of `pids` (every thread of each); gone ones count 0.

    From each thread's /proc/<pid>/task/<tid>/schedstat (nanoseconds on the CPU): /proc/<pid>/stat counts in
    clock ticks of 10 ms, and a stop between two readings would then show up to a tick of CPU it never used.
    Falls back to /proc/<pid>/stat where schedstat is missing.
    """
    total = 0.0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        try:
            for tid in tids:
                with (
                    contextlib.suppress(FileNotFoundError, ProcessLookupError),
                    open(f"/proc/{pid}/task/{tid}/schedstat") as f,
                ):
                    total += int(f.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            total += _stat_seconds(pid)
    return total


def _stat_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return 0.0
    fields = raw[raw.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _all_stopped(pid: int) -> bool:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True  # gone
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if raw[raw.rfind(b")") + 2 : raw.rfind(b")") + 3] not in (b"T", b"t", b"Z", b"X"):
            return False
    return True


def wait_stopped(pids: list[int], timeout: float = 0.05) -> bool:
    """Wait (at most `timeout` seconds) until every thread of `pids` is stopped; whether they all are."""
    deadline = time.monotonic() + timeout
    while True:
        if all(_all_stopped(p) for p in pids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.0002)


@dataclass(frozen=True)
class IdleRecord(Record):
    """What a worker did while it was not being timed.

    Attributes:
        idle_s: seconds it spent stopped between rounds; cpu_s: CPU seconds its process tree used meanwhile.
        pauses: how many times it was stopped; worked: whether `cpu_s` exceeds what stopping allows
            (`IDLE_CPU_FLOOR_S`, or `IDLE_CPU_FRACTION` of `idle_s`): its results then carry no verdict.
    """

    idle_s: float
    cpu_s: float
    pauses: int
    worked: bool

    @classmethod
    def of(cls, idle_s: float, cpu_s: float, pauses: int) -> IdleRecord:
        """The record of `pauses` stops totalling `idle_s`, in which the process tree used `cpu_s` of CPU."""
        return cls(round(idle_s, 3), round(cpu_s, 3), pauses, worked_while_idle(cpu_s, idle_s))


def worked_while_idle(cpu_s: float, idle_s: float) -> bool:
    """Whether `cpu_s` of CPU over `idle_s` of idleness is more than a stopped process can show."""
    return cpu_s > max(IDLE_CPU_FLOOR_S, IDLE_CPU_FRACTION * idle_s)


class IdleWatch:
    """Stops and continues one worker's process tree, and adds up the CPU it used while stopped.

    Args:
        pid: the worker's process id.
        clock: the wall clock (tests pass a fake one).
    """

    def __init__(self, pid: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.pid = pid
        self.clock = clock
        self.paused = False
        self.idle_s = 0.0
        self.cpu_s = 0.0
        self.pauses = 0
        self._since = 0.0
        self._cpu_at_pause = 0.0
        self._stopped: list[int] = []

    def pause(self) -> None:
        """Stop the worker and its descendants (idempotent)."""
        if self.paused:
            return
        self._stopped = process_tree(self.pid)
        for p in self._stopped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGSTOP)
        # A stop lands asynchronously: the baseline is read once every thread has stopped, so that the work
        # done between the signal and the stop (a pool spinning down) is not counted as work done while idle.
        wait_stopped(self._stopped)
        self._cpu_at_pause = cpu_seconds(self._stopped)
        self._since = self.clock()
        self.paused = True
        self.pauses += 1

    def resume(self) -> None:
        """Continue what `pause` stopped, and count the CPU it used meanwhile (idempotent)."""
        if not self.paused:
            return
        # Counted before the continue: from here on the tree may run, and that is its own round's time.
        used = cpu_seconds(process_tree(self.pid)) - self._cpu_at_pause
        for p in reversed(self._stopped):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGCONT)
        self.idle_s += self.clock() - self._since
        self.cpu_s += max(0.0, used)
        self.paused = False

    def record(self) -> IdleRecord:
        """What the worker did while stopped, so far."""
        return IdleRecord.of(self.idle_s, self.cpu_s, self.pauses)
