"""The contention sentinel: samples from /proc, windows, the load record; idle workers use no CPU."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from cvae_bench.runtime import sentinel as sn
from cvae_bench.runtime.sentinel import LoadSeen, Probe, Sentinel, Tick, summarize_ticks

needs_proc = pytest.mark.skipif(not sn.available(), reason="no /proc on this platform")


def test_summary_of_synthetic_ticks() -> None:
    quiet = [Tick(i, i + 1, 0.05, 0.0, 0.5, {}) for i in range(6)]
    busy = [Tick(6 + i, 7 + i, 1.2, 0.0, 3.0, {(42, "stress"): 1.1}) for i in range(4)]
    seen = summarize_ticks(quiet + busy, threshold=0.3)
    assert seen.samples == 10 and seen.busy and seen.contended_fraction == 0.4
    assert seen.foreign_cpu_max == 1.2 and seen.top[0].name == "stress" and seen.top[0].pid == 42
    assert "BUSY" in seen.line() and "stress(42)" in seen.line()
    assert not summarize_ticks(quiet, 0.3).busy
    assert LoadSeen.from_json(seen.to_json()) == seen


@needs_proc
def test_probe_counts_foreign_cpu_and_not_ours() -> None:
    probe = Probe()
    t_end = time.thread_time() + 0.3
    while time.thread_time() < t_end:  # our own busy work: must not count as foreign
        pass
    tick = probe.sample()
    assert tick.t1 > tick.t0 and tick.foreign >= 0 and 0 <= tick.steal <= 1
    assert os.getpid() not in {pid for pid, _ in tick.top}


@needs_proc
def test_sentinel_windows() -> None:
    with Sentinel(interval=0.05) as s:
        t0 = time.monotonic()
        time.sleep(0.3)
        t1 = time.monotonic()
        s.flush()
    seen = s.seen(t0, t1)
    assert seen.samples >= 3 and seen.seconds > 0
    assert s.contended(t0, t1) == any(t.foreign > s.threshold or t.steal > sn.STEAL_THRESHOLD for t in s.ticks)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_setup(backend: Any, emit: Any, *, cost_s: float) -> Any:
    """Rounds-engine setup for tests: one call burns `cost_s` of CPU time (not wall time) in the worker."""
    from cvae_bench.bench.rounds import Timed

    def burn() -> None:
        end = time.thread_time() + cost_s
        while time.thread_time() < end:
            pass

    return Timed(fn=burn), None


@needs_proc
def test_idle_workers_block_without_spinning() -> None:
    """While one worker times its rounds, the others wait on their pipes: their CPU time stays near zero."""
    from cvae_bench.bench.groups.base import BARE_WORKER
    from cvae_bench.bench.rounds import Contestant, Plan, Schedule
    from cvae_bench.runtime.worker import Worker

    plan = Plan("busy", "test", 1, busy_setup, {"cost_s": 0.002}, 0.02)
    with Worker(BARE_WORKER) as active, Worker(BARE_WORKER) as idle_a, Worker(BARE_WORKER) as idle_b:
        c = Contestant("active", active, plan)
        c.open()
        for w in (idle_a, idle_b):
            Contestant("idle", w, plan).open()
        time.sleep(0.2)
        before = {w.proc.pid: _cpu_seconds(w.proc.pid) for w in (idle_a, idle_b)}
        t0 = time.monotonic()
        schedule = Schedule([c])
        while time.monotonic() - t0 < 1.5:
            schedule.sweep()
        wall = time.monotonic() - t0
        used = {pid: _cpu_seconds(pid) - cpu for pid, cpu in before.items()}
    # generous: a spinning pool would use ~100 % of the wall time; a blocked worker ~0 (clock ticks of 10 ms)
    assert all(u < 0.1 * wall for u in used.values()), used
    assert len(c.round_s) == schedule.sweeps_run >= 5
