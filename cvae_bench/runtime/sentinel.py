"""The contention sentinel: a background thread that samples the machine while work is timed.

Every `interval` seconds it reads /proc/stat (all CPU time, and the time stolen by a hypervisor), the load
average, and /proc/<pid>/stat of every process, and counts as *foreign* the CPU time spent outside this
process and its descendants (the workers and whatever they spawn): foreign = all busy time − our tree's.
Short-lived foreign processes count too, since /proc/stat keeps their time after they exit. A window of
work (a timed round, a training run) is *contended* when a sample overlapping it saw foreign CPU above
`threshold` cores or steal above `STEAL_THRESHOLD`; `seen(t0, t1)` gives the load over a window as a
`LoadSeen` record, which result.json, comparison.json and bench.json carry.

Cost: one pass over /proc takes ~8 ms on a loaded 2-core machine with ~90 processes, so the default
half-second interval costs under 2 % of one core, spent in the parent while the workers time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cvae_bench.core.records import Record
from cvae_bench.runtime import signals
from cvae_bench.runtime.machine import BusyProcess

#: Foreign CPU (cores) above which a sample counts as contended: a third of a core, well above the few
#: percent that system daemons use and well below one busy competitor.
DEFAULT_THRESHOLD = 0.3
#: Share of CPU time stolen by the hypervisor above which a sample counts as contended.
STEAL_THRESHOLD = 0.05
#: Seconds between samples.
DEFAULT_INTERVAL = 0.5

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Tick:
    """One sample: the window (monotonic seconds) it covers and what ran in it."""

    t0: float
    t1: float
    foreign: float  # cores used outside our process tree
    steal: float  # share of all CPU time stolen
    loadavg: float | None
    top: dict[tuple[int, str], float]  # foreign processes' CPU seconds in the window


@dataclass(frozen=True)
class LoadSeen(Record):
    """The load on the machine during a piece of work, as the sentinel saw it.

    Attributes:
        seconds: the window's length; samples: how many samples covered it.
        foreign_cpu_mean, foreign_cpu_max: cores used by processes outside this run (mean, worst sample).
        steal_mean: share of CPU time stolen by the hypervisor.
        loadavg_max: the highest 1-minute load average seen.
        cores: the machine's cores; threshold: foreign cores above which a sample is contended.
        contended_fraction: share of samples above the threshold (or the steal threshold).
        busy: whether the work counts as contended (a quarter of its samples or more were).
        top: the foreign processes that used the most CPU, as a share of one core over the window.
    """

    seconds: float
    samples: int
    foreign_cpu_mean: float
    foreign_cpu_max: float
    steal_mean: float
    loadavg_max: float | None
    cores: int
    threshold: float
    contended_fraction: float
    busy: bool
    top: list[BusyProcess] = field(default_factory=list)

    def line(self) -> str:
        """'busy: other processes used 1.4 cores (max 2.0; load 11.9; python(123) 95%)' or 'quiet: …'."""
        top = ", ".join(f"{p.name}({p.pid}) {p.cpu:.0%}" for p in self.top[:3]) or "none"
        load = f"load {self.loadavg_max:.1f}; " if self.loadavg_max is not None else ""
        steal = f"steal {self.steal_mean:.0%}; " if self.steal_mean >= 0.005 else ""
        what = "BUSY" if self.busy else "quiet"
        return (
            f"{what}: other processes used {self.foreign_cpu_mean:.2f} cores of {self.cores} "
            f"(max {self.foreign_cpu_max:.2f}; {load}{steal}top: {top})"
        )


def _read_stat_cpu() -> tuple[int, int, int]:
    """(busy, total, steal) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    values = [int(v) for v in parts[:8]] + [0] * (8 - min(8, len(parts)))
    user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait + steal, steal


