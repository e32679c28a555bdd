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
from cvae_bench.core.records import Record


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


def machine_info(threads: int | None) -> dict[str, Any]:
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


#: Distributions whose versions make a machine's timings comparable (read from metadata; nothing is imported).
FINGERPRINT_VERSIONS = ("numpy", "torch", "tensorflow", "jax", "jaxlib", "keras", "onnxruntime")


@dataclass(frozen=True)
class MachineFingerprint(Record):
    """What makes two timings comparable: the CPU, its cores, the GPUs, the driver and the versions.

    Sweeps group results by `id` and compare within one machine only, so that a node's speed is never
    mistaken for a backend's.
    """

    cpu: str
    cores: int
    gpus: list[str]
    driver: str
    system: str
    python: str
    cvae_bench: str
    versions: dict[str, str]

    @property
    def id(self) -> str:
        """A short stable hash of every field (12 hex digits)."""
        import hashlib
        import json

        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def title(self) -> str:
        """One line for tables: 'CPU model ×cores, GPU model (driver)'."""
        gpu = f", {', '.join(self.gpus)} (driver {self.driver})" if self.gpus else ""
        return f"{self.cpu} ×{self.cores}{gpu}"


def _gpus() -> tuple[list[str], str]:
    """NVIDIA GPU models and the driver version, from nvidia-smi or /proc (no framework is imported)."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout
            rows = [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]
            if rows:
                return [r[0] for r in rows], rows[0][-1]
    models = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        with contextlib.suppress(OSError):
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    models.append(line.split(":", 1)[1].strip())
    driver = ""
    with contextlib.suppress(OSError):
        text = Path("/proc/driver/nvidia/version").read_text()
        driver = next((w for w in text.split() if w[:1].isdigit() and "." in w), "")
    return models, driver


def machine_fingerprint() -> MachineFingerprint:
    """The fingerprint of the machine this process runs on."""
    from cvae_bench.core.versions import NOT_INSTALLED, dist_version

    gpus, driver = _gpus()
    versions = {m: v for m in FINGERPRINT_VERSIONS if (v := dist_version(m)) != NOT_INSTALLED}
    return MachineFingerprint(
        cpu=_cpu_model(),
        cores=os.cpu_count() or 1,
        gpus=gpus,
        driver=driver,
        system=f"{platform.system()} {platform.machine()}",
        python=platform.python_version(),
        cvae_bench=__version__,
        versions=versions,
    )
