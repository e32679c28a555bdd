"""Train-to-target: the tutorial's recipe until the shared evaluator reports val −ELBO ≤ target."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.backends.base import Backend
from cvae_bench.core.defaults import DEFAULT_MAX_EPOCHS, DEFAULT_TARGET
from cvae_bench.core.events import Emit
from cvae_bench.models.evaluator import Evaluator
from cvae_bench.training.audit import Auditor
from cvae_bench.training.checkpoint import Checkpoint, LoopState, Progress, save_checkpoint, write_progress
from cvae_bench.training.divergence import blown_weights
from cvae_bench.training.records import Divergence, EvalPoint, FinalEval, TrainOutcome


@dataclass(frozen=True)
class TrainConfig:
    """How long to train and how often to evaluate.

    Attributes:
        target: stop at the first evaluation with val −ELBO ≤ target; None trains `epochs` epochs.
        max_epochs: give up after this many epochs when the target is not reached.
        epochs: train exactly this many epochs without a target (overrides `target`).
        eval_every: evaluate every this many steps; None means once per epoch.
        seed: the training seed (initial weights, ε, shuffling).
        log_every: steps between progress events (each one reads the loss, which syncs the device).
        recipe_check: run the conformance suite's recipe checks on the backend before training
            (`training.recipe`); a backend that fails them is marked deviant.
        audit: audit the run as it trains (`training.audit`): a few steps per epoch replayed with the
            float64 reference, outside the timed chunks; a backend that fails it is marked deviant.
    """

    target: float | None = DEFAULT_TARGET
    max_epochs: int = DEFAULT_MAX_EPOCHS
    epochs: int | None = None
    eval_every: int | None = None
    seed: int = 0
    log_every: int = 100
    recipe_check: bool = True
    audit: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


def _noop(_: dict[str, Any]) -> None:
    pass


def train(
    backend: Backend,
    x_train: NDArray[np.float32],
    y_train: NDArray[np.float32],
    evaluator: Evaluator,
    config: TrainConfig,
    emit: Emit = _noop,
    checkpoint_to: Path | None = None,
    resume: Checkpoint | None = None,
) -> TrainOutcome:
    """Train `backend` and return what was measured.

    Times are wall-clock seconds. `time_to_target_s` counts training steps only, from the second step
    on: the first step (which includes any compilation) is `first_step_s`, and evaluations are
    `eval_time_s`, both reported apart. A non-finite training loss or val −ELBO, or weights the optimiser
    has lost (`training.divergence`), stop the run at once with status `diverged`: training on NaN for the
    remaining epochs would only waste the time.

    With `checkpoint_to` (a run folder), a checkpoint is written after every evaluation; with `resume`,
    training goes on from one, exactly where the interrupted run stood (weights, Adam state, noise and
    order generators, history, times, the audit's findings), so the history is the one an uninterrupted run
    would have made.

    With `config.audit`, a few steps per epoch are audited (`training.audit`). An audited step is taken
    outside the timed parts: the part under way is closed with `take_loss` before it; the step counts as
    training time at its chunk's per-step rate (`_Chunk.train_s`), and the audit's own work (reads, and the
    replays, done at the evaluations) not at all; the chunk's loss is the step-weighted mean of its parts,
    and `ms_per_step` is over the unaudited steps.
    """
    n = len(x_train)
    batch = backend.spec.batch_size
    steps_per_epoch = math.ceil(n / batch)
    fixed_epochs = config.epochs is not None
    target = None if fixed_epochs else config.target
    epochs = config.epochs if config.epochs is not None else config.max_epochs
    total_steps = epochs * steps_per_epoch
    eval_every = config.eval_every or steps_per_epoch
    rng = np.random.default_rng(config.seed)
    emit({"type": "stage", "what": "loading the data into the backend"})  # silent: see runtime.worker
    auditor = None
    if config.audit:
        auditor = Auditor(backend, x_train, y_train, config.seed, state=resume.loop.audit if resume else None)
        if not auditor.state.seeded:
            auditor.check_seeding(backend.get_weights())  # the weights it was built with: nothing has trained

    t_load = time.perf_counter()
    backend.load_train_data(x_train, y_train)
    backend.synchronize()
    load_s = time.perf_counter() - t_load
    emit(
        {
            "type": "start",
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
            "eval_every": eval_every,
            "target": target,
        }
    )

    history: list[EvalPoint] = []
    chunk_ms: list[float] = []  # per-step ms of each timed chunk, first step excluded
    train_s = eval_s = first_step_s = 0.0
    reached_at: EvalPoint | None = None
    divergence: Divergence | None = None
    step = 0
    order = np.arange(0)
    if resume is not None:
        loop = resume.loop
        backend.set_weights(resume.weights)  # resets the optimiser state, which the next line restores
        backend.set_train_state(resume.backend_state)
        rng.bit_generator.state = loop.order_rng
        history, chunk_ms = list(loop.history), list(loop.chunk_ms)
        train_s, eval_s, first_step_s, load_s = loop.train_s, loop.eval_s, loop.first_step_s, loop.load_s
        step, order = loop.step, resume.order
        if step % steps_per_epoch:
            backend.set_order(order)  # resumed in the middle of an epoch
            if auditor is not None:
                auditor.start_epoch(step // steps_per_epoch, order)
    emit({"type": "stage", "what": "first step"})  # may compile, silently: see runtime.worker
    chunk = _Chunk()
    while step < total_steps and reached_at is None and divergence is None:
        index = step % steps_per_epoch
        if index == 0:
            order = rng.permutation(n)
            backend.set_order(order)
            if auditor is not None:
                auditor.start_epoch(step // steps_per_epoch, order)
        if auditor is not None and auditor.wants(step):
            chunk.close_part(backend)  # the audited step and the audit's work stay out of the timed part
            step_s, step_loss = auditor.audit_step(step, order)
            chunk.add_audited(step_s, step_loss)
        else:
            backend.train_step(index)
            chunk.steps += 1
        step += 1
        at_eval = step % eval_every == 0 or step == total_steps
        if step == 1 or chunk.total_steps == config.log_every or at_eval:
            chunk.close_part(backend)  # waits for the device
            loss = chunk.loss()
            elapsed = chunk.train_s()
            train_s += elapsed
            if step == 1:
                first_step_s = elapsed
                if auditor is not None:
                    auditor.check_first_noise()
            elif chunk.timed_steps:
                chunk_ms.append(1e3 * chunk.timed_s / chunk.timed_steps)
            emit(
                {
                    "type": "progress",
                    "step": step,
                    "epoch": step / steps_per_epoch,
                    "loss": loss,
                    "steps_per_s": chunk.timed_steps / chunk.timed_s if chunk.timed_s > 0 else float("nan"),
                }
            )
            if checkpoint_to is not None:
                write_progress(checkpoint_to, Progress(step=step, train_s=train_s))
            if not math.isfinite(loss):
                divergence = Divergence(step=step, what="training loss", value=str(loss))
                at_eval = True  # evaluate once more, so that the history shows where it ended
            if at_eval:
                emit({"type": "stage", "what": "evaluation"})  # silent: see runtime.worker
                t_eval = time.perf_counter()
                ev = evaluator(backend)
                weights = backend.get_weights()  # held to a bound (`training.divergence`), and checkpointed
                eval_s += time.perf_counter() - t_eval
                if auditor is not None:
                    auditor.flush()  # the replays of the steps audited since the last evaluation
                point = EvalPoint(
                    step=step,
                    epoch=step / steps_per_epoch,
                    val_elbo=ev.val_elbo,
                    kl=ev.kl,
                    nll=ev.nll,
                    train_loss=loss if math.isfinite(loss) else None,
                    train_time_s=train_s,
                    wall_time_s=train_s + eval_s,
                )
                if not math.isfinite(ev.val_elbo):
                    divergence = divergence or Divergence(step=step, what="val -ELBO", value=str(ev.val_elbo))
                else:
                    history.append(point)
                    emit({"type": "eval", **point.to_json()})
                    divergence = divergence or blown_weights(weights, backend.spec, step)
                if divergence is not None:
                    emit({"type": "diverged", **divergence.to_json()})
                elif target is not None and ev.val_elbo <= target:
                    reached_at = point
                elif checkpoint_to is not None and step < total_steps:
                    state = LoopState(
                        step=step,
                        order_rng=dict(rng.bit_generator.state),
                        history=history,
                        chunk_ms=chunk_ms,
                        train_s=train_s,
                        eval_s=eval_s,
                        first_step_s=first_step_s,
                        load_s=load_s,
                        audit=auditor.state if auditor is not None else None,
                    )
                    save_checkpoint(checkpoint_to, state, weights, backend.get_train_state(), order)
            chunk = _Chunk()

    final = history[-1] if history else None
    if divergence is not None:
        status = "diverged"
    elif target is None:
        status = "fixed-epochs"
    else:
        status = "reached" if reached_at is not None else "not-reached"
    return TrainOutcome(
        status=status,
        target=target,
        reached=reached_at is not None if target is not None else None,
        steps_to_target=reached_at.step if reached_at else None,
        epochs_to_target=reached_at.epoch if reached_at else None,
        time_to_target_s=reached_at.train_time_s - first_step_s if reached_at else None,
        wall_time_to_target_s=reached_at.wall_time_s if reached_at else None,
        first_step_s=first_step_s,
        data_load_s=load_s,
        ms_per_step_median=statistics.median(chunk_ms) if chunk_ms else None,
        steps=step,
        epochs=step / steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
        train_time_s=train_s,
        eval_time_s=eval_s,
        final=FinalEval(final.step, final.epoch, final.val_elbo, final.kl, final.nll) if final else None,
        history=history,
        divergence=divergence,
        audit=auditor.finish() if auditor is not None else None,
    )


class _Chunk:
    """The steps between two progress reports: timed parts, split where a step is audited.

    A part's time runs from its first `train_step` to the `take_loss` that ends it (which waits for the
    device); an audited step is a part of its own, timed by the auditor without the audit's work.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.steps = 0  # unaudited steps of the part under way
        self.timed_s = 0.0
        self.timed_steps = 0
        self.audited_s = 0.0
        self.audited_steps = 0
        self.parts: list[tuple[float, int]] = []  # (mean loss, steps) of each closed part

    @property
    def total_steps(self) -> int:
        """Every step of the chunk so far, audited or not."""
        return self.timed_steps + self.steps + self.audited_steps

    def close_part(self, backend: Backend) -> None:
        """End the part under way (if it has steps) with `take_loss`, and start the clock for the next."""
        if self.steps:
            self.parts.append((backend.take_loss(), self.steps))
            self.timed_s += time.perf_counter() - self.start
            self.timed_steps += self.steps
            self.steps = 0
        self.start = time.perf_counter()

    def add_audited(self, seconds: float, loss: float) -> None:
        """Count an audited step (its own time and loss) into the chunk."""
        self.parts.append((loss, 1))
        self.audited_s += seconds
        self.audited_steps += 1
        self.start = time.perf_counter()

    def train_s(self) -> float:
        """The chunk's training time: its timed parts, and each audited step at the parts' per-step rate.

        An audited step's own time is measured alone, synchronised and after the audit's reads (cold caches):
        a few times a pipelined step's. Counted at its chunk's rate, the audit leaves the training time as it
        would be unaudited; a chunk with no unaudited step counts the audited ones as measured.
        """
        if not self.audited_steps:
            return self.timed_s
        if self.timed_steps:
            return self.timed_s * (1 + self.audited_steps / self.timed_steps)
        return self.audited_s

    def loss(self) -> float:
        """The chunk's mean training loss: `take_loss`'s own value when the chunk is one part."""
        if len(self.parts) == 1:
            return self.parts[0][0]
        if not self.parts:
            return float("nan")
        return sum(loss * k for loss, k in self.parts) / sum(k for _, k in self.parts)
