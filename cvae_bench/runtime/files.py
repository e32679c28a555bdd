"""Durable atomic writes, output folders claimed by one writer, and the canonical safetensors weight files."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.core.checks import check_output_folder
from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec

#: The errors of writing that are the machine's, not ours: a full disk or quota, a read-only or forbidden place.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG})


#: What ends the name of every temporary file of our atomic writers: `.<target>.<pid>-<random>.tmp`.
TMP_SUFFIX = ".tmp"
#: A temporary file of ours, with the PID of the process that wrote it (so that a stale one can be told apart).
_TMP_NAME = re.compile(r"^\..+\.(\d+)-[A-Za-z0-9_]+\.tmp$")


def temporary_name(target: str, tag: str = "") -> str:
    """A fixed temporary name for `target`, in the recognisable form (for writers that do not use mkstemp)."""
    return f".{target}.{os.getpid()}-{tag or 'w'}{TMP_SUFFIX}"


def is_temporary(name: str) -> bool:
    """Whether `name` is a temporary file of one of our atomic writers."""
    return _TMP_NAME.match(name) is not None


#: How deep below a folder its temporaries are swept: a comparison's run, its checkpoint, a sweep's cell.
SWEEP_DEPTH = 3


def sweep_temporaries(folder: str | Path, depth: int = SWEEP_DEPTH) -> list[Path]:
    """Remove every temporary file of our writers in `folder` and up to `depth` folders below it.

    Only for a folder this process owns (holds its `FolderLock`) at a moment when it has no write under way:
    whatever temporary file is there then was left by a writer that was stopped (a killed predecessor, or a
    worker killed on the way out). The depth bounds the walk of a folder given by mistake (`--out ~`).

    Returns:
        The files removed.
    """
    removed = []
    top = len(Path(folder).parts)
    for root, dirs, names in os.walk(folder):
        if len(Path(root).parts) - top >= depth:
            dirs.clear()
        for name in names:
            if is_temporary(name):
                path = Path(root) / name
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    return removed


def _sweep_stale_temporaries(target: Path) -> None:
    """Remove the temporaries of `target` whose writers are gone (a killed export, a killed bench)."""
    with contextlib.suppress(OSError):
        for entry in target.parent.glob(f".{glob.escape(target.name)}.*{TMP_SUFFIX}"):
            match = _TMP_NAME.match(entry.name)
            if match and not _pid_alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    entry.unlink()


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
    _sweep_stale_temporaries(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}-", suffix=TMP_SUFFIX, dir=target.parent)
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
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import load_file

    p = Path(path)
    try:
        # The header first: a tensor NumPy has no type for (BF16, F8) would fail to load as a TypeError.
        with safe_open(str(p), framework="numpy") as f:
            names: list[str] = f.keys()  # safe_open has keys() but is not iterable
            dtypes = {name: (f.get_slice(name).get_dtype(), f.get_slice(name).get_shape()) for name in names}
        for name, (dtype, shape) in sorted(dtypes.items()):
            if dtype != "F32":
                raise CvaeBenchError(
                    f"weights {p}: {name} is {dtype}{list(shape)}, expected float32 (F32); "
                    "convert the weights to float32 first"
                )
        weights = load_file(str(p))
    except (OSError, SafetensorError, ValueError, TypeError) as exc:
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
    """A folder held by one writing process: an flock on a lock file that holds its PID, removed on release.

    The kernel holds the lock, not the file: it goes with its holder however the holder ends (kill -9
    included), so a lock left by a dead process is simply free and nothing has to guess from a PID whether
    its writer still lives (PIDs are reused). The PID in the file only names the holder in the message.
    On taking the lock, the temporary files that a stopped predecessor left in the folder are swept; on
    release, those of this process's own stopped writers (a worker killed on the way out).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (a lock file whose holder has gone is free), then sweep stale temporary files.

        Raises:
            CvaeBenchError: another living process holds it (naming its PID), or the folder is not writable.
        """
        if self._fd is not None:
            raise CvaeBenchError(f"{self.folder} is already being written by this process")
        for _ in range(100):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise _write_error(self.path, exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise _write_error(self.path, exc) from exc
                owner = self._owner()
                if owner == os.getpid():
                    raise CvaeBenchError(f"{self.folder} is already being written by this process") from None
                who = f"PID {owner}" if owner else "PID not yet written"
                raise CvaeBenchError(
                    f"{self.folder} is in use by another cvae-bench run ({who}, lock {self.path}); "
                    "wait for it to end or pass another --out"
                ) from None
            # A holder removes the file before it lets go: the inode locked here may be one that is no longer
            # the lock file, and a lock on it holds nothing. Then take the new file.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                os.fsync(fd)
            except OSError as exc:
                os.close(fd)
                raise _write_error(self.path, exc) from exc
            self._fd = fd
            sweep_temporaries(self.folder)
            return
        raise CvaeBenchError(f"cannot take the lock {self.path}: it keeps changing under this process")

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or "0") or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        """Sweep this process's leftover temporary files, remove the lock file and let go (if held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            sweep_temporaries(self.folder)
            # Removed while still held, so that whoever locks the old inode later sees it is not the lock file.
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        finally:
            os.close(fd)  # closing the last descriptor lets the lock go

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
        check_output_folder(folder, force, ignore=(LOCK_NAME,))
    except BaseException:
        lock.release()
        raise
    return lock