def _read_procs() -> dict[int, tuple[str, int, int]]:
    """pid -> (name, ppid, CPU jiffies of the process itself)."""
    out: dict[int, tuple[str, int, int]] = {}
    with os.scandir("/proc") as it:
        for d in it:
            if not d.name.isdigit():
                continue
            try:
                with open(f"/proc/{d.name}/stat", "rb") as f:
                    raw = f.read().decode(errors="replace")
            except OSError:
                continue
            lp, rp = raw.find("("), raw.rfind(")")
            fields = raw[rp + 2 :].split()
            out[int(d.name)] = (raw[lp + 1 : rp], int(fields[1]), int(fields[11]) + int(fields[12]))
    return out


def _tree(procs: dict[int, tuple[str, int, int]], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    seen, stack = {root}, [root]
    while stack:
        for c in children.get(stack.pop(), []):
            if c not in seen:
                seen.add(c)
                stack.append(c)
    return seen


def available() -> bool:
    """Whether this machine exposes what the sentinel reads (/proc/stat and /proc/<pid>/stat)."""
    return Path("/proc/stat").is_file() and Path(f"/proc/{os.getpid()}/stat").is_file()


class Probe:
    """Takes one sample against the previous one (the sentinel's step, also usable without a thread)."""

    def __init__(self, root: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root or os.getpid()
        self.clock = clock
        self._last = self._read()

    def _read(self) -> tuple[float, tuple[int, int, int], dict[int, tuple[str, int, int]]]:
        return self.clock(), _read_stat_cpu(), _read_procs()

    def sample(self) -> Tick:
        """The load since the previous sample."""
        t0, (busy0, total0, steal0), procs0 = self._last
        now = self._read()
        t1, (busy1, total1, steal1), procs1 = now
        self._last = now
        dt = max(t1 - t0, 1e-6)
        ours = _tree(procs1, self.root) | _tree(procs0, self.root)
        own = sum(procs1[p][2] - procs0[p][2] for p in ours if p in procs1 and p in procs0)
        foreign = max(0, (busy1 - busy0) - own) / _TICK / dt
        top = {
            (pid, name): (j - procs0[pid][2]) / _TICK
            for pid, (name, _, j) in procs1.items()
            if pid not in ours and pid in procs0 and j > procs0[pid][2]
        }
        d_total = total1 - total0
        steal = (steal1 - steal0) / d_total if d_total > 0 else 0.0
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        return Tick(t0=t0, t1=t1, foreign=foreign, steal=steal, loadavg=load, top=top)


class Sentinel:
    """A background sampler of foreign load; see the module docstring.

    Use as a context manager (or `start`/`stop`); `seen(t0, t1)` and `contended(t0, t1)` read the samples
    that overlap a window of `time.monotonic()` seconds. Where /proc is missing it samples nothing, and
    every window reads as quiet with no samples.

    Args:
        interval: seconds between samples.
        threshold: foreign cores above which a sample is contended.
        root: the process whose tree is "ours" (default: this process).
    """

    def __init__(
        self, interval: float = DEFAULT_INTERVAL, threshold: float = DEFAULT_THRESHOLD, root: int | None = None
    ) -> None:
        self.interval = interval
        self.threshold = threshold
        self.root = root or os.getpid()
        self.ticks: list[Tick] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.started = time.monotonic()

    def start(self) -> Sentinel:
        """Start sampling (a daemon thread)."""
        if self._thread is None and available():
            self._thread = threading.Thread(target=self._loop, daemon=True, name="cvae-bench-sentinel")
            self._thread.start()
        self.started = time.monotonic()
        return self

    def _loop(self) -> None:
        signals.main_thread_only()  # a stop must wake the main thread, not this one
        probe = Probe(self.root)
        while not self._stop.wait(self.interval):
            try:
                tick = probe.sample()
            except (OSError, ValueError, IndexError):
                continue
            with self._lock:
                self.ticks.append(tick)

    def flush(self) -> None:
        """Wait until a sample ends after now, so that a window that just closed is covered."""
        if self._thread is None:
            return
        now = time.monotonic()
        deadline = now + 3 * self.interval
        while time.monotonic() < deadline:
            with self._lock:
                if self.ticks and self.ticks[-1].t1 >= now:
                    return
            time.sleep(self.interval / 5)

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.interval + 1)

    def __enter__(self) -> Sentinel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _overlapping(self, t0: float | None, t1: float | None) -> list[Tick]:
        with self._lock:
            ticks = list(self.ticks)
        lo = -float("inf") if t0 is None else t0
        hi = float("inf") if t1 is None else t1
        return [t for t in ticks if t.t1 > lo and t.t0 < hi]

    def _hot(self, tick: Tick) -> bool:
        return tick.foreign > self.threshold or tick.steal > STEAL_THRESHOLD

    def contended(self, t0: float, t1: float) -> bool:
        """Whether any sample overlapping [t0, t1] saw foreign load above the threshold."""
        return any(self._hot(t) for t in self._overlapping(t0, t1))

    def seen(self, t0: float | None = None, t1: float | None = None) -> LoadSeen:
        """The load over [t0, t1] (default: everything sampled)."""
        return summarize_ticks(self._overlapping(t0, t1), self.threshold, t0, t1)


def summarize_ticks(ticks: list[Tick], threshold: float, t0: float | None = None, t1: float | None = None) -> LoadSeen:
    """The `LoadSeen` record of a list of samples."""
    cores = os.cpu_count() or 1
    if not ticks:
        return LoadSeen(0.0, 0, 0.0, 0.0, 0.0, None, cores, threshold, 0.0, False)
    start = ticks[0].t0 if t0 is None else max(t0, ticks[0].t0)
    end = ticks[-1].t1 if t1 is None else min(t1, ticks[-1].t1)
    span = sum(t.t1 - t.t0 for t in ticks) or 1e-9
    top: dict[tuple[int, str], float] = {}
    for t in ticks:
        for key, sec in t.top.items():
            top[key] = top.get(key, 0.0) + sec
    hot = sum(t.foreign > threshold or t.steal > STEAL_THRESHOLD for t in ticks) / len(ticks)
    loads = [t.loadavg for t in ticks if t.loadavg is not None]
    busiest = sorted(top.items(), key=lambda kv: -kv[1])[:5]
    return LoadSeen(
        seconds=round(max(0.0, end - start), 3),
        samples=len(ticks),
        foreign_cpu_mean=round(sum(t.foreign * (t.t1 - t.t0) for t in ticks) / span, 3),
        foreign_cpu_max=round(max(t.foreign for t in ticks), 3),
        steal_mean=round(sum(t.steal for t in ticks) / len(ticks), 4),
        loadavg_max=max(loads) if loads else None,
        cores=cores,
        threshold=threshold,
        contended_fraction=round(hot, 3),
        busy=hot >= 0.25,
        top=[BusyProcess(pid=pid, name=name, cpu=round(sec / span, 2)) for (pid, name), sec in busiest if sec > 0],
    )


def wait_quiet(
    seconds: float,
    threshold: float = DEFAULT_THRESHOLD,
    settle: float = 2.0,
    interval: float = DEFAULT_INTERVAL,
    on_wait: Callable[[Tick], None] | None = None,
) -> tuple[bool, float]:
    """Wait up to `seconds` until foreign load stays under `threshold` for `settle` seconds.

    Returns:
        (whether the machine became quiet, seconds waited).
    """
    t_start = time.monotonic()
    if not available():
        return True, 0.0
    probe = Probe()
    quiet_since: float | None = None
    while True:
        time.sleep(interval)
        tick = probe.sample()
        if tick.foreign <= threshold and tick.steal <= STEAL_THRESHOLD:
            quiet_since = tick.t0 if quiet_since is None else quiet_since
            if tick.t1 - quiet_since >= settle:
                return True, time.monotonic() - t_start
        else:
            quiet_since = None
            if on_wait is not None:
                on_wait(tick)
        if time.monotonic() - t_start >= seconds:
            return False, time.monotonic() - t_start
