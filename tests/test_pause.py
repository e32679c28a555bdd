"""Idle workers stopped between their rounds, under every framework's own defaults, and watched.

No timing is asserted: CPU seconds read from /proc against generous bounds (a stopped process uses none; a
working one uses most of the wall time it is given).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from cvae_bench.bench.rounds import Contestant, Plan, Schedule, Timed
from cvae_bench.runtime import sentinel as sn
from cvae_bench.runtime.pause import IdleWatch, cpu_seconds, process_tree, worked_while_idle

needs_proc = pytest.mark.skipif(not sn.available(), reason="no /proc on this platform")


def spinning_setup(backend: Any, emit: Any) -> tuple[Timed, None]:
    """A worker that keeps working while idle, as a plugin that left its step running in a thread does: a
    background thread burns CPU for as long as the process lives."""

    def spin() -> None:
        while True:
            pass

    threading.Thread(target=spin, daemon=True).start()
    return Timed(fn=lambda: sum(range(1000))), None


def torch_setup(backend: Any, emit: Any) -> tuple[Timed, None]:
    """torch at its own defaults (no OMP_WAIT_POLICY): matmuls on its OpenMP pool, whose threads spin after each
    parallel region unless the process is stopped."""
    import torch

    a = torch.randn(256, 256)

    def call() -> None:
        (a @ a).sum().item()

    return Timed(fn=call), None


def test_the_flag_allows_what_a_stop_leaves_and_nothing_more() -> None:
    assert not worked_while_idle(0.0, 10.0)
    assert not worked_while_idle(0.02, 0.5)  # a couple of scheduler ticks around the stop
    assert not worked_while_idle(0.09, 10.0)  # under 1 % of the idle time
    assert worked_while_idle(0.5, 10.0)
    assert worked_while_idle(0.05, 1.0)


@needs_proc
def test_a_stopped_process_tree_uses_no_cpu_and_is_counted() -> None:
    # A parent that burns CPU with a child that burns CPU: both stop, both are continued.
    code = "import os,time\nif os.fork()==0:\n    while True: pass\nwhile True: pass\n"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while len(process_tree(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        tree = process_tree(proc.pid)
        assert len(tree) == 2, tree
        watch = IdleWatch(proc.pid)
        watch.pause()
        time.sleep(0.1)  # let the stop land
        before = cpu_seconds(tree)
        time.sleep(0.5)
        assert cpu_seconds(tree) - before < 0.05  # stopped: nothing runs
        watch.resume()
        assert watch.pauses == 1 and watch.idle_s >= 0.5
        time.sleep(0.3)
        assert cpu_seconds(tree) - before > 0.1  # continued: it runs again
    finally:
        for pid in process_tree(proc.pid)[::-1]:
            os.kill(pid, signal.SIGKILL)
        proc.wait()


@needs_proc
def test_idle_torch_workers_at_their_defaults_are_stopped_between_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The idle-CPU test under the defaults: torch workers with no wait policy, timed in turn; every worker's
    CPU while the other was timed is what a stopped process shows."""
    pytest.importorskip("torch")
    from cvae_bench.bench.groups.base import BARE_WORKER
    from cvae_bench.runtime.worker import Worker

    plan = Plan("mm", "test", 1, torch_setup, {}, 0.05)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # the suite's own setting (conftest.py): not here
    with Worker(BARE_WORKER) as w1, Worker(BARE_WORKER) as w2:
        a, b = Contestant("a", w1, plan), Contestant("b", w2, plan)
        _one_epoch([a, b], sweeps=8)
    for c in (a, b):
        rec = c.idle_record()
        assert rec.idle_s > 0 and rec.pauses >= 8
        assert not rec.worked, rec
        assert rec.cpu_s <= 0.05 + 0.01 * rec.idle_s, rec


@needs_proc
def test_a_worker_whose_work_escapes_the_stop_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping is what makes idle workers harmless; when it fails (here: the stop is disabled), the CPU the
    worker used meanwhile is seen and the entry is flagged."""
    from cvae_bench.bench.groups.base import BARE_WORKER
    from cvae_bench.runtime import pause
    from cvae_bench.runtime.worker import Worker

    real_kill = os.kill
    monkeypatch.setattr(
        pause.os, "kill", lambda pid, sig: None if sig == signal.SIGSTOP else real_kill(pid, sig), raising=True
    )
    busy = Plan("busy", "test", 1, spinning_setup, {}, 0.05)
    quiet = Plan("quiet", "test", 1, torch_setup if _has_torch() else spinning_setup, {}, 0.05)
    with Worker(BARE_WORKER) as w1, Worker(BARE_WORKER) as w2:
        spinner, other = Contestant("spinner", w1, busy), Contestant("other", w2, quiet)
        _one_epoch([spinner, other], sweeps=6)
    assert spinner.idle_record().worked, spinner.idle_record()


def _one_epoch(contestants: list[Contestant], sweeps: int) -> None:
    """Open every contestant, then time one epoch of `sweeps` interleaved sweeps, idle workers stopped."""
    for c in contestants:
        c.open()
    schedule = Schedule(contestants)
    schedule.begin_epoch(0, {c.label: c.host for c in contestants})
    for _ in range(sweeps):
        schedule.sweep()
    schedule.end_epoch()


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None
