"""Checkpoints of a training run, written at every evaluation so that `run --resume` loses little.

A checkpoint is a folder `checkpoint/` inside the run folder:

- `weights.safetensors`: the canonical weights;
- `state.npz`: the backend's training state (Adam moments and step, the state of its noise generator) and
  the current epoch's order;
- `checkpoint.json`: the loop's own state (step, the order generator's state, history, times), written
  last and naming the SHA-256 of the two files above: a checkpoint is whole only when all three agree.

Each file is written atomically and durably, so a kill at any point leaves the previous checkpoint or the
new one. `progress.json` beside them is rewritten at every progress report (not fsynced: it only says how
much work after the last checkpoint a crash cost).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.errors import CvaeBenchError
from cvae_bench.models.spec import ModelSpec
from cvae_bench.records import Record
from cvae_bench.runtime.files import atomic_path, ensure_dir, file_sha256, load_weights, save_weights, write_json
from cvae_bench.training.records import EvalPoint, Resumption

CHECKPOINT_DIR = "checkpoint"
_STATE_PREFIX = "backend/"
_ORDER = "order"


@dataclass(frozen=True)
class LoopState(Record):
    """Where the training loop stands after an evaluation."""

    step: int
    order_rng: dict[str, Any]
    history: list[EvalPoint]
    chunk_ms: list[float]
    train_s: float
    eval_s: float
    first_step_s: float
    load_s: float
    weights_sha256: str = ""
    state_sha256: str = ""


@dataclass(frozen=True)
class Progress(Record):
    """The last progress report of a run (how far it got after its last checkpoint)."""

    step: int
    train_s: float


@dataclass
class Checkpoint:
    """A whole checkpoint, read back."""

    loop: LoopState
    weights: dict[str, NDArray[np.float32]]
    backend_state: dict[str, NDArray[Any]]
    order: NDArray[np.int64]
    progress: Progress | None = None


def save_checkpoint(
    run_folder: str | Path,
    loop: LoopState,
    weights: dict[str, NDArray[np.float32]],
    backend_state: dict[str, NDArray[Any]],
    order: NDArray[np.int64],
) -> None:
    """Write a checkpoint into `run_folder/checkpoint/` (weights and state first, checkpoint.json last)."""
    folder = ensure_dir(Path(run_folder) / CHECKPOINT_DIR)
    save_weights(folder / "weights.safetensors", weights)
    arrays = {_STATE_PREFIX + k: np.asarray(v) for k, v in backend_state.items()}
    arrays[_ORDER] = np.asarray(order, np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    with atomic_path(folder / "state.npz") as tmp:
        tmp.write_bytes(buffer.getvalue())
    done = LoopState(
        **{
            **loop.__dict__,
            "weights_sha256": file_sha256(folder / "weights.safetensors"),
            "state_sha256": file_sha256(folder / "state.npz"),
        }
    )
    write_json(folder / "checkpoint.json", done.to_json())


def write_progress(run_folder: str | Path, progress: Progress) -> None:
    """Record how far training got since the last checkpoint (cheap: no fsync, best effort)."""
    folder = Path(run_folder) / CHECKPOINT_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".progress.json.tmp"
        tmp.write_text(json.dumps(progress.to_json()))
        tmp.replace(folder / "progress.json")
    except OSError:
        pass  # losing a progress note only makes the reported time lost less precise


def load_checkpoint(run_folder: str | Path, spec: ModelSpec) -> Checkpoint | None:
    """The run folder's checkpoint, or None when there is none.

    Raises:
        CvaeBenchError: a checkpoint whose files do not agree with each other (named), or unreadable.
    """
    folder = Path(run_folder) / CHECKPOINT_DIR
    meta = folder / "checkpoint.json"
    if not meta.is_file():
        return None
    try:
        loop = LoopState.from_json(json.loads(meta.read_text()))
    except (OSError, ValueError) as exc:
        raise CvaeBenchError(f"cannot read checkpoint {meta}: {exc}") from exc
    for name, want in (("weights.safetensors", loop.weights_sha256), ("state.npz", loop.state_sha256)):
        path = folder / name
        if not path.is_file() or file_sha256(path) != want:
            raise CvaeBenchError(f"checkpoint {folder} is not whole: {name} does not match checkpoint.json")
    with np.load(folder / "state.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    order = arrays.pop(_ORDER).astype(np.int64)
    state = {k.removeprefix(_STATE_PREFIX): v for k, v in arrays.items()}
    progress = None
    if (folder / "progress.json").is_file():
        try:
            progress = Progress.from_json(json.loads((folder / "progress.json").read_text()))
        except (OSError, ValueError, CvaeBenchError):
            progress = None
    return Checkpoint(loop, load_weights(folder / "weights.safetensors", spec), state, order, progress)


def remove_checkpoint(run_folder: str | Path) -> None:
    """Remove a finished run's checkpoint (its result.json and weights now say everything)."""
    folder = Path(run_folder) / CHECKPOINT_DIR
    for name in ("checkpoint.json", "weights.safetensors", "state.npz", "progress.json"):
        (folder / name).unlink(missing_ok=True)
    for leftover in folder.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def time_lost(checkpoint: Checkpoint) -> Resumption:
    """The resume record: training time done after the checkpoint (to be redone)."""
    p = checkpoint.progress
    lost = max(0.0, p.train_s - checkpoint.loop.train_s) if p is not None and p.step > checkpoint.loop.step else 0.0
    return Resumption(from_step=checkpoint.loop.step, lost_train_s=lost)
