"""The built-in load scheduler (used where MLPerf LoadGen cannot import) and the worker pool both share.

A *serve* function decodes a batch of sample indices; a `WorkerPool` runs one serve function per thread
(one onnxruntime session each, or one shared by all) behind one FIFO queue. The three scenarios follow
MLPerf LoadGen's definitions: single-stream issues the next query when the last completes; server issues
queries at Poisson arrival times whatever the system's state, and a query's latency runs from its
*scheduled* arrival (so an issuer that falls behind is counted against the system, as LoadGen counts it);
offline issues every query at once. `queue_latencies` is the same server model with given service times,
for tests and for reasoning about what a measurement should show.
"""

from __future__ import annotations

import heapq
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Decodes the samples at these indices (one batch); returns when the output is ready.
Serve = Callable[[np.ndarray], Any]
#: Called by a worker when a batch is done: (tag, seconds since the scenario started when it was issued, done).
Done = Callable[[Any, float, float], None]

LABEL = "built-in scheduler (not MLPerf LoadGen: the same scenario rules, timed in Python)"


@dataclass
class ScenarioRun:
    """What one scenario run measured: per-query latencies and the wall time; `extra` holds LoadGen's verdict."""

    latencies_s: np.ndarray
    duration_s: float
    samples: int
    issue_lateness_p99_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def poisson_arrivals(qps: float, count: int, seed: int = 0) -> np.ndarray:
    """`count` arrival times in seconds from 0 of a Poisson process at `qps` (exponential gaps, seeded).

    Raises:
        ValueError: `qps` not positive or `count` negative.
    """
    if not qps > 0 or count < 0:
        raise ValueError(f"expected qps > 0 and count >= 0; received qps={qps}, count={count}")
    gaps = np.random.default_rng(seed).exponential(1.0 / qps, count)
    return np.cumsum(gaps)


def queue_latencies(
    arrivals: Sequence[float] | np.ndarray, service_s: Sequence[float] | np.ndarray, servers: int
) -> np.ndarray:
    """Latencies of a FIFO queue with `servers` identical servers: query i starts when it has arrived and a
    server is free, and takes `service_s[i]`; its latency is its finish time less its arrival.

    Raises:
        ValueError: mismatched lengths or `servers` < 1.
    """
    arr = np.asarray(arrivals, dtype=np.float64)
    svc = np.asarray(service_s, dtype=np.float64)
    if arr.shape != svc.shape or servers < 1:
        raise ValueError(f"expected equal lengths and servers >= 1; received {arr.shape}, {svc.shape}, {servers}")
    free = [0.0] * servers  # a heap of the times the servers become free
    out = np.empty_like(arr)
    for i, (a, s) in enumerate(zip(arr, svc, strict=True)):
        start = max(a, heapq.heappop(free))
        heapq.heappush(free, start + s)
        out[i] = start + s - a
    return out


