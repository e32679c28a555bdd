"""The load test's typed records: what loadtest.json holds, from one scenario run up to the whole report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cvae_bench.core.records import Record
from cvae_bench.runtime.machine import LoadSample, LoadWindow
from cvae_bench.serving.options import SCENARIOS
from cvae_bench.serving.stats import LatencyStats


@dataclass(frozen=True)
class Threading(Record):
    """How the decoder is served: `sessions` onnxruntime sessions (one worker thread each), each with
    `intra_op_threads` threads for one operator."""

    sessions: int
    intra_op_threads: int

    @property
    def label(self) -> str:
        """'1 session × 2 threads', '2 sessions × 1 thread'."""
        s = "session" if self.sessions == 1 else "sessions"
        t = "thread" if self.intra_op_threads == 1 else "threads"
        return f"{self.sessions} {s} × {self.intra_op_threads} {t}"


@dataclass(frozen=True)
class LoadtestOptions(Record):
    """What the load test was asked for, as loadtest.json records it (from `serving.options.LoadtestCommand`)."""

    precisions: list[str]
    providers: list[str]
    threadings: list[Threading]
    latency_bound_s: float
    duration_s: float
    min_queries: int
    max_probes: int
    offline_batches: list[int]
    offline_queries: int
    samples: int
    scheduler: str
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))


@dataclass(frozen=True)
class ScenarioResult(Record):
    """One scenario run: its latencies, its throughput, and the load the machine was under right after.

    Attributes:
        scenario: one of `SCENARIOS`.
        queries: queries completed (samples, offline).
        duration_s: wall time from the first issue to the last completion.
        throughput_qps: queries / duration.
        latency: per-query latency statistics (offline: each query's wait for its batch).
        target_qps: the server scenario's arrival rate.
        batch: the offline scenario's batch size.
        issue_lateness_p99_s: the built-in server issuer's p99 delay behind schedule (counted in latency).
        loadgen: LoadGen's own verdict and figures for this run (empty with the built-in scheduler).
    """

    scenario: str
    queries: int
    duration_s: float
    throughput_qps: float
    latency: LatencyStats
    target_qps: float | None = None
    batch: int | None = None
    issue_lateness_p99_s: float | None = None
    loadgen: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerProbe(Record):
    """One rate the server search tried."""

    qps: float
    p99_s: float
    queries: int
    passed: bool


@dataclass(frozen=True)
class ServerSearch(Record):
    """The highest rate whose p99 stayed within the bound, its run (with the histogram), and every probe."""

    latency_bound_s: float
    best_qps: float | None
    at_best: ScenarioResult | None
    probes: list[ServerProbe]


@dataclass(frozen=True)
class ServingMemory(Record):
    """The decoder process's resident memory over one configuration (bytes).

    Attributes:
        rss_before: resident before its sessions were built (the process, its earlier configurations' leftovers).
        peak_rss: the peak while its sessions were built, warmed up and served every scenario.
        method: how the peak was read (`runtime.memory`).
    """

    rss_before: int
    peak_rss: int
    method: str

    @property
    def added(self) -> int:
        """What the configuration itself added at its peak: its sessions, arenas, inputs and threads."""
        return max(0, self.peak_rss - self.rss_before)


@dataclass(frozen=True)
class ConfigResult(Record):
    """One precision on one provider with one threading choice: the three scenarios and the load around them."""

    precision: str
    provider: str
    threading: Threading
    single_stream: ScenarioResult | None = None
    server: ServerSearch | None = None
    offline: list[ScenarioResult] = field(default_factory=list)
    load: LoadWindow | None = None
    error: str | None = None
    memory: ServingMemory | None = None

    @property
    def best_offline(self) -> ScenarioResult | None:
        """The offline run of the highest throughput."""
        return max(self.offline, key=lambda r: r.throughput_qps, default=None)


@dataclass(frozen=True)
class LoadtestReport(Record):
    """loadtest.json: the model, the load generator, the options, the machine and every configuration."""

    model: str
    model_sha256: str
    scheduler: str
    options: LoadtestOptions
    environment: dict[str, Any]
    load_before: LoadSample
    load_after: LoadSample | None
    configs: list[ConfigResult]
    skipped: dict[str, str] = field(default_factory=dict)
