"""Checkpoints of a training run, written at every evaluation so that `run --resume` loses little.

A checkpoint is a folder `checkpoint/` inside the run folder:

- `weights-<step>.safetensors`: the canonical weights;
- `state-<step>.npz`: the backend's training state (Adam moments and step, the state of its noise
  generator) and the current epoch's order;
- `checkpoint.json`: the loop's own state (step, the order generator's state, history, times), written
  last, naming the two files above and their SHA-256: a checkpoint is whole only when all three agree.

Each file is written atomically and durably, and the files of the previous checkpoint are removed only
after the new checkpoint.json is in place, so a kill at any point leaves the previous checkpoint or the new
one, whole. `progress.json` beside them is rewritten at every progress report (not fsynced: it only says how
much work after the last checkpoint a crash cost).
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.core.records import Record, RecordError
from cvae_bench.models.spec import ModelSpec
from cvae_bench.runtime.files import (
    ensure_dir,
    file_sha256,
    load_weights,
    read_json,
    save_weights,
    temporary_name,
    write_bytes,
    write_json,
)
from cvae_bench.training.audit import AuditState
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
    weights_file: str = ""
    weights_sha256: str = ""
    state_file: str = ""
    state_sha256: str = ""
    #: What the run-time audit has found so far (None: the run is not audited, or an older checkpoint).
    audit: AuditState | None = None


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
    """Write a checkpoint into `run_folder/checkpoint/`: its files first, checkpoint.json naming them last,
    then remove the previous checkpoint's files."""
    folder = ensure_dir(Path(run_folder) / CHECKPOINT_DIR)
    weights_file, state_file = f"weights-{loop.step:09d}.safetensors", f"state-{loop.step:09d}.npz"
    weights_sha = save_weights(folder / weights_file, weights)
    arrays = {_STATE_PREFIX + k: np.asarray(v) for k, v in backend_state.items()}
    arrays[_ORDER] = np.asarray(order, np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    state_sha = write_bytes(folder / state_file, buffer.getvalue())
    done = LoopState(
        **{
            **loop.__dict__,
            "weights_file": weights_file,
            "weights_sha256": weights_sha,
            "state_file": state_file,
            "state_sha256": state_sha,
        }
    )
    write_json(folder / "checkpoint.json", done.to_json())
    for old in (*folder.glob("weights-*.safetensors"), *folder.glob("state-*.npz")):
        if old.name not in (weights_file, state_file):
            old.unlink(missing_ok=True)


def write_progress(run_folder: str | Path, progress: Progress) -> None:
    """Record how far training got since the last checkpoint (cheap: no fsync, best effort)."""
    folder = Path(run_folder) / CHECKPOINT_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / temporary_name("progress.json")
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
        loop = LoopState.from_json(read_json(meta))
    except RecordError as exc:  # read, but not a checkpoint record: say which file
        raise CvaeBenchError(f"cannot read checkpoint {meta}: {exc}") from exc
    for name, want in ((loop.weights_file, loop.weights_sha256), (loop.state_file, loop.state_sha256)):
        path = folder / name
        if not name or not path.is_file() or file_sha256(path) != want:
            raise CvaeBenchError(f"checkpoint {folder} is not whole: {name or '?'} does not match checkpoint.json")
    with np.load(folder / loop.state_file) as npz:
        arrays = {k: npz[k] for k in npz.files}
    order = arrays.pop(_ORDER).astype(np.int64)
    state = {k.removeprefix(_STATE_PREFIX): v for k, v in arrays.items()}
    progress = None
    if (folder / "progress.json").is_file():
        try:
            progress = Progress.from_json(read_json(folder / "progress.json"))
        except CvaeBenchError:  # a lost progress note only makes the time lost less precise
            progress = None
    return Checkpoint(loop, load_weights(folder / loop.weights_file, spec), state, order, progress)


def remove_checkpoint(run_folder: str | Path) -> None:
    """Remove a finished run's checkpoint folder, whole (its result.json and weights now say everything)."""
    folder = Path(run_folder) / CHECKPOINT_DIR
    (folder / "checkpoint.json").unlink(missing_ok=True)  # first: without it, nothing else is a checkpoint
    # Everything else goes too, whatever a killed writer left there (temporaries, a stray progress note).
    shutil.rmtree(folder, ignore_errors=True)


def time_lost(checkpoint: Checkpoint) -> Resumption:
    """The resume record: training time done after the checkpoint (to be redone)."""
    p = checkpoint.progress
    lost = max(0.0, p.train_s - checkpoint.loop.train_s) if p is not None and p.step > checkpoint.loop.step else 0.0
    return Resumption(from_step=checkpoint.loop.step, lost_train_s=lost)
