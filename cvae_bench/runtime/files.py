"""Atomic writes and the canonical safetensors weight files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.errors import CvaeBenchError
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    # mkstemp makes the file 0600; give it the permissions a plain open() would (0666 less the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    """Write `text` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


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
) -> None:
    """Write canonical weights as safetensors (float32), atomically."""
    from safetensors.numpy import save_file

    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(weights.items())}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=dict(metadata or {}))


def load_weights(path: str | Path, spec: ModelSpec = DEFAULT_SPEC) -> dict[str, NDArray[np.float32]]:
    """Read and check a canonical weights file.

    Raises:
        CvaeBenchError: missing/unreadable file, or names/shapes/dtypes that differ from the spec.
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
    return weights


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
