"""pytest-benchmark suites over every available backend and mode, timed inside each backend's own worker.

How the timing stays honest. Each backend lives in a worker process (Keras fixes its backend at import),
so `benchmark(...)`/`benchmark.pedantic(...)` here would time a round trip over the worker's pipe. Instead
each test runs its benchmark group's job in the worker (`cvae_bench.bench.groups`, the same group objects
as `cvae-bench bench`: warm-up, calibration, rounds, device sync, all with `perf_counter` in the worker)
and gets each round's duration back in a typed record; `record` hands those durations to
pytest-benchmark through the fixture's own bookkeeping (`_make_stats(iterations)` + `update(round)`, what
`pedantic` does after timing a round). pytest-benchmark has no public API for timings taken elsewhere
(ionelmc/pytest-benchmark#52); `record` fails loudly if those internals change. Statistics, tables,
`--benchmark-json/--benchmark-save/--benchmark-compare` then work as for any pytest-benchmark test.

At most one worker is alive at a time: tests are grouped by backend/mode (a session-scoped parameter) and
`WorkerSlot` closes one worker before it starts the next.

Options: --bench-backend (as `cvae-bench bench --backend`; default: every available backend in every mode;
or $CVAE_BENCH_BACKENDS), --bench-threads (default: the cores), --bench-device, --bench-batch-sizes,
--bench-long (3× the rounds, 5× longer rounds). Sampling tables are grouped per batch size.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cvae_bench.backends import registry
from cvae_bench.backends.selection import EVERY_MODE, Selection, parse_selection
from cvae_bench.bench import memory as bench_memory
from cvae_bench.bench.groups import GROUPS
from cvae_bench.bench.options import BenchOptions
from cvae_bench.bench.records import BackendIdentity, Entry
from cvae_bench.bench.roofline import Roofline
from cvae_bench.bench.runner import measure_ceiling
from cvae_bench.bench.timing import Timing
from cvae_bench.core.defaults import DEFAULT_BATCH_SIZES
from cvae_bench.core.errors import BackendUnavailableError, CvaeBenchError
from cvae_bench.core.memory import ProcessMemory, figures
from cvae_bench.models.spec import DEFAULT_SPEC
from cvae_bench.runtime.machine import machine_info as bench_machine_info
from cvae_bench.runtime.memory import memory_job
from cvae_bench.runtime.threads import available_cores, thread_env
from cvae_bench.runtime.worker import RemoteBackend, Worker


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cvae-bench", "cvae-bench benchmarks")
    group.addoption(
        "--bench-backend",
        default=os.environ.get("CVAE_BENCH_BACKENDS", "all"),
        help="NAME, NAME:MODE, NAME:all, comma lists or 'all' (every available backend, every mode) "
        "[$CVAE_BENCH_BACKENDS or all].",
    )
    group.addoption("--bench-threads", type=int, default=None, help="Threads for every framework [cores].")
    group.addoption("--bench-device", default="cpu", help="Device of the backends: cpu or cuda [cpu].")
    group.addoption(
        "--bench-batch-sizes",
        default=",".join(map(str, DEFAULT_BATCH_SIZES)),
        help="Sampling batch sizes [1,64,1024,8192].",
    )
    group.addoption("--bench-long", action="store_true", help="3× the rounds and 5× longer rounds.")


@dataclass(frozen=True)
class Settings:
    """How long each measurement runs, from the command-line options."""

    threads: int
    device: str
    batch_sizes: tuple[int, ...]
    rounds: int
    min_time: float
    warmup: int

    def options(self, benchmark: Any = None, **changes: Any) -> BenchOptions:
        """The options of `cvae-bench bench` for these settings; one short round under --benchmark-disable."""
        smoke = benchmark is not None and benchmark.disabled
        fields: dict[str, Any] = {
            "device": self.device,
            "threads": self.threads,
            "rounds": 1 if smoke else self.rounds,
            "min_time": 0.0 if smoke else self.min_time,
            "warmup": self.warmup,
            "batch_sizes": self.batch_sizes,
        }
        return BenchOptions(**{**fields, **changes})


def settings(config: pytest.Config) -> Settings:
    long = bool(config.getoption("--bench-long"))
    return Settings(
        threads=config.getoption("--bench-threads") or available_cores(),
        device=config.getoption("--bench-device"),
        batch_sizes=tuple(int(b) for b in str(config.getoption("--bench-batch-sizes")).split(",") if b.strip()),
        rounds=30 if long else 10,
        min_time=0.25 if long else 0.05,
        warmup=50 if long else 20,
    )


@pytest.fixture(scope="session")
def bench_settings(pytestconfig: pytest.Config) -> Settings:
    return settings(pytestconfig)


# -- what to benchmark ------------------------------------------------------------------------------------
def _modes(target: Selection, config: pytest.Config) -> list[str]:
    """The modes of `target` (asking a worker, once per backend version, cached in pytest's cache)."""
    if target.mode != EVERY_MODE:
        return [target.mode] if target.mode else [""]
    info = target.info
    key = f"cvae_bench/modes/{info.name}"
    stamp = [sorted(info.versions().items()), _module_mtime(info.target)]
    cache = getattr(config, "cache", None)
    cached = cache.get(key, None) if cache is not None else None
    if cached and cached.get("stamp") == stamp:
        return list(cached["modes"])
    with Worker(info, idle_timeout=600) as w:
        modes = list(RemoteBackend(w, DEFAULT_SPEC, 0).info["capabilities"]["modes"])
    if cache is not None:
        cache.set(key, {"stamp": stamp, "modes": modes})
    return modes


def _module_mtime(target: str) -> float:
    import importlib.util

    try:
        spec = importlib.util.find_spec(target.partition(":")[0])
    except (ImportError, ValueError):
        return 0.0
    return os.path.getmtime(spec.origin) if spec and spec.origin else 0.0


def targets(config: pytest.Config) -> list[tuple[str, str]]:
    """(backend, mode) pairs to benchmark; mode "" means the backend's default."""
    if not hasattr(config, "_cvae_bench_targets"):
        pairs: list[tuple[str, str]] = []
        try:
            chosen = parse_selection(config.getoption("--bench-backend"), all_modes=True)
        except CvaeBenchError as exc:
            raise pytest.UsageError(str(exc)) from exc
        for t in chosen:
            pairs += [(t.info.name, m) for m in _modes(t, config)]
        config._cvae_bench_targets = pairs  # type: ignore[attr-defined]
    return list(config._cvae_bench_targets)  # type: ignore[attr-defined]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" in metafunc.fixturenames:
        pairs = targets(metafunc.config)
        ids = [f"{n}-{m}" if m else n for n, m in pairs]
        # Session scope groups every test of one backend/mode together, across files: one worker each.
        metafunc.parametrize("target", pairs, ids=ids, indirect=True, scope="session")
    if "batch" in metafunc.fixturenames:
        sizes = settings(metafunc.config).batch_sizes
        metafunc.parametrize("batch", sizes, ids=[f"b{b}" for b in sizes])


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(backend name, mode) of the current parameter."""
    return tuple(request.param)  # type: ignore[return-value]


# -- one live worker at a time ----------------------------------------------------------------------------
class WorkerSlot:
    """Holds at most one live worker; asking for another closes the current one first."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._key: Any = None
        self._value: Any = None
        self._worker: Worker | None = None

    def get(self, key: Any, start: Callable[[Callable[..., Worker]], Any]) -> Any:
        """The live value for `key`, or a new one from `start(new_worker)` after closing the current."""
        if key != self._key:
            self.release()
            created: list[Worker] = []

            def new_worker(info: registry.BackendInfo) -> Worker:
                w = Worker(info, idle_timeout=600, extra_env=thread_env(self.threads))
                created.append(w)
                return w

            try:
                self._value = start(new_worker)
            except Exception:
                for w in created:
                    w.close()
                raise
            self._worker = created[-1] if created else None
            self._key = key
        return self._value

    def release(self) -> None:
        if self._worker is not None:
            self._worker.close()
        self._key = self._value = self._worker = None


@pytest.fixture(scope="session")
def slot(bench_settings: Settings) -> Iterator[WorkerSlot]:
    s = WorkerSlot(bench_settings.threads)
    yield s
    s.release()


@pytest.fixture
def backend(target: tuple[str, str], slot: WorkerSlot, bench_settings: Settings) -> RemoteBackend:
    """The live backend of the current (backend, mode), in its own worker."""
    name, mode = target

    def start(new_worker: Callable[..., Worker]) -> RemoteBackend:
        return RemoteBackend(new_worker(registry.get(name)), DEFAULT_SPEC, 0, bench_settings.device, mode or None)

    try:
        return slot.get(("backend", name, mode), start)  # type: ignore[no-any-return]
    except BackendUnavailableError as exc:  # e.g. --bench-device cuda on a machine without one
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def roofline(bench_settings: Settings, slot: WorkerSlot) -> Roofline:
    """The fp32 matmul ceiling at the model's shapes, measured once per session in a worker of its own."""
    slot.release()
    return measure_ceiling(bench_settings.options(), lambda event: None)


@pytest.fixture(scope="session")
def mnist_path() -> str:
    """The verified local MNIST file the workers read (never downloads)."""
    from cvae_bench.data.loading import load_dataset

    try:
        return str(load_dataset("mnist", download=False).path)
    except CvaeBenchError as exc:
        pytest.skip(f"real MNIST not available locally ({exc}); run `cvae-bench data fetch`")


# -- recording ---------------------------------------------------------------------------------------------
_BASELINE: dict[str, int] = {}


def memory_of(host: Any, settings: Settings) -> dict[str, Any] | None:
    """The memory figures of the call `host`'s worker timed last (`core.memory`), against an idle worker's."""
    if "rss" not in _BASELINE:
        _BASELINE["rss"] = bench_memory.baseline(settings.options())  # once per session
    reported = host.run_job(memory_job)
    key = reported.get("last_key")
    found = figures([ProcessMemory.of(reported)], key, _BASELINE["rss"]) if key else None
    return found.to_json() if found is not None else None


def record(benchmark: Any, timing: Timing, entry: Entry, settings: Settings, host: Any = None) -> None:
    """Give pytest-benchmark the rounds a worker timed, and the extra_info of the measurement's `entry` (with the
    memory figures of `host`'s worker, given one: its peak during the rounds just timed).

    Raises:
        pytest.fail: this pytest-benchmark lacks the internals used (see the module docstring).
    """
    benchmark.extra_info.update(entry.extra_info)
    if host is not None:
        benchmark.extra_info["memory"] = memory_of(host, settings)
    benchmark.extra_info["loadavg_1m"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if benchmark.disabled:  # --benchmark-disable: the job ran as a smoke test; mark the fixture used, record nothing
        benchmark.pedantic(lambda: None)
        return
    if not hasattr(benchmark, "_make_stats") or getattr(benchmark, "_mode", None):
        pytest.fail("pytest-benchmark's fixture changed (no _make_stats) or was already used; update record()")
    benchmark._mode = "cvae-bench: timed in the worker"
    stats = benchmark._make_stats(timing.iterations)
    stats.options = {
        "timer": "time.perf_counter (in the worker)",
        "rounds": len(timing.round_s),
        "min_time": settings.min_time,
        "warmup": timing.warmup,
        "iterations": timing.iterations,
    }
    for seconds in timing.round_s:
        stats.update(seconds)


def identity(backend: RemoteBackend) -> BackendIdentity:
    """The identity every entry of `backend` carries."""
    return BackendIdentity.of(backend)


# -- pytest-benchmark hooks ---------------------------------------------------------------------------------
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Framework versions, CPU, cores, thread setting and load, beside pytest-benchmark's own machine info."""
    s = settings(config)
    ours = bench_machine_info(s.threads)
    machine_info["cvae_bench"] = {
        "version": ours["cvae_bench"],
        "versions": ours["versions"],
        "cpu": ours["environment"]["cpu"],
        "cores": ours["environment"]["cpu_count"],
        "affinity": ours["environment"]["affinity"],
        "threads": s.threads,
        "device": s.device,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "settings": {"rounds": s.rounds, "min_time": s.min_time, "warmup": s.warmup},
    }


def pytest_benchmark_group_stats(config: pytest.Config, benchmarks: list[Any], group_by: str) -> Any:
    """By default (`--benchmark-group-by=group`), one table per group and batch size."""
    if group_by != "group":
        return None
    groups: dict[str, list[Any]] = defaultdict(list)
    for bench in benchmarks:
        batch = (bench["params"] or {}).get("batch")
        group = GROUPS.get(bench["group"])
        split = batch is not None and (group is None or group.split_by_batch)
        groups[f"{bench['group']} batch={batch}" if split else bench["group"]].append(bench)

    def order(key: str) -> tuple[str, int]:
        head, _, b = key.partition(" batch=")
        return head, int(b) if b else 0

    for items in groups.values():
        items.sort(key=lambda b: b["name"])
    return sorted(groups.items(), key=lambda kv: order(kv[0]))


@pytest.fixture(scope="session")
def onnx_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cvae-bench-onnx-") as tmp:
        yield Path(tmp)
