"""Train-to-target: the tutorial's recipe until the shared evaluator reports val −ELBO ≤ target."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.backends.base import Backend
from cvae_bench.core.defaults import DEFAULT_MAX_EPOCHS, DEFAULT_TARGET
from cvae_bench.models.evaluator import Evaluator
from cvae_bench.training.checkpoint import Checkpoint, LoopState, Progress, save_checkpoint, write_progress
from cvae_bench.training.records import Divergence, EvalPoint, FinalEval, TrainOutcome

Event = dict[str, Any]
EventSink = Callable[[Event], None]


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
    """

    target: float | None = DEFAULT_TARGET
    max_epochs: int = DEFAULT_MAX_EPOCHS
    epochs: int | None = None
    eval_every: int | None = None
    seed: int = 0
    log_every: int = 100
    recipe_check: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


def _noop(_: Event) -> None:
    pass


def train(
    backend: Backend,
    x_train: NDArray[np.float32],
    y_train: NDArray[np.float32],
    evaluator: Evaluator,
    config: TrainConfig,
    on_event: EventSink = _noop,
    checkpoint_to: Path | None = None,
    resume: Checkpoint | None = None,
) -> TrainOutcome:
    """Train `backend` and return what was measured.

    Times are wall-clock seconds. `time_to_target_s` counts training steps only, from the second step
    on: the first step (which includes any compilation) is `first_step_s`, and evaluations are
    `eval_time_s`, both reported apart. A non-finite training loss or val −ELBO stops the run at once
    with status `diverged`: training on NaN for the remaining epochs would only waste the time.

    With `checkpoint_to` (a run folder), a checkpoint is written after every evaluation; with `resume`,
    training goes on from one, exactly where the interrupted run stood (weights, Adam state, noise and
    order generators, history, times), so the history is the one an uninterrupted run would have made.
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

    t_load = time.perf_counter()
    backend.load_train_data(x_train, y_train)
    backend.synchronize()
    load_s = time.perf_counter() - t_load
    on_event(
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
    chunk_start = time.perf_counter()
    chunk_steps = 0
    while step < total_steps and reached_at is None and divergence is None:
        index = step % steps_per_epoch
        if index == 0:
            order = rng.permutation(n)
            backend.set_order(order)
        backend.train_step(index)
        step += 1
        chunk_steps += 1
        at_eval = step % eval_every == 0 or step == total_steps
        if step == 1 or chunk_steps == config.log_every or at_eval:
            loss = backend.take_loss()  # waits for the device
            elapsed = time.perf_counter() - chunk_start
            train_s += elapsed
            if step == 1:
                first_step_s = elapsed
            else:
                chunk_ms.append(1e3 * elapsed / chunk_steps)
            on_event(
                {
                    "type": "progress",
                    "step": step,
                    "epoch": step / steps_per_epoch,
                    "loss": loss,
                    "steps_per_s": chunk_steps / elapsed if elapsed > 0 else float("nan"),
                }
            )
            if checkpoint_to is not None:
                write_progress(checkpoint_to, Progress(step=step, train_s=train_s))
            if not math.isfinite(loss):
                divergence = Divergence(step=step, what="training loss", value=str(loss))
                at_eval = True  # evaluate once more, so that the history shows where it ended
            if at_eval:
                t_eval = time.perf_counter()
                ev = evaluator(backend)
                eval_s += time.perf_counter() - t_eval
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
                    on_event({"type": "eval", **point.to_json()})
                if divergence is not None:
                    on_event({"type": "diverged", **divergence.to_json()})
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
                    )
                    save_checkpoint(checkpoint_to, state, backend.get_weights(), backend.get_train_state(), order)
            chunk_start = time.perf_counter()
            chunk_steps = 0

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
    )
