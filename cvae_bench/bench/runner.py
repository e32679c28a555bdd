"""`cvae-bench bench` in the parent process: every measurement in an isolated worker, one worker active at a time.

The runner orders the work and never formats anything: the matmul ceiling (one worker per library), then
one live worker per backend and mode (and the A/A twin) whose calls are timed in interleaved sweeps by the
rounds engine (`bench.rounds`) under the contention sentinel, then each standalone group; it returns a
`BenchRun`, which `bench.document` writes down and `bench.report` renders.
"""

from __future__ import annotations

import datetime as _dt
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cvae_bench.backends import registry
from cvae_bench.backends.registry import BackendInfo
from cvae_bench.backends.selection import EVERY_MODE, Selection
from cvae_bench.bench import memory as bench_memory
from cvae_bench.bench.groups import BackendGroup, BenchGroup, StandaloneGroup, select
from cvae_bench.bench.groups.base import BARE_WORKER, start_worker
from cvae_bench.bench.groups.train_step import TrainStep, plain_loop_setup
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
    Components,
    Contestant,
    Phases,
    Plan,
    RoundsSummary,
    Schedule,
    Unmet,
    WaitedQuiet,
    remeasure_budget,
    unmet,
    unmet_reasons,
    worker_of,
)
from cvae_bench.core.errors import CvaeBenchError, WorkerError
from cvae_bench.core.events import SILENT, Message, Reporter, Stage
from cvae_bench.core.memory import ProcessMemory
from cvae_bench.core.replication import variance_components
from cvae_bench.core.tuning import UNTUNED, Tuning
from cvae_bench.core.versions import dist_version
from cvae_bench.runtime.machine import LoadWindow, machine_info, machine_load
from cvae_bench.runtime.sentinel import Sentinel, summarize_ticks, wait_quiet
from cvae_bench.runtime.threads import audit_job
from cvae_bench.runtime.worker import RemoteBackend, Worker
from cvae_bench.training.records import ComparisonRow