class WorkerPool:
    """One thread per serve function, all pulling batches from one FIFO queue.

    onnxruntime releases the GIL while it runs, so threads give real parallelism between sessions.
    Use as a context manager; `submit` never blocks.
    """

    def __init__(self, serves: Sequence[Serve]) -> None:
        if not serves:
            raise ValueError("WorkerPool: expected at least one serve function")
        self._queue: queue.SimpleQueue[tuple[np.ndarray, Any, float, Done] | None] = queue.SimpleQueue()
        self._errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._work, args=(serve,), name=f"cvae-serve-{i}", daemon=True)
            for i, serve in enumerate(serves)
        ]
        for t in self._threads:
            t.start()

    @property
    def size(self) -> int:
        """The number of worker threads."""
        return len(self._threads)

    def _work(self, serve: Serve) -> None:
        while (item := self._queue.get()) is not None:
            indices, tag, issued, done = item
            try:
                serve(indices)
            except BaseException as exc:  # reported by `check`, so that the scenario fails loudly
                self._errors.append(exc)
            done(tag, issued, time.perf_counter())

    def submit(self, indices: np.ndarray, tag: Any, issued: float, done: Done) -> None:
        """Queue a batch; `done(tag, issued, finished)` is called from the worker when it is decoded."""
        self._queue.put((indices, tag, issued, done))

    def check(self) -> None:
        """Raise the first error a serve function raised."""
        if self._errors:
            raise self._errors[0]

    def close(self) -> None:
        """Stop the threads once the queue is drained."""
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Collector:
    """Collects completion times from workers and wakes the issuer when `expected` batches are in."""

    def __init__(self, expected: int) -> None:
        self.finished: dict[Any, float] = {}
        self.issued: dict[Any, float] = {}
        self._left = expected
        self._lock = threading.Lock()
        self.all_done = threading.Event()
        if expected == 0:
            self.all_done.set()

    def __call__(self, tag: Any, issued: float, finished: float) -> None:
        with self._lock:
            self.issued[tag] = issued
            self.finished[tag] = finished
            self._left -= 1
            if self._left == 0:
                self.all_done.set()


def _indices(count: int, samples: int, seed: int) -> np.ndarray:
    """Which sample each query reads: a seeded draw, as LoadGen draws them from its sample library."""
    return np.random.default_rng(seed).integers(0, samples, count)


class BuiltinScheduler:
    """The three scenarios, timed with `time.perf_counter`, with LoadGen's rules for counts and durations."""

    name = "built-in"
    label = LABEL

    def single_stream(self, serve: Serve, samples: int, duration_s: float, min_queries: int) -> ScenarioRun:
        """One query at a time until `duration_s` has passed and `min_queries` have completed."""
        order = _indices(max(min_queries, 1) * 4, samples, seed=1)
        lat: list[float] = []
        start = time.perf_counter()
        while len(lat) < min_queries or time.perf_counter() - start < duration_s:
            i = order[len(lat) % len(order) : len(lat) % len(order) + 1]
            t0 = time.perf_counter()
            serve(i)
            lat.append(time.perf_counter() - t0)
        return ScenarioRun(np.asarray(lat), time.perf_counter() - start, len(lat))

    def server(
        self, pool: WorkerPool, samples: int, qps: float, bound_s: float, duration_s: float, min_queries: int
    ) -> ScenarioRun:
        """Poisson arrivals at `qps` for `duration_s` (at least `min_queries` queries); latency from the
        scheduled arrival to completion. `bound_s` is LoadGen's target latency (unused here: the caller judges).
        """
        count = max(min_queries, math.ceil(qps * duration_s))
        arrivals = poisson_arrivals(qps, count, seed=2)
        order = _indices(count, samples, seed=3)
        collect = _Collector(count)
        late = np.empty(count)
        start = time.perf_counter()
        for k in range(count):
            due = start + arrivals[k]
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            late[k] = time.perf_counter() - due
            pool.submit(order[k : k + 1], k, due, collect)
        collect.all_done.wait()
        pool.check()
        lat = np.asarray([collect.finished[k] - collect.issued[k] for k in range(count)])
        end = max(collect.finished.values())
        return ScenarioRun(lat, end - start, count, issue_lateness_p99_s=float(np.percentile(late, 99)))

    def offline(self, pool: WorkerPool, samples: int, batch: int, total: int) -> ScenarioRun:
        """`total` queries issued at once, decoded in batches of `batch` by the pool; one latency per query."""
        order = _indices(total, samples, seed=4)
        batches = [order[i : i + batch] for i in range(0, total, batch)]
        collect = _Collector(len(batches))
        start = time.perf_counter()
        for k, b in enumerate(batches):
            pool.submit(b, k, start, collect)
        collect.all_done.wait()
        pool.check()
        lat = np.concatenate([np.full(len(b), collect.finished[k] - start) for k, b in enumerate(batches)])
        return ScenarioRun(lat, max(collect.finished.values()) - start, total)
