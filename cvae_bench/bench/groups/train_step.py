"""train-step: one optimiser step at the spec's batch on real data already on the device, per backend and mode.

The job (`train_step_job`) runs in the backend's worker: real batches go to the backend's memory/device
(`load_train_data`, `set_order`), then `train_step(i)` is timed in rounds that `synchronize()` ends. The
backend's build, the data upload, the first step (compilation) and the warm-up are timed apart and never
enter the per-step figures.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from cvae_bench.bench.fairness import AuditEntry
from cvae_bench.bench.groups.base import BackendGroup, Measured, fmt_time, rate_cells
from cvae_bench.bench.options import BenchOptions
from cvae_bench.bench.records import BackendIdentity, Entry, MeasuredInfo, measured
from cvae_bench.bench.roofline import TRAIN_STEP, Roofline, Workload, train_step_workload
from cvae_bench.bench.rounds import Plan, Timed, run_alone
from cvae_bench.bench.timing import Timing
from cvae_bench.core.records import Record


@dataclass(frozen=True)
class TrainStepResult(Record):
    """What `train_step_job` returns.

    Attributes:
        timing: the timed rounds of steps.
        first_step_s: the first step (compilation), timed apart.
        data_load_s: the upload of the training data to the backend.
        loss: mean training loss over all steps (a sanity check, read after the clock stopped).
        steps: steps taken in all; batch: images per step.
    """

    timing: Timing
    first_step_s: float
    data_load_s: float
    loss: float
    steps: int
    batch: int


@dataclass(frozen=True, kw_only=True)
class TrainStepInfo(MeasuredInfo):
    """The `extra_info` of a train-step entry."""

    build_s: float
    first_step_s: float
    data_load_s: float
    loss: float
    ms_per_step: float
    full_floor_s: float | None = None
    fraction_of_full_floor: float | None = None


@dataclass(frozen=True)
class TrainStepSetup(Record):
    """What `train_step_setup` measures apart from the rounds."""

    first_step_s: float
    data_load_s: float
    batch: int


@dataclass(frozen=True)
class TrainStepEnd(Record):
    """What a train-step call returns after its last round: the mean loss and the steps taken."""

    loss: float
    steps: int


def train_step_setup(
    backend: Any,
    emit: Any,
    *,
    warmup: int = 20,
    dataset: str = "mnist",
    data_path: str | None = None,
    train_subset: int | None = None,
    seed: int = 0,
) -> tuple[Timed, TrainStepSetup]:
    """Rounds-engine setup (in the worker): real batches on the device, the first step timed apart.

    Steps walk through one shuffled epoch of full batches (wrapping round to its start, never calling
    `set_order` inside the timed loop, whose one gather per epoch is not a step's cost).
    """
    from cvae_bench.data.loading import as_float, load_dataset

    batch = backend.spec.batch_size
    x, y, _, _ = as_float(load_dataset(dataset, data_path, download=False))
    x, y = x[:train_subset], y[:train_subset]
    t0 = time.perf_counter()
    backend.load_train_data(x, y)
    backend.synchronize()
    data_load_s = time.perf_counter() - t0
    backend.set_order(np.random.default_rng(seed).permutation(len(x)))
    backend.synchronize()
    full_batches = len(x) // batch
    if full_batches < 1:
        raise ValueError(f"train-step needs at least {batch} training images, got {len(x)}")
    state = {"i": 0}
    last_loss = [float("nan")]

    def step() -> None:
        backend.train_step(state["i"] % full_batches)
        state["i"] += 1

    def end_round() -> None:
        # The round ends on the work's own result: take_loss() returns the mean loss of the steps since its
        # last call, so it cannot answer before the round's last step is done, whatever synchronize() does
        # (a plugin that forgot to synchronise, or returns from train_step before the step ran, is timed
        # for its real work). Its cost is one host read per round, not per step.
        backend.synchronize()
        last_loss[0] = backend.take_loss()

    def finish() -> TrainStepEnd:
        loss = last_loss[0] if state["i"] else backend.take_loss()
        if not np.isfinite(loss):
            raise RuntimeError(f"training loss is {loss} after {state['i']} benchmark steps")
        return TrainStepEnd(loss=float(loss), steps=state["i"])

    t0 = time.perf_counter()
    step()
    backend.synchronize()
    first_step_s = time.perf_counter() - t0
    emit({"type": "bench", "what": "first step", "seconds": first_step_s})
    timed = Timed(fn=step, sync=end_round, warmup=warmup, finish=finish)
    return timed, TrainStepSetup(first_step_s=first_step_s, data_load_s=data_load_s, batch=batch)


def plain_loop_setup(backend: Any, emit: Any, *, loop: str, **kwargs: Any) -> tuple[Timed, TrainStepSetup]:
    """Rounds-engine setup of a plain-loop reference row (`bench.plain`), in the shape of train-step's own: the
    row's call counts as its optimiser steps, its first call is the first step, its end the last loss."""
    from cvae_bench.bench.plain import PLAIN_LOOPS, PlainLoopEnd, PlainLoopInfo

    timed, info = PLAIN_LOOPS[loop].setup(backend, emit, **kwargs)
    assert isinstance(info, PlainLoopInfo)
    own_finish = timed.finish

    def finish() -> TrainStepEnd:
        end = own_finish() if own_finish is not None else None
        assert isinstance(end, PlainLoopEnd)
        return TrainStepEnd(loss=end.loss, steps=end.steps)

    timed.finish, timed.units = finish, info.steps_per_call
    return timed, TrainStepSetup(first_step_s=info.first_call_s, data_load_s=0.0, batch=info.batch)


def train_step_job(
    backend: Any,
    emit: Any,
    *,
    rounds: int = 15,
    min_time: float = 0.1,
    warmup: int = 20,
    dataset: str = "mnist",
    data_path: str | None = None,
    train_subset: int | None = None,
    seed: int = 0,
) -> TrainStepResult:
    """Worker job: every round of `train_step` in a row (the rounds engine's setup, timed alone)."""
    timing, setup, end = run_alone(
        train_step_setup,
        backend,
        emit,
        rounds=rounds,
        min_time=min_time,
        warmup=warmup,
        dataset=dataset,
        data_path=data_path,
        train_subset=train_subset,
        seed=seed,
    )
    return _result(timing, setup, end)


def _result(timing: Timing, setup: TrainStepSetup, end: TrainStepEnd) -> TrainStepResult:
    return TrainStepResult(
        timing=timing,
        first_step_s=setup.first_step_s,
        data_load_s=setup.data_load_s,
        loss=end.loss,
        steps=end.steps,
        batch=setup.batch,
    )


class TrainStep(BackendGroup[TrainStepResult]):
    """train-step: see the module docstring."""

    name = "train-step"
    title = "train-step: one Adam step at batch 64 (data on device, synchronised)"
    headers = (
        "backend",
        "mode",
        "device",
        "ms/step (median)",
        "IQR",
        "images/s",
        "GFLOP/s",
        "of floor",
        "of full floor",
        "vs fastest",
        "first step",
        "build",
    )
    info_type = TrainStepInfo
    needs_data = True
    split_by_batch = False

    def workloads(self, options: BenchOptions) -> list[Workload]:
        return [train_step_workload(options.spec)]

    def plans(self, options: BenchOptions) -> list[Plan]:
        kwargs = {
            "warmup": options.warmup,
            "dataset": options.dataset,
            "data_path": options.data_path,
            "train_subset": options.train_subset,
        }
        return [Plan(self.name, self.name, options.spec.batch_size, train_step_setup, kwargs, options.min_time)]

    def assemble(self, measured: dict[str, Measured]) -> TrainStepResult:
        return _result(*measured[self.name])

    def entries(
        self, identity: BackendIdentity, result: TrainStepResult, roofline: Roofline, threads: int | None
    ) -> list[Entry]:
        floor = roofline.floor(TRAIN_STEP, result.batch)
        derived = measured(result.timing, result.batch, floor)
        info = TrainStepInfo(
            backend=identity.backend,
            mode=identity.variant,
            device=identity.device,
            versions=identity.versions,
            threads=threads,
            build_s=identity.build_s,
            first_step_s=result.first_step_s,
            data_load_s=result.data_load_s,
            loss=result.loss,
            ms_per_step=derived["median_s"] * 1e3,
            **derived,
        )
        params = {**identity.params, "batch": result.batch}
        return [Entry.make(self.name, f"{identity.backend}-{identity.variant}", params, result.timing, info)]

    def row(self, entry: Entry, ratio: float) -> list[str]:
        x: TrainStepInfo = self.info(entry)
        s = entry.stats
        return [
            x.backend,
            x.mode,
            x.device,
            f"{s.median * 1e3:.3f}",
            f"{s.iqr * 1e3:.3f}",
            *rate_cells(x, ratio),
            fmt_time(x.first_step_s),
            fmt_time(x.build_s),
        ]

    def refine_audit(self, entry: AuditEntry, result: TrainStepResult) -> AuditEntry:
        return dataclasses.replace(
            entry,
            compile=f"{entry.compile}; first step {fmt_time(result.first_step_s)} reported apart",
            data_on_device=f"yes: load_train_data before timing ({fmt_time(result.data_load_s)})"
            if result.data_load_s
            else "as the loop's users hold it (torch: one tensor; fit: NumPy arrays)",
        )
