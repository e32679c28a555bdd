"""The machine a measurement ran on: CPU, versions, thread variables, and the load beside the timings."""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvae_bench import __version__
from cvae_bench.records import Record


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """The machine and process a measurement ran on, with the thread counts in force in this process."""
    import numpy as np

    from cvae_bench.runtime.threads import threads_in_force

    threads = {k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS")}
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numpy": np.__version__,
        "thread_env": threads,
        "threads_in_force": threads_in_force(),
    }


@dataclass(frozen=True)
class BusyProcess(Record):
    """Another process that used more than a fifth of a core while the load was sampled."""

    pid: int
    name: str
    cpu: float


@dataclass(frozen=True)
class LoadSample(Record):
    """Load averages (1/5/15 min) and the busy processes at one moment."""

    loadavg: list[float] | None
    cores: int | None = None
    busy: list[BusyProcess] = field(default_factory=list)


@dataclass(frozen=True)
class LoadWindow(Record):
    """The load before and after a benchmark run."""

    before: LoadSample
    after: LoadSample


def _cpu_times() -> dict[int, tuple[str, int]]:
    out = {}
    for d in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        out[int(d.name)] = (name, int(fields[11]) + int(fields[12]))
    return out


def machine_load(interval: float = 0.5) -> LoadSample:
    """Load averages and the processes using more than 20 % of a core over `interval` seconds.

    Timings on a small machine are distorted by anything else running; this is recorded beside them.
    """
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    before = _cpu_times()
    time.sleep(interval)
    after = _cpu_times()
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = []
    for pid, (name, t1) in after.items():
        if pid in before and pid != os.getpid():
            share = (t1 - before[pid][1]) / tick / interval
            if share > 0.2:
                busy.append(BusyProcess(pid=pid, name=name, cpu=round(share, 2)))
    return LoadSample(loadavg=load, cores=os.cpu_count(), busy=sorted(busy, key=lambda b: -b.cpu))


def machine_info(threads: int) -> dict[str, Any]:
    """The machine and versions, in pytest-benchmark's `machine_info` shape plus our own keys.

    A plain dict on purpose: pytest-benchmark owns this object's layout and adds its own keys to it.
    """
    from cvae_bench.backends import registry

    versions = {}
    for info in registry.all_backends().values():
        versions.update({k: v for k, v in info.versions().items() if v != "-"})
    for extra in ("numpy", "onnxruntime", "onnx"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions.setdefault(extra, md.version(extra))
    env = environment()
    return {
        "node": platform.node(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "system": platform.system(),
        "release": platform.release(),
        "cpu": {"brand_raw": env["cpu"], "count": os.cpu_count()},
        "cvae_bench": __version__,
        "threads": threads,
        "versions": versions,
        "environment": env,
    }
