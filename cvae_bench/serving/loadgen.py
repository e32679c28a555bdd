"""MLPerf LoadGen (`mlcommons-loadgen`) as the load generator: the same three scenarios, LoadGen's schedule.

LoadGen decides when each query is issued, how many are needed and whether a run is valid; our system under
test hands its queries to a `WorkerPool` and times each one from LoadGen's issue call to completion, which
gives the per-query latencies (LoadGen writes only summaries). LoadGen's own verdict and percentiles are
read back from its detail log and kept beside ours.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import math
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from cvae_bench.serving.scheduler import ScenarioRun, Serve, WorkerPool

#: LoadGen's detail-log keys we keep, by the short names our records use.
_KEPT = {
    "result_validity": "validity",
    "result_invalid_reason": "invalid_reason",
    "result_perf_constraints_met": "perf_constraints_met",
    "early_stopping_met": "early_stopping_met",
    "result_99.00_percentile_latency_ns": "p99_ns",
    "result_90.00_percentile_latency_ns": "p90_ns",
    "result_completed_samples_per_sec": "completed_samples_per_s",
    "result_scheduled_samples_per_sec": "scheduled_samples_per_s",
    "result_samples_per_second": "samples_per_s",
    "result_query_count": "query_count",
}


def import_loadgen() -> ModuleType | None:
    """`mlperf_loadgen`, or None where it does not import."""
    try:
        import mlperf_loadgen
    except ImportError:
        return None
    module: ModuleType = mlperf_loadgen
    return module


def read_detail(path: Path) -> dict[str, Any]:
    """LoadGen's verdict from `mlperf_log_detail.txt` (`:::MLLOG {json}` lines), under `_KEPT`'s names."""
    out: dict[str, Any] = {}
    if not path.is_file():
        return out
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG ") :])
        except json.JSONDecodeError:
            continue
        key = entry.get("key")
        if key in _KEPT:
            out[_KEPT[key]] = entry.get("value")
    return out


class LoadgenScheduler:
    """The scenarios run by MLPerf LoadGen; see the module docstring."""

    name = "loadgen"

    def __init__(self, lg: ModuleType, log_dir: Path | None = None) -> None:
        """Args:
        lg: the imported `mlperf_loadgen`.
        log_dir: where LoadGen's own logs (mlperf_log_summary.txt, mlperf_log_detail.txt) are kept, one
            folder per scenario run (`NNN-<scenario>`); None: a temporary folder, removed after reading.
        """
        self.lg = lg
        self.log_dir = log_dir
        self.runs = 0
        try:
            version = md.version("mlcommons-loadgen")
        except md.PackageNotFoundError:
            version = "unknown"
        self.version = version
        self.label = f"MLPerf LoadGen {version} (mlcommons-loadgen)"

    def _run(self, settings: Any, samples: int, issue: Any) -> dict[str, Any]:
        lg = self.lg
        sut = lg.ConstructSUT(issue, lambda: None)
        qsl = lg.ConstructQSL(samples, samples, lambda s: None, lambda s: None)
        self.runs += 1
        scenario = str(settings.scenario).rpartition(".")[2].lower()
        try:
            with tempfile.TemporaryDirectory(prefix="cvae-bench-loadgen-") as tmp:
                where = Path(tmp) if self.log_dir is None else self.log_dir / f"{self.runs:03d}-{scenario}"
                where.mkdir(parents=True, exist_ok=True)
                log = lg.LogSettings()
                log.log_output.outdir = str(where)
                log.log_output.copy_summary_to_stdout = False
                log.enable_trace = False
                lg.StartTestWithLogSettings(sut, qsl, settings, log)
                return read_detail(where / "mlperf_log_detail.txt")
        finally:
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)

    def _settings(self, scenario: str, duration_s: float, min_queries: int) -> Any:
        lg = self.lg
        s = lg.TestSettings()
        s.scenario = getattr(lg.TestScenario, scenario)
        s.mode = lg.TestMode.PerformanceOnly
        s.min_duration_ms = max(1, round(duration_s * 1000))
        s.min_query_count = max(1, min_queries)
        return s

    def single_stream(self, serve: Serve, samples: int, duration_s: float, min_queries: int) -> ScenarioRun:
        """LoadGen's SingleStream: the next query is issued when the last completes."""
        lat: list[float] = []

        def issue(queries: list[Any]) -> None:
            t0 = time.perf_counter()
            serve(np.asarray([q.index for q in queries]))
            lat.append(time.perf_counter() - t0)
            self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(q.id, 0, 0) for q in queries])

        s = self._settings("SingleStream", duration_s, min_queries)
        start = time.perf_counter()
        verdict = self._run(s, samples, issue)
        return ScenarioRun(np.asarray(lat), time.perf_counter() - start, len(lat), extra=verdict)

    def server(
        self, pool: WorkerPool, samples: int, qps: float, bound_s: float, duration_s: float, min_queries: int
    ) -> ScenarioRun:
        """LoadGen's Server: Poisson arrivals at `qps`, judged against `bound_s` at the 99th percentile."""
        lat: list[float] = []
        lock = threading.Lock()
        lg = self.lg

        def done(tag: Any, issued: float, finished: float) -> None:
            with lock:
                lat.append(finished - issued)
            lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in tag])

        def issue(queries: list[Any]) -> None:
            pool.submit(np.asarray([q.index for q in queries]), list(queries), time.perf_counter(), done)

        s = self._settings("Server", duration_s, max(min_queries, math.ceil(qps * duration_s)))
        s.server_target_qps = float(qps)
        s.server_target_latency_ns = max(1, round(bound_s * 1e9))
        start = time.perf_counter()
        verdict = self._run(s, samples, issue)
        pool.check()
        return ScenarioRun(np.asarray(lat), time.perf_counter() - start, len(lat), extra=verdict)

    def offline(self, pool: WorkerPool, samples: int, batch: int, total: int) -> ScenarioRun:
        """LoadGen's Offline: every query at once; the pool decodes them in batches of `batch`."""
        lat: list[float] = []
        lock = threading.Lock()
        lg = self.lg

        def done(tag: Any, issued: float, finished: float) -> None:
            with lock:
                lat.extend([finished - issued] * len(tag))
            lg.QuerySamplesComplete([lg.QuerySampleResponse(q.id, 0, 0) for q in tag])

        def issue(queries: list[Any]) -> None:
            now = time.perf_counter()
            for i in range(0, len(queries), batch):
                chunk = list(queries[i : i + batch])
                pool.submit(np.asarray([q.index for q in chunk]), chunk, now, done)

        # LoadGen issues max(min_query_count, expected_qps · min_duration · 1.1) samples; ask for `total`.
        s = self._settings("Offline", 0.001, total)
        s.offline_expected_qps = 1.0
        start = time.perf_counter()
        verdict = self._run(s, samples, issue)
        pool.check()
        return ScenarioRun(np.asarray(lat), time.perf_counter() - start, len(lat), extra=verdict)