def measure_ceiling(options: BenchOptions, reporter: Reporter = SILENT) -> Roofline:
    """The matmul ceiling at every GEMM shape the chosen groups need, one worker per library."""
    workloads = [w for group in select(options.groups) for w in group.workloads(options)]
    shapes = needed_shapes(workloads)
    reporter.report(Stage(f"matmul ceiling ({len(shapes)} shapes)"))
    ceiling = Ceiling()
    # One worker per library: a pool of spinning threads left by one (OpenBLAS, onnxruntime) slows the
    # next one's (torch's OpenMP) by orders of magnitude on a small machine.
    for library in CEILING_LIBRARIES:
        with start_worker(BARE_WORKER, options) as w:
            part = w.run_job(
                ceiling_job,
                reporter,
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
    """One live worker of an epoch in the interleaved schedule: a backend/mode, the A/A twin or a reference row."""

    identity: BackendIdentity
    backend: RemoteBackend | Worker  # a reference row's host is a bare worker
    contestants: list[Contestant]
    twin: bool = False
    reference: bool = False


@dataclass(frozen=True)
class _Slot:
    """What one worker of every epoch runs: which backend, mode and tuning, and which plans."""

    info: BackendInfo
    mode: str | None
    tuning: Tuning
    plans: tuple[Plan, ...]
    twin: bool = False
    reference: BackendIdentity | None = None  # a reference row's identity (its host is a bare worker)


def _build(slot: _Slot, worker: Worker, options: BenchOptions) -> RemoteBackend | Worker:
    """The slot's backend built in `worker` (a reference row's host is the bare worker itself)."""
    if slot.reference is not None:
        return worker
    return RemoteBackend(worker, options.spec, 0, options.device, slot.mode)


def _start_all(slots: Sequence[_Slot], options: BenchOptions, stack: ExitStack) -> list[RemoteBackend | Worker]:
    """Start every slot's worker, then build their backends at once: framework imports overlap on the machine's
    cores (nothing is timed yet), which is most of an epoch's start-up. The processes are started from this
    thread: a worker asks the kernel to kill it when the thread that started it ends (PR_SET_PDEATHSIG)."""
    workers = [stack.enter_context(start_worker(slot.info, options, slot.tuning)) for slot in slots]
    with ThreadPoolExecutor(max_workers=max(1, len(slots))) as pool:
        futures = [pool.submit(_build, slot, w, options) for slot, w in zip(slots, workers, strict=True)]
        return [f.result() for f in futures]


def _identity(slot: _Slot, host: RemoteBackend | Worker) -> BackendIdentity:
    if slot.reference is not None:
        return slot.reference
    assert isinstance(host, RemoteBackend)
    identity = BackendIdentity.of(host)
    return replace(identity, aa_twin=True) if slot.twin else identity


def _contestant(by_label: dict[str, Contestant], label: str, host: Any, plan: Plan) -> Contestant:
    c = by_label.get(label)
    if c is None:
        c = by_label[label] = Contestant(label=label, host=host, plan=plan)
    c.host = host
    return c


def _open_epoch(
    stack: ExitStack,
    slots: list[_Slot],
    options: BenchOptions,
    reporter: Reporter,
    rng: random.Random,
    by_label: dict[str, Contestant],
    first_hosts: dict[int, RemoteBackend | Worker],
) -> tuple[list[_Member], float]:
    """Start one fresh worker per slot (in a random order, imports overlapping), then open every call one worker
    at a time with the others stopped; returns the epoch's members and the seconds the start took."""
    order = list(range(len(slots)))
    rng.shuffle(order)
    t0 = time.monotonic()
    started = _start_all([slots[i] for i in order if i not in first_hosts], options, stack)
    start_s = time.monotonic() - t0
    hosts: dict[int, RemoteBackend | Worker] = dict(first_hosts)
    hosts.update(zip([i for i in order if i not in first_hosts], started, strict=True))
    for host in hosts.values():
        worker_of(host).pause()
    members: dict[int, _Member] = {}
    for i in order:
        slot, host = slots[i], hosts[i]
        identity = _identity(slot, host)
        contestants = [_contestant(by_label, f"{identity.label} {p.key}", host, p) for p in slot.plans]
        for c in contestants:
            c.open(reporter)
        worker_of(host).pause()
        members[i] = _Member(identity, host, contestants, slot.twin, slot.reference is not None)
    return [members[i] for i in range(len(slots))], start_s  # opened in a random order, listed in the slots


def _slots(
    selections: Sequence[Selection], plans: Sequence[Plan], options: BenchOptions, stack: ExitStack
) -> tuple[list[_Slot], dict[int, RemoteBackend | Worker]]:
    """Every worker an epoch runs, and the hosts already started for the first epoch, by slot index.

    A `NAME:all` selection's modes are known once a backend is built: the worker built to learn them is kept
    as the first epoch's worker of its default mode rather than started twice.
    """
    slots: list[_Slot] = []
    first_hosts: dict[int, RemoteBackend | Worker] = {}
    for selection in selections:
        every = selection.mode == EVERY_MODE
        slot = _Slot(selection.info, None if every else selection.mode, selection.tuning, tuple(plans))
        if not every:
            slots.append(slot)
            continue
        probe = stack.enter_context(start_worker(slot.info, options, slot.tuning))
        host = _build(slot, probe, options)
        assert isinstance(host, RemoteBackend)
        modes = list(host.info["capabilities"]["modes"])
        first_hosts[len(slots)] = host  # built in its default mode, the first of `modes`
        slots += [replace(slot, mode=m) for m in modes]
    if options.self_check and slots and plans:
        slots.append(replace(slots[0], plans=tuple(plans[:1]), twin=True))
    if options.plain_loops and any(p.group == TrainStep.name for p in plans):
        slots += _plain_slots(selections, options)
    return slots, first_hosts


#: Optimiser steps in one timed `fit` call of a Keras plain-loop row: enough that `fit`'s per-call set-up (its
#: data adapter, callbacks) is spread over a good part of an epoch, few enough that a round stays ~1 s.
PLAIN_FIT_STEPS = 100


def _plain_slots(selections: Sequence[Selection], options: BenchOptions) -> list[_Slot]:
    """A plain-loop reference row (`bench.plain`) beside train-step for each framework selected, untuned."""
    from cvae_bench.bench.plain import PLAIN_LOOPS

    out = []
    shadowed = dict.fromkeys(s.info.name for s in selections)
    for loop in PLAIN_LOOPS.values():
        if loop.shadows not in shadowed or options.device != "cpu":
            continue
        keras = loop.name != "plain:torch"
        kwargs: dict[str, Any] = {
            "loop": loop.name,
            "dataset": options.dataset,
            "data_path": options.data_path,
            "train_subset": options.train_subset,
            **({"steps_per_call": PLAIN_FIT_STEPS} if keras else {"warmup": options.warmup}),
        }
        plan = Plan(TrainStep.name, TrainStep.name, options.spec.batch_size, plain_loop_setup, kwargs, options.min_time)
        identity = BackendIdentity(
            backend=loop.name,
            mode="fit" if keras else "loop",
            device="cpu",
            versions={m: dist_version(m) for m in loop.requires},
            build_s=0.0,
            notes={"loop": "the framework's own loop as its users write it (bench.plain); a reference, not a backend"},
        )
        out.append(_Slot(loop.worker_info(), None, UNTUNED, (plan,), reference=identity))
    return out


def measure_backends(
    selections: Sequence[Selection],
    groups: Sequence[BackendGroup[Any]],
    options: BenchOptions,
    sentinel: Sentinel | None,
    reporter: Reporter = SILENT,
    waited: WaitedQuiet | None = None,
    standalone: Sequence[StandaloneGroup[Any]] = (),
) -> tuple[list[BackendRun], RoundsSummary]:
    """Every backend group of every backend/mode, timed in interleaved sweeps, in epochs of fresh workers.

    Each epoch starts one fresh worker per backend and mode (plus the A/A twin with `self_check`, and the rows
    that `standalone` groups add, e.g. onnxruntime's decoder in sample-native), opens every call, runs
    `options.rounds` interleaved sweeps (sweeps that overlapped foreign load are re-run, up to a third more)
    and ends its workers. An epoch with fewer than half its sweeps clean is dropped and run again (up to
    `options.epochs` more); when `options.epochs` clean epochs cannot be had the run is BUSY and its verdicts
    are withheld (unless `under_load`). With `rel_precision`, epochs are added until every ratio is that
    precise or `max_time` passes. Intervals are taken across epochs (`core.replication`).
    """
    plans = [p for g in groups for p in g.plans(options)]
    rng = random.Random(options.seed)
    by_label: dict[str, Contestant] = {}
    t_start = t_open = t_sweeps = t_close = 0.0
    t_all = time.monotonic()
    with ExitStack() as outer:
        t0 = time.monotonic()
        slots, first_hosts = _slots(selections, plans, options, outer)
        baseline_rss = bench_memory.baseline(options)
        reports: dict[str, list[ProcessMemory]] = {}  # each row's workers' memory, one per epoch
        names = {g.name for g in groups}
        for group in standalone:
            try:
                for ref in group.references(options, names, outer, reporter):
                    first_hosts[len(slots)] = ref.host
                    slots.append(_Slot(ref.info, None, UNTUNED, tuple(ref.plans), reference=ref.identity))
            except CvaeBenchError as exc:  # a reference row is a comparison, not the measurement: report, go on
                reporter.report(Stage(f"no reference row from {group.name}: {str(exc).splitlines()[0]}"))
        t_start += time.monotonic() - t0
        schedule: Schedule | None = None
        remeasured = 0
        members: list[_Member] = []
        last: dict[str, tuple[_Member, dict[str, Any]]] = {}  # the last epoch's member and audit, by label
        profiled: dict[str, dict[str, Any]] = {}  # groups that are not timings (a profiler), first epoch
        epoch = 0
        reached: bool | None = None
        unmet_list: list[Unmet] = []
        while True:
            if schedule is not None:
                clean = len(schedule.epochs_run()) - len(_dropped(schedule, options))
                if clean >= options.epochs:
                    if options.rel_precision is None:
                        break
                    keep = schedule.kept(options.rounds, options.under_load)
                    missing = unmet(schedule.ratios(keep), options.rel_precision)
                    if not missing:
                        reached = True
                        break
                    if time.monotonic() - t_all >= options.max_time:
                        reached, unmet_list = False, unmet_reasons(schedule, keep, missing)
                        break
                elif epoch >= 2 * options.epochs:
                    break  # busy: verdicts withheld below
            with ExitStack() as stack:
                t0 = time.monotonic()
                reporter.report(Stage(f"epoch {epoch + 1}: starting {len(slots)} workers"))
                members, start_s = _open_epoch(
                    stack, slots, options, reporter, rng, by_label, first_hosts if epoch == 0 else {}
                )
                t_start += start_s
                t_open += time.monotonic() - t0 - start_s
                if schedule is None:
                    schedule = Schedule(list(by_label.values()), sentinel, options.seed)
                schedule.begin_epoch(epoch, {c.label: c.host for m in members for c in m.contestants})
                t0 = time.monotonic()
                reporter.report(
                    Stage(f"epoch {epoch + 1}: {len(schedule.contestants)} entries, {options.rounds} sweeps")
                )
                for _ in range(options.rounds):
                    schedule.sweep()
                budget = remeasure_budget(options.rounds)
                extra = 0
                while extra < budget and schedule.clean_in_epoch(epoch) < options.rounds:
                    if not schedule.contended_sweeps():
                        break
                    reporter.report(Stage(f"re-measuring a contended sweep ({extra + 1}/{budget})"))
                    schedule.sweep()
                    extra += 1
                remeasured += extra
                t_sweeps += time.monotonic() - t0
                t0 = time.monotonic()
                schedule.end_epoch()
                for m in members:
                    for c in m.contestants:
                        c.close()
                    last[m.identity.label] = (m, m.backend.run_job(audit_job))
                    reports.setdefault(m.identity.label, []).append(bench_memory.report(m.backend))
                    if epoch == 0 and isinstance(m.backend, RemoteBackend) and not m.twin:
                        profiled[m.identity.label] = {
                            g.name: g.measure(m.backend, options, reporter) for g in groups if not g.plans(options)
                        }
                if epoch == 0:
                    for host in first_hosts.values():
                        worker_of(host).close()  # its successors are fresh workers, started like the others
                if epoch in _dropped(schedule, options):
                    reporter.report(Stage(f"epoch {epoch + 1} overlapped foreign load: run again"))
                t_close += time.monotonic() - t0
            epoch += 1
        assert schedule is not None
        keep = schedule.kept(options.rounds, options.under_load)
        busy_epochs = _dropped(schedule, options)
        clean_epochs = len(schedule.epochs_run()) - len(busy_epochs)
        summary = RoundsSummary(
            schedule="interleaved epochs",
            contestants=len(schedule.contestants),
            order_seed=options.seed,
            sweeps_run=schedule.sweeps_run,
            sweeps_kept=len(keep),
            contended_sweeps=len(schedule.contended_sweeps()),
            remeasured=remeasured,
            seconds=round(t_sweeps, 3),
            rel_precision=options.rel_precision,
            reached=reached,
            unmet=unmet_list,
            load=sentinel.seen(schedule.started, time.monotonic()) if sentinel is not None else summarize_ticks([], 0),
            waited_quiet=waited,
            epochs=options.epochs,
            epochs_run=len(schedule.epochs_run()),
            busy_epochs=len(busy_epochs),
            rounds_per_epoch=options.rounds,
            busy=clean_epochs < options.epochs,
            under_load=options.under_load,
            phases=Phases(
                start_s=round(t_start, 3),
                open_s=round(t_open, 3),
                sweeps_s=round(t_sweeps, 3),
                close_s=round(t_close, 3),
                total_s=round(time.monotonic() - t_all, 3),
            ),
            # an epoch's own cost is its workers' start as well as opening and closing its calls
            components=_components(schedule, keep, t_sweeps, t_start + t_open + t_close, epoch),
        )
        runs = []
        for label, (m, audit) in last.items():
            measured = {
                c.plan.key: (schedule.timing(c, keep), c.opened.info if c.opened else None, c.end)
                for c in m.contestants
            }
            results: dict[str, Any] = dict(profiled.get(label, {}))
            for g in groups:
                mine = {p.key for p in g.plans(options)}
                part = {k: v for k, v in measured.items() if k in mine}
                if part:
                    results[g.name] = g.assemble(part)
            memory = bench_memory.by_call(m.contestants, reports.get(label, []), baseline_rss)
            runs.append(BackendRun(m.identity, audit, results, twin=m.twin, reference=m.reference, memory=memory))
    return runs, summary


def _dropped(schedule: Schedule, options: BenchOptions) -> set[int]:
    """The epochs whose sweeps overlapped foreign load and are run again (none when measuring under load)."""
    return set() if options.under_load else schedule.busy_epochs(options.rounds)


def _components(schedule: Schedule, keep: set[int], sweeps_s: float, epochs_s: float, epochs: int) -> list[Components]:
    """Each paired ratio's variance components (log per-sweep ratios by epoch), with the costs of this run."""
    out = []
    round_s = sweeps_s / max(1, schedule.sweeps_run)
    epoch_s = epochs_s / max(1, epochs)
    for ref, c in schedule.pairs(keep):
        per_sweep = [b / a for a, b in zip(ref.per_call(keep), c.per_call(keep), strict=True)]
        vc = variance_components(per_sweep, c.kept_epochs(keep), round_s, epoch_s)
        if vc is not None:
            need = vc.epochs_for(0.03) if vc.between > 0 else None
            out.append(Components(c.label, vc, need))
    return out


def _backend_groups(groups: Sequence[BenchGroup[Any]]) -> list[BackendGroup[Any]]:
    return [g for g in groups if isinstance(g, BackendGroup)]


def _standalone_groups(groups: Sequence[BenchGroup[Any]]) -> list[StandaloneGroup[Any]]:
    return [g for g in groups if isinstance(g, StandaloneGroup)]


def run_bench(
    selections: Sequence[Selection],
    options: BenchOptions,
    reporter: Reporter = SILENT,
    ceiling: Roofline | None = None,
) -> BenchRun:
    """Measure every selected backend and mode in interleaved sweeps, the standalone groups, and the roofline
    (`ceiling`: a roofline this machine measured before for the same options, reused instead).

    Raises:
        CvaeBenchError: an unknown group in `options.groups`.
    """
    groups = select(options.groups)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    load_before = machine_load()
    waited = None
    if options.wait_quiet > 0:
        reporter.report(Stage(f"waiting up to {options.wait_quiet:.0f} s for a quiet machine"))
        quiet, secs = wait_quiet(options.wait_quiet)
        waited = WaitedQuiet(allowed_s=options.wait_quiet, waited_s=round(secs, 1), quiet=quiet)
        if not quiet:
            reporter.report(Stage(f"the machine stayed busy for {secs:.0f} s; timing anyway"))
    with Sentinel() as sentinel:
        roofline = ceiling if ceiling is not None else measure_ceiling(options, reporter)
        backends: list[BackendRun] = []
        rounds = None
        per_backend = _backend_groups(groups)
        if per_backend and selections:
            backends, rounds = measure_backends(
                selections, per_backend, options, sentinel, reporter, waited, _standalone_groups(groups)
            )
        identities = [b.identity for b in backends if not b.twin and not b.reference]
        standalone = {g.name: g.measure(options, identities, reporter) for g in _standalone_groups(groups)}
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
    reporter: Reporter,
    command: str,
) -> list[ComparisonRow]:
    """Train every (backend, mode) `repeats` times to the default target, in sequence; returns the rows.

    Like `run --resume`, a run whose result is already in `folder` (a bench repeated with `--force` into
    the same `--out`) is kept, not run again, and one that was interrupted goes on from its checkpoint.
    """
    from cvae_bench.training.checkpoint import remove_checkpoint
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
                remove_checkpoint(cell)  # a run killed between its result.json and this removal
                reporter.report(Stage(f"{what}: finished before, kept"))
                results.append(done)
                continue
            reporter.report(Stage(what))
            run_opts = replace(base, mode=mode, config=TrainConfig(seed=seed))
            try:
                results.append(run_backend(registry.get(name), run_opts, cell, resume=True))
            except WorkerError as exc:  # a run that crashes is reported; the others go on
                reporter.report(Message(f"error: {name}:{mode} seed {seed} failed: {exc}", "warning"))
    return write_comparison(folder, results, command) if results else []
