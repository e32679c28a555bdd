"""Reading a process's memory: resident set now, its peak per phase, and the accelerators' own peaks.

The peak of a phase comes from the kernel: `VmHWM` in /proc/<pid>/status is the process's high-water resident
set, and writing "5" to /proc/<pid>/clear_refs resets it to the current resident set (Linux ≥ 4.0), so every
phase starts its own peak. Nothing samples, so a short spike is never missed and the timed code is not
disturbed. Where the reset is refused (a container's read-only /proc, another OS), a daemon thread samples
the resident set (/proc, else psutil where installed) every `SAMPLE_PERIOD` seconds instead and the record
says so (`method`).

Worker side. A worker marks its resident set after the framework import (`mark(AFTER_IMPORT)`) and after a
call's setup built the model and loaded the data (`mark(AFTER_BUILD)`); the rounds engine wraps every batch of
timed rounds in `track(key)`, which keeps the peak of each key. `memory_job` hands all of it to the parent
and `baseline_job`, run in a bare worker, gives the resident set of the same worker code without a framework.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cvae_bench.core.memory import MemoryFigures

#: `method` when the kernel keeps the peak (VmHWM, reset per phase through clear_refs).
METHOD_HWM = "vmhwm"
#: `method` when a thread samples the resident set (the reset was refused).
METHOD_SAMPLED = "sampled"
#: Seconds between two samples of the fallback thread.
SAMPLE_PERIOD = 0.005

#: Marks a worker records (`mark`).
START = "start"
AFTER_IMPORT = "after_import"
AFTER_BUILD = "after_build"


def _status(pid: int | None, field: str) -> int | None:
    """A `kB` field of /proc/<pid>/status in bytes (None: no such file or field)."""
    try:
        text = Path(f"/proc/{pid or 'self'}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def rss(pid: int | None = None) -> int:
    """The resident set of `pid` (default: this process) in bytes."""
    value = _status(pid, "VmRSS")
    if value is not None:
        return value
    try:  # no /proc (macOS, Windows): psutil where it is installed (an optional package, not a dependency)
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        if pid is not None and pid != os.getpid():
            raise OSError(f"cannot read the memory of process {pid}: no /proc and no psutil") from None
        import resource  # the process's own peak: the best this OS offers without psutil

        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kB elsewhere
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale
    return int(psutil.Process(pid).memory_info().rss)


def hwm(pid: int | None = None) -> int | None:
    """The kernel's high-water resident set of `pid` since it started or since `reset_hwm` (None: not Linux)."""
    return _status(pid, "VmHWM")


def reset_hwm(pid: int | None = None) -> bool:
    """Reset `pid`'s high-water mark to its current resident set; False where the kernel refuses it."""
    try:
        with open(f"/proc/{pid or 'self'}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _method_for(pid: int | None) -> str:
    """`METHOD_HWM` where the kernel keeps `pid`'s peak and lets it be reset, else `METHOD_SAMPLED`."""
    return METHOD_HWM if hwm(pid) is not None and reset_hwm(pid) else METHOD_SAMPLED


@functools.cache
def _own_method() -> str:
    # Asked once per process: whether clear_refs may be written does not change while it runs.
    return _method_for(None)


class PeakMeter:
    """The peak resident set of a process over one phase (`start`, then `stop`), by `method`.

    Args:
        pid: the process (default: this one).
    """

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid
        self.method = _own_method() if pid is None else _method_for(pid)
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin the phase: reset the kernel's mark, or start the sampling thread."""
        if self.method == METHOD_HWM:
            reset_hwm(self.pid)
            return
        self._peak = rss(self.pid)
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="rss-sampler")
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_PERIOD):
            with contextlib.suppress(Exception):  # the process may have gone: keep the last peak
                self._peak = max(self._peak, rss(self.pid))

    def stop(self) -> int:
        """End the phase; returns its peak resident set in bytes (at least the resident set now)."""
        now = rss(self.pid)
        if self.method == METHOD_HWM:
            return max(hwm(self.pid) or 0, now)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return max(self._peak, now)


def device_peak() -> int | None:
    """The peak device memory of the frameworks already loaded in this process (None: no accelerator).

    Only frameworks that are already imported are asked (importing one to ask would change what is measured):
    torch's `max_memory_allocated` over CUDA devices, jax's `memory_stats()["peak_bytes_in_use"]`, and
    tensorflow's `get_memory_info("GPU:n")["peak"]`. The largest of them is returned.
    """
    peaks: list[int] = []
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                peaks += [int(torch.cuda.max_memory_allocated(i)) for i in range(torch.cuda.device_count())]
    jax = sys.modules.get("jax")
    if jax is not None:
        with contextlib.suppress(Exception):
            for d in jax.devices():
                if d.platform != "cpu":
                    stats = d.memory_stats() or {}
                    if "peak_bytes_in_use" in stats:
                        peaks.append(int(stats["peak_bytes_in_use"]))
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        with contextlib.suppress(Exception):
            for i, _ in enumerate(tf.config.list_logical_devices("GPU")):
                peaks.append(int(tf.config.experimental.get_memory_info(f"GPU:{i}")["peak"]))
    return max(peaks) if peaks else None


