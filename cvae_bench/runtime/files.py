"""Durable atomic writes, output folders claimed by one writer, and the canonical safetensors weight files."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec

#: The errors of writing that are the machine's, not ours: a full disk or quota, a read-only or forbidden place.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG})


def _write_error(target: Path, exc: OSError) -> CvaeBenchError:
    return CvaeBenchError(f"cannot write {target}: {exc.strerror or exc}")


def fsync_dir(folder: str | Path) -> None:
    """fsync a folder, so that a rename or a new entry in it survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems cannot fsync a folder; the rename still happened
            os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block succeeds, make it `path` durably.

    The block writes the temporary file; then it is fsynced, renamed over `path`, and the folder fsynced
    (as git and SQLite commit a file), so that a crash leaves either the old file or the new one, whole.
    However the block ends, no temporary file is left behind.

    Raises:
        CvaeBenchError: a full disk, a quota, or a permission error, here or in the block (one line, naming
            `path`); other errors of the block propagate as they are.
    """
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        if exc.errno in _WRITE_ERRNOS or exc.errno == errno.ENOENT:
            raise _write_error(target, exc) from exc
        raise
    os.close(fd)
    try:
        # mkstemp makes the file 0600; give it the permissions a plain open() would (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError as exc:
        if exc.errno in _WRITE_ERRNOS:
            raise _write_error(target, exc) from exc
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> str:
    """Write `data` durably and atomically (see `atomic_path`).

    Returns:
        The SHA-256 of the bytes written.
    """
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    return hashlib.sha256(data).hexdigest()


def write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) durably and atomically."""
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented, strict JSON (no NaN or Infinity) durably and atomically.

    Raises:
        CvaeBenchError: `obj` holds a non-finite number (records must turn those into None first), or the
            file cannot be written.
    """
    try:
        text = json.dumps(obj, indent=2, default=_json_default, allow_nan=False)
    except ValueError as exc:
        raise CvaeBenchError(f"refusing to write {path}: {exc} (strict JSON has no NaN or Infinity)") from exc
    write_text(path, text + "\n")


def read_json(path: str | Path) -> Any:
    """The strict JSON document in `path`, as `write_json` writes it.

    NaN and Infinity are refused here (Python's json would read them), so no reader sees a non-finite number
    that a writer of ours could not have written.

    Raises:
        CvaeBenchError: it cannot be read, is not UTF-8, or is not strict JSON (one line, naming `path`).
    """

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not strict JSON")

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=refuse)
    except UnicodeDecodeError as exc:
        raise CvaeBenchError(f"cannot read {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (OSError, ValueError, RecursionError) as exc:
        raise CvaeBenchError(f"cannot read {path}: {exc}") from exc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def ensure_dir(path: str | Path) -> Path:
    """Create `path` (and parents) and check that it is writable.

    Raises:
        CvaeBenchError: it cannot be created or written to.
    """
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CvaeBenchError(f"cannot create output folder {p}: {exc.strerror}") from exc
    if not os.access(p, os.W_OK | os.X_OK):
        raise CvaeBenchError(f"output folder {p} is not writable; pass another with --out")
    return p


def save_weights(
    path: str | Path, weights: Mapping[str, NDArray[np.floating]], metadata: Mapping[str, str] | None = None
) -> str:
    """Write canonical weights as safetensors (float32), durably and atomically.

    Returns:
        The SHA-256 of the bytes written (the file's, without reading it back).

    Raises:
        CvaeBenchError: the file cannot be written (full disk, permissions); nothing is left at `path` then.
    """
    from safetensors.numpy import save

    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(weights.items())}
    return write_bytes(path, save(arrays, metadata=dict(metadata or {})))


def load_weights(path: str | Path, spec: ModelSpec = DEFAULT_SPEC) -> dict[str, NDArray[np.float32]]:
    """Read and check a canonical weights file.

    Raises:
        CvaeBenchError: missing/unreadable file, names/shapes/dtypes that differ from the spec, or a tensor
            holding NaN or infinity.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    p = Path(path)
    try:
        weights = load_file(str(p))
    except (OSError, SafetensorError, ValueError) as exc:
        raise CvaeBenchError(f"cannot read weights {p}: {exc}") from exc
    expected = spec.weight_shapes()
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise CvaeBenchError(
            f"weights {p} do not match the model: missing {missing or 'nothing'}, unexpected {extra or 'nothing'}"
        )
    for name, shape in expected.items():
        arr = weights[name]
        if arr.shape != shape or arr.dtype != np.float32:
            raise CvaeBenchError(f"weights {p}: {name} is {arr.dtype}{list(arr.shape)}, expected float32{list(shape)}")
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise CvaeBenchError(
                f"weights {p}: {name} holds {bad} non-finite value(s) (NaN or infinity); "
                "these weights come from a run that diverged"
            )
    return weights


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: The lock file a run holds in its folder while it writes there; it holds the PID of the writer.
LOCK_NAME = ".cvae-bench.lock"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


class FolderLock:
    """A folder held by one writing process: an O_EXCL lock file holding its PID, removed on release."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self._held = False

    def acquire(self) -> None:
        """Take the lock, taking over a stale one whose process is gone.

        Raises:
            CvaeBenchError: another living process holds it (naming its PID), or the folder is not writable.
        """
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and owner != os.getpid() and _pid_alive(owner):
                    raise CvaeBenchError(
                        f"{self.folder} is in use by another cvae-bench run (PID {owner}, lock {self.path}); "
                        "wait for it to end or pass another --out"
                    ) from None
                if owner == os.getpid():
                    raise CvaeBenchError(f"{self.folder} is already being written by this process") from None
                with contextlib.suppress(FileNotFoundError):  # stale: its writer died without cleaning up
                    os.unlink(self.path)
                continue
            except OSError as exc:
                raise _write_error(self.path, exc) from exc
            try:
                os.write(fd, f"{os.getpid()}\n".encode())
                os.fsync(fd)
            except OSError as exc:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                raise _write_error(self.path, exc) from exc
            os.close(fd)
            self._held = True
            return
        raise CvaeBenchError(f"cannot take the lock {self.path}: it keeps coming back")

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or "0")
        except (OSError, ValueError):
            return None  # unreadable or half-written by a writer that died: stale

    def release(self) -> None:
        """Remove the lock file (only if this process holds it)."""
        if self._held:
            self._held = False
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_output_folder(path: str | Path, force: bool = False) -> FolderLock:
    """Create (if needed) and lock an output folder for one writer; refuse one that already holds anything.

    Use as `with claim_output_folder(out, force): ...`; the lock is removed when the block ends.

    Args:
        path: the folder.
        force: accept a folder that already holds files (they may be replaced).

    Raises:
        CvaeBenchError: the folder holds anything and `force` is not set, another living process is writing
            into it, or it cannot be created or written to.
    """
    folder = ensure_dir(path)
    lock = FolderLock(folder)
    lock.acquire()
    try:
        if not force:
            held = sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME)
            if held:
                shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
                raise CvaeBenchError(
                    f"output folder {folder} is not empty ({shown}); pass --force to write into it anyway, "
                    "or choose another --out"
                )
    except BaseException:
        lock.release()
        raise
    return lock
