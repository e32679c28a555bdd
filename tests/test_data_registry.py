"""The data-set registry: a new data set is one DatasetSpec; every source kind has a reader; specs meet models."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cvae_bench.core.errors import DataError
from cvae_bench.data import loading, sources, specs
from cvae_bench.models.spec import DEFAULT_SPEC


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A registry of its own for the test, empty caches, no web."""
    monkeypatch.setattr(specs, "_REGISTRY", dict(specs._REGISTRY))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("CVAE_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CVAE_BENCH_DATA", raising=False)


def _toy_npz(path: Path) -> dict[str, np.ndarray]:
    """Tiny synthetic 4×3 images in 3 classes, as a Keras-style .npz."""
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (5, 4, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 3, 5, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (2, 4, 3), dtype=np.uint8),
        "y_test": rng.integers(0, 3, 2, dtype=np.uint8),
    }
    np.savez(path, **arrays)
    return arrays


def _toy_spec(url: str, arrays: dict[str, np.ndarray]) -> specs.DatasetSpec:
    # The recipe of docs/design.md, "How to add … a data set".
    return specs.DatasetSpec(
        name="toy",
        title="Toy",
        image_shape=(4, 3),
        num_classes=3,
        train_size=5,
        test_size=2,
        checksums=specs.PerArray(**{k: hashlib.sha256(a.tobytes()).hexdigest() for k, a in arrays.items()}),
        sources=(specs.NpzUrl(name="toy-download", url=url),),
        class_names=("circle", "square", "star"),
    )


def test_a_new_data_set_is_one_spec(registry: None, tmp_path: Path) -> None:
    arrays = _toy_npz(tmp_path / "toy.npz")
    spec = specs.register(_toy_spec((tmp_path / "toy.npz").as_uri(), arrays))  # a file:// URL: no network
    assert specs.dataset_spec("toy") is spec

    ds = loading.load_dataset("toy")
    assert (ds.name, ds.source, ds.path) == ("toy", "toy-download", tmp_path / "cache" / "toy.npz")
    np.testing.assert_array_equal(ds.x_train, arrays["x_train"])
    assert loading.load_dataset("toy", download=False).source == "project-cache"  # verified and cached

    x_train, y_train, _, y_test = loading.as_float(ds)
    assert x_train.shape == (5, 4, 3) and y_test.shape == (2, 3)
    assert (y_train.argmax(1) == arrays["y_train"]).all()
    assert spec.class_name(2) == "star" and spec.shapes()["x_test"] == (2, 4, 3)


def test_the_cli_offers_the_builtin_data_sets() -> None:
    from cvae_bench.cli import main

    assert specs.DATASETS == tuple(spec.name for spec in specs.BUILTIN) == tuple(specs._REGISTRY)[:2]
    result = CliRunner().invoke(main, ["data", "info", "--help"])
    assert f"[{'|'.join(specs.DATASETS)}]" in result.output


def test_a_second_spec_of_the_same_name_is_refused(registry: None) -> None:
    with pytest.raises(DataError, match="data set 'mnist' is already registered"):
        specs.register(replace(specs.MNIST, title="another"))


def test_a_spec_checks_itself() -> None:
    with pytest.raises(DataError, match="2 class names for 10 classes"):
        replace(specs.MNIST, class_names=("a", "b"))
    with pytest.raises(DataError, match="source names must differ"):
        replace(specs.MNIST, sources=(*specs.MNIST.sources, specs.IdxFolder(name="keras-download", folder="/")))


@pytest.mark.parametrize("spec", specs._REGISTRY.values(), ids=lambda s: s.name)
def test_every_builtin_fits_the_model_spec_and_has_readers(spec: specs.DatasetSpec) -> None:
    spec.check_model(DEFAULT_SPEC)
    assert spec.shapes()["x_train"] == (spec.train_size, *DEFAULT_SPEC.image_shape)
    for source in spec.sources:
        # A kind of Source without a reader would only fail when every source before it failed.
        assert sources.fetch.dispatch(type(source)) is not sources.fetch.dispatch(specs.Source), source


def test_a_model_that_does_not_fit_the_data_set_is_refused(registry: None, tmp_path: Path) -> None:
    arrays = _toy_npz(tmp_path / "toy.npz")
    specs.register(_toy_spec((tmp_path / "toy.npz").as_uri(), arrays))
    message = "toy has images 4×3 in 3 classes, but the model spec expects 28×28 in 10; use a ModelSpec with"
    with pytest.raises(DataError, match=re.escape(message)):
        loading.load_arrays("toy", str(tmp_path / "toy.npz"), None, None, model=DEFAULT_SPEC)
    fits = replace(DEFAULT_SPEC, image_shape=(4, 3), num_classes=3)
    x, y, x_val, y_val = loading.load_arrays("toy", str(tmp_path / "toy.npz"), 3, 1, model=fits)
    assert (x.shape, y.shape, x_val.shape, y_val.shape) == ((3, 4, 3), (3, 3), (1, 4, 3), (1, 3))


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(DataError, match=r"^unknown data set 'cifar'; choose one of mnist, fashion-mnist$"):
        specs.dataset_spec("cifar")