def reset_device_peak() -> None:
    """Reset the loaded frameworks' device peaks where they allow it (torch's, tensorflow's)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                for i in range(torch.cuda.device_count()):
                    torch.cuda.reset_peak_memory_stats(i)
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        with contextlib.suppress(Exception):
            for i, _ in enumerate(tf.config.list_logical_devices("GPU")):
                tf.config.experimental.reset_memory_stats(f"GPU:{i}")


# -- worker side: module state of the worker process ---------------------------------------------------------
_MARKS: dict[str, int] = {}
_PEAKS: dict[str, int] = {}
_DEVICE_PEAKS: dict[str, int] = {}
_LAST: dict[str, Any] = {}


def mark(name: str) -> int:
    """Record this process's resident set now under `name` (the first mark of a name is kept)."""
    value = rss()
    _MARKS.setdefault(name, value)
    return value


def remark(name: str) -> int:
    """Record this process's resident set now under `name`, replacing an earlier mark."""
    _MARKS[name] = rss()
    return _MARKS[name]


@contextlib.contextmanager
def track(key: str) -> Iterator[None]:
    """Keep the peak resident set (and device peak) of the block under `key` (the largest over every block)."""
    meter = PeakMeter()
    reset_device_peak()
    meter.start()
    try:
        yield
    finally:
        peak = meter.stop()
        _PEAKS[key] = max(_PEAKS.get(key, 0), peak)
        _LAST["peak"] = peak
        _LAST["key"] = key
        _LAST["method"] = meter.method
        device = device_peak()
        if device is not None:
            _DEVICE_PEAKS[key] = max(_DEVICE_PEAKS.get(key, 0), device)


def last_peak() -> tuple[int, str] | None:
    """The peak of the last `track` block of this process and its method (None: none ran)."""
    if "peak" not in _LAST:
        return None
    return int(_LAST["peak"]), str(_LAST["method"])


def phase_figures(after_build: int) -> MemoryFigures | None:
    """The figures of the last `track` block of this process, against its marks (one process: no range)."""
    last = last_peak()
    if last is None:
        return None
    peak, how = last
    base = _MARKS.get(START, _MARKS.get(AFTER_IMPORT, after_build))  # START: set by the worker's loop
    return MemoryFigures(
        baseline_rss=base,
        rss_after_import=_MARKS.get(AFTER_IMPORT, base),
        rss_after_build=after_build,
        peak_rss=peak,
        peak_rss_interval=None,
        device_peak=device_peak(),
        method=how,
    )


def marked(name: str) -> int | None:
    """The resident set this process marked under `name` (None: not marked)."""
    return _MARKS.get(name)


def method() -> str:
    """How this process measures a phase's peak (`METHOD_HWM` or `METHOD_SAMPLED`)."""
    return _own_method()


def memory_job(backend: Any, emit: Any) -> dict[str, Any]:
    """Worker job: this worker's marks, the peak of every tracked key, and the method (plain JSON types)."""
    return {
        "pid": os.getpid(),
        "marks": dict(_MARKS),
        "peaks": dict(_PEAKS),
        "device_peaks": dict(_DEVICE_PEAKS),
        "rss": rss(),
        "method": method(),
        "last_key": _LAST.get("key"),
    }


#: `method` of a whole process's peak where the kernel has no VmHWM: getrusage's ru_maxrss (never reset).
METHOD_MAXRSS = "ru_maxrss"


def process_peak() -> tuple[int, str]:
    """This process's peak resident set since it started (or since the last reset) and how it was read."""
    value = hwm()
    if value is not None:
        return value, METHOD_HWM
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kB elsewhere
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale, METHOD_MAXRSS


def run_memory_job(backend: Any, emit: Any) -> dict[str, Any]:
    """Worker job after a training run: the process's peak over its whole life (the run: nothing reset it),
    its resident set before and after the framework import, and the device's peak."""
    peak, how = process_peak()
    return {
        "peak_rss": peak,
        "baseline_rss": _MARKS.get(START, peak),
        "method": how,
        "rss_after_import": _MARKS.get(AFTER_IMPORT),
        "device_peak": device_peak(),
    }


def baseline_job(backend: Any, emit: Any) -> int:
    """Worker job for a bare worker: its resident set, the worker code without any framework."""
    return _MARKS.get(START) or rss()
