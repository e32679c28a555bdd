"""`cvae-bench bench` in the parent process: every measurement in an isolated worker, one worker active at a time.

The runner orders the work and never formats anything: the matmul ceiling (one worker per library), then
one live worker per backend and mode (and the A/A twin) whose calls are timed in interleaved sweeps by the
rounds engine (`bench.rounds`) under the contention sentinel, then each standalone group; it returns a
`BenchRun`, which `bench.document` writes down and `bench.report` renders.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cvae_bench.backends import registry
from cvae_bench.backends.registry import BackendInfo
from cvae_bench.backends.selection import EVERY_MODE, Selection
from cvae_bench.bench.groups import BackendGroup, BenchGroup, StandaloneGroup, select
from cvae_bench.bench.groups.base import BARE_WORKER, Event, Reference, ignore, start_worker
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
from cvae_bench.bench.rounds import (
    Contestant,
    Plan,
    RoundsSummary,
    Schedule,
    Unmet,
    WaitedQuiet,
    remeasure_budget,
    unmet,
    unmet_reasons,
)
from cvae_bench.core.errors import CvaeBenchError, WorkerError
from cvae_bench.core.tuning import Tuning
from cvae_bench.runtime.machine import LoadWindow, machine_info, machine_load
from cvae_bench.runtime.sentinel import Sentinel, summarize_ticks, wait_quiet
from cvae_bench.runtime.threads import audit_job
from cvae_bench.runtime.worker import RemoteBackend, Worker
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


@dataclass
class _Member:
    """One live backend worker in the interleaved schedule."""

    identity: BackendIdentity
    backend: RemoteBackend | Worker  # a reference row's host is a bare worker
    contestants: list[Contestant]
    modes: list[str]
    twin: bool = False
    reference: bool = False


def _open_member(
    stack: ExitStack,
    info: BackendInfo,
    mode: str | None,
    tuning: Tuning,
    plans: Sequence[Plan],
    options: BenchOptions,
    on_event: Event,
    twin: bool = False,
) -> _Member:
    worker = stack.enter_context(start_worker(info, options, tuning))
    backend = RemoteBackend(worker, options.spec, 0, options.device, mode)
    identity = BackendIdentity.of(backend)
    if twin:
        identity = replace(identity, aa_twin=True)
    on_event({"type": "stage", "what": f"open {identity.label}"})
    contestants = [Contestant(label=f"{identity.label} {p.key}", host=backend, plan=p) for p in plans]
    for c in contestants:
        c.open(on_event)
    modes = list(backend.info["capabilities"]["modes"])
    return _Member(identity, backend, contestants, modes, twin)


def _open_reference(ref: Reference, on_event: Event) -> _Member:
    on_event({"type": "stage", "what": f"open {ref.identity.label} (reference)"})
    contestants = [Contestant(label=f"{ref.identity.label} {p.key}", host=ref.host, plan=p) for p in ref.plans]
    for c in contestants:
        c.open(on_event)
    return _Member(ref.identity, ref.host, contestants, [], reference=True)


def measure_backends(
    selections: Sequence[Selection],
    groups: Sequence[BackendGroup[Any]],
    options: BenchOptions,
    sentinel: Sentinel | None,
    on_event: Event = ignore,
    waited: WaitedQuiet | None = None,
    standalone: Sequence[StandaloneGroup[Any]] = (),
) -> tuple[list[BackendRun], RoundsSummary]:
    """Every backend group of every backend/mode, each in a live worker, timed in interleaved sweeps.

    One worker per backend and mode stays open (plus the A/A twin with `self_check`); each sweep runs one
    round of every call in a shuffled order; sweeps that overlapped foreign load are replaced (up to a third
    more); with `rel_precision`, sweeps are added until every ratio is that precise or `max_time` passes.
    Rows that the `standalone` groups add to these groups (`StandaloneGroup.references`, e.g. onnxruntime's
    decoder in sample-native) are timed in the same sweeps; one that cannot be opened is reported, left out.
    """
    plans = [p for g in groups for p in g.plans(options)]
    with ExitStack() as stack:
        members: list[_Member] = []
        for selection in selections:
            every = selection.mode == EVERY_MODE
            mode, tuning = (None if every else selection.mode), selection.tuning
            first = _open_member(stack, selection.info, mode, tuning, plans, options, on_event)
            members.append(first)
            if every:
                for other in first.modes:
                    if other != first.identity.mode:
                        members.append(_open_member(stack, selection.info, other, tuning, plans, options, on_event))
        if options.self_check and members and plans:
            original = members[0]
            first_selection = selections[0]
            twin = _open_member(
                stack,
                first_selection.info,
                original.identity.mode,
                first_selection.tuning,
                plans[:1],
                options,
                on_event,
                twin=True,
            )
            twin.contestants[0].partner = original.contestants[0]
            members.append(twin)
        names = {g.name for g in groups}
        for group in standalone:
            try:
                for ref in group.references(options, names, stack, on_event):
                    members.append(_open_reference(ref, on_event))
            except CvaeBenchError as exc:  # a reference row is a comparison, not the measurement: report, go on
                on_event({"type": "stage", "what": f"no reference row from {group.name}: {str(exc).splitlines()[0]}"})
        schedule = Schedule([c for m in members for c in m.contestants], sentinel, options.seed)
        t0 = time.monotonic()
        on_event({"type": "stage", "what": f"{len(schedule.contestants)} entries, {options.rounds} interleaved sweeps"})
        for _ in range(options.rounds):
            schedule.sweep()
        remeasured = 0
        budget = min(len(schedule.contended_sweeps()), remeasure_budget(options.rounds))
        while remeasured < budget and _clean(schedule) < options.rounds:
            on_event({"type": "stage", "what": f"re-measuring a contended sweep ({remeasured + 1}/{budget})"})
            schedule.sweep()
            remeasured += 1
        reached: bool | None = None
        unmet_list: list[Unmet] = []
        if options.rel_precision is not None:
            while True:
                keep = schedule.kept(options.rounds)
                missing = unmet(schedule.ratios(keep), options.rel_precision)
                if not missing:
                    reached = True
                    break
                if time.monotonic() - t0 >= options.max_time:
                    reached = False
                    unmet_list = unmet_reasons(schedule, keep, missing)
                    break
                schedule.sweep()
                if schedule.sweeps_run % 5 == 0:
                    on_event({"type": "stage", "what": f"sweep {schedule.sweeps_run}: {len(missing)} ratio(s) short"})
        seconds = time.monotonic() - t0
        keep = schedule.kept(options.rounds)
        summary = RoundsSummary(
            schedule="interleaved",
            contestants=len(schedule.contestants),
            order_seed=options.seed,
            sweeps_run=schedule.sweeps_run,
            sweeps_kept=len(keep),
            contended_sweeps=len(schedule.contended_sweeps()),
            remeasured=remeasured,
            seconds=round(seconds, 3),
            rel_precision=options.rel_precision,
            reached=reached,
            unmet=unmet_list,
            load=sentinel.seen(schedule.started, time.monotonic()) if sentinel is not None else summarize_ticks([], 0),
            waited_quiet=waited,
        )
        runs = []
        for m in members:
            measured = {
                c.plan.key: (schedule.timing(c, keep), c.opened.info if c.opened else None, c.close())
                for c in m.contestants
            }
            results = {}
            for g in groups:
                mine = {p.key for p in g.plans(options)}
                part = {k: v for k, v in measured.items() if k in mine}
                if part:
                    results[g.name] = g.assemble(part)
                elif not mine and isinstance(m.backend, RemoteBackend) and not m.twin:
                    results[g.name] = g.measure(m.backend, options, on_event)  # not a timing (a profiler)
            audit = m.backend.run_job(audit_job)
            runs.append(
                BackendRun(identity=m.identity, audit=audit, results=results, twin=m.twin, reference=m.reference)
            )
    return runs, summary


def _clean(schedule: Schedule) -> int:
    return schedule.sweeps_run - len(schedule.contended_sweeps())


def _backend_groups(groups: Sequence[BenchGroup[Any]]) -> list[BackendGroup[Any]]:
    return [g for g in groups if isinstance(g, BackendGroup)]


def _standalone_groups(groups: Sequence[BenchGroup[Any]]) -> list[StandaloneGroup[Any]]:
    return [g for g in groups if isinstance(g, StandaloneGroup)]


def run_bench(selections: Sequence[Selection], options: BenchOptions, on_event: Event = ignore) -> BenchRun:
    """Measure every selected backend and mode in interleaved sweeps, the standalone groups, and the roofline.

    Raises:
        CvaeBenchError: an unknown group in `options.groups`.
    """
    groups = select(options.groups)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    load_before = machine_load()
    waited = None
    if options.wait_quiet > 0:
        on_event({"type": "stage", "what": f"waiting up to {options.wait_quiet:.0f} s for a quiet machine"})
        quiet, secs = wait_quiet(options.wait_quiet)
        waited = WaitedQuiet(allowed_s=options.wait_quiet, waited_s=round(secs, 1), quiet=quiet)
        if not quiet:
            on_event({"type": "stage", "what": f"the machine stayed busy for {secs:.0f} s; timing anyway"})
    with Sentinel() as sentinel:
        roofline = measure_ceiling(options, on_event)
        backends: list[BackendRun] = []
        rounds = None
        per_backend = _backend_groups(groups)
        if per_backend and selections:
            backends, rounds = measure_backends(
                selections, per_backend, options, sentinel, on_event, waited, _standalone_groups(groups)
            )
        identities = [b.identity for b in backends if not b.twin and not b.reference]
        standalone = {g.name: g.measure(options, identities, on_event) for g in _standalone_groups(groups)}
    return BenchRun(
        started=started,
        options=options.to_dict(),
        spec=options.spec.to_dict(),
        machine_info=machine_info(options.threads),
        load=LoadWindow(before=load_before, after=machine_load()),
        roofline=roofline,
        backends=backends,
        standalone=standalone,
        rounds=rounds,
    )


def with_runs(
    pairs: Sequence[tuple[str, str]],
    repeats: int,
    options: BenchOptions,
    folder: Path,
    on_event: Event,
    command: str,
) -> list[ComparisonRow]:
    """Train every (backend, mode) `repeats` times to the default target, in sequence; returns the rows.

    Like `run --resume`, a run whose result is already in `folder` (a bench repeated with `--force` into
    the same `--out`) is kept, not run again, and one that was interrupted goes on from its checkpoint.
    """
    from cvae_bench.training.compare import write_comparison
    from cvae_bench.training.loop import TrainConfig
    from cvae_bench.training.matched import finished_result
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
            cell = folder / f"{name}-{mode}-seed{seed}"
            what = f"train to target: {name}:{mode} seed {seed}"
            done = finished_result(cell)
            if done is not None:
                on_event({"type": "stage", "what": f"{what}: finished before, kept"})
                results.append(done)
                continue
            on_event({"type": "stage", "what": what})
            run_opts = replace(base, mode=mode, config=TrainConfig(seed=seed))
            try:
                results.append(run_backend(registry.get(name), run_opts, cell, resume=True))
            except WorkerError as exc:  # a run that crashes is reported; the others go on
                on_event({"type": "stage", "what": f"error: {name}:{mode} seed {seed} failed: {exc}"})
    return write_comparison(folder, results, command) if results else []
