"""`cvae-bench bench` in the parent process: every measurement in an isolated worker, one worker at a time.

The runner orders the work and never formats anything: the matmul ceiling (one worker per library),
then each backend in each mode in a fresh worker running every selected backend group, then each
standalone group; it returns a `BenchRun`, which `bench.document` writes down and `bench.report` renders.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cvae_bench.backends import registry
from cvae_bench.backends.registry import BackendInfo
from cvae_bench.backends.selection import EVERY_MODE, Selection
from cvae_bench.bench.groups import BackendGroup, BenchGroup, StandaloneGroup, select
from cvae_bench.bench.groups.base import BARE_WORKER, Event, ignore, start_worker
from cvae_bench.bench.options import BenchOptions
from cvae_bench.bench.records import BackendIdentity, BackendRun, BenchRun
from cvae_bench.bench.roofline import (
    CEILING_LIBRARIES,
    Ceiling,
    Roofline,
    ceiling_job,
    needed_shapes,
    summarize_roofline,
)
from cvae_bench.errors import WorkerError
from cvae_bench.runtime.machine import LoadWindow, machine_info, machine_load
from cvae_bench.runtime.threads import audit_job
from cvae_bench.runtime.worker import RemoteBackend
from cvae_bench.training.records import ComparisonRow


def measure_ceiling(options: BenchOptions, on_event: Event = ignore) -> Roofline:
    """The matmul ceiling at every GEMM shape the chosen groups need, one worker per library."""
    workloads = [w for group in select(options.groups) for w in group.workloads(options)]
    shapes = needed_shapes(workloads)
    on_event({"type": "stage", "what": f"matmul ceiling ({len(shapes)} shapes)"})
    ceiling = Ceiling()
    # One worker per library: a pool of spinning threads left by one (OpenBLAS, onnxruntime) slows the
    # next one's (torch's OpenMP) by orders of magnitude on a small machine.
    for library in CEILING_LIBRARIES:
        with start_worker(BARE_WORKER, options) as w:
            part = w.run_job(
                ceiling_job,
                on_event,
                shapes=shapes,
                rounds=options.ceiling_rounds,
                min_time=options.ceiling_min_time,
                threads=options.threads,
                libraries=[library],
            )
        ceiling = ceiling.merged(part)
    return summarize_roofline(ceiling, workloads)


def measure_backend(
    info: BackendInfo,
    mode: str | None,
    groups: Sequence[BackendGroup[Any]],
    options: BenchOptions,
    on_event: Event = ignore,
) -> tuple[BackendRun, list[str]]:
    """Every backend group, then the fairness audit, for one backend in one mode, in a fresh worker.

    Returns:
        (the run, every mode the backend declares).
    """
    with start_worker(info, options) as w:
        backend = RemoteBackend(w, options.spec, 0, options.device, mode)
        identity = BackendIdentity.of(backend)
        on_event({"type": "stage", "what": identity.label})
        results = {group.name: group.measure(backend, options, on_event) for group in groups}
        audit = backend.run_job(audit_job)
        modes = list(backend.info["capabilities"]["modes"])
    return BackendRun(identity=identity, audit=audit, results=results), modes


def _backend_groups(groups: Sequence[BenchGroup[Any]]) -> list[BackendGroup[Any]]:
    return [g for g in groups if isinstance(g, BackendGroup)]


def _standalone_groups(groups: Sequence[BenchGroup[Any]]) -> list[StandaloneGroup[Any]]:
    return [g for g in groups if isinstance(g, StandaloneGroup)]


def run_bench(selections: Sequence[Selection], options: BenchOptions, on_event: Event = ignore) -> BenchRun:
    """Measure every selected backend and mode, one worker at a time, and the roofline.

    Raises:
        CvaeBenchError: an unknown group in `options.groups`.
    """
    groups = select(options.groups)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    load_before = machine_load()
    roofline = measure_ceiling(options, on_event)
    backends: list[BackendRun] = []
    per_backend = _backend_groups(groups)
    if per_backend:
        for selection in selections:
            every = selection.mode == EVERY_MODE
            run, modes = measure_backend(
                selection.info, None if every else selection.mode, per_backend, options, on_event
            )
            backends.append(run)
            if every:
                for mode in modes:
                    if mode != run.identity.mode:
                        backends.append(measure_backend(selection.info, mode, per_backend, options, on_event)[0])
    identities = [b.identity for b in backends]
    standalone = {group.name: group.measure(options, identities, on_event) for group in _standalone_groups(groups)}
    return BenchRun(
        started=started,
        options=options.to_dict(),
        spec=options.spec.to_dict(),
        machine_info=machine_info(options.threads),
        load=LoadWindow(before=load_before, after=machine_load()),
        roofline=roofline,
        backends=backends,
        standalone=standalone,
    )


def with_runs(
    pairs: Sequence[tuple[str, str]],
    repeats: int,
    options: BenchOptions,
    folder: Path,
    on_event: Event,
    command: str,
) -> list[ComparisonRow]:
    """Train every (backend, mode) `repeats` times to the default target, in sequence; returns the rows."""
    from cvae_bench.training.compare import write_comparison
    from cvae_bench.training.loop import TrainConfig
    from cvae_bench.training.run import RunOptions, run_backend

    base = RunOptions(
        device=options.device,
        dataset=options.dataset,
        data_path=options.data_path,
        threads=options.threads,
        idle_timeout=options.idle_timeout,
    )
    results = []
    for name, mode in pairs:
        for seed in range(repeats):
            on_event({"type": "stage", "what": f"train to target: {name}:{mode} seed {seed}"})
            run_opts = replace(base, mode=mode, config=TrainConfig(seed=seed))
            try:
                results.append(run_backend(registry.get(name), run_opts, folder / f"{name}-{mode}-seed{seed}"))
            except WorkerError as exc:  # a run that crashes is reported; the others go on
                on_event({"type": "stage", "what": f"error: {name}:{mode} seed {seed} failed: {exc}"})
    return write_comparison(folder, results, command) if results else []
