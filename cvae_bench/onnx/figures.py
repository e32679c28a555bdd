"""Pictures of a decoder: prior samples per digit, one z across labels, and the 2-D latent manifold.

Nothing here knows the data set: the latent size and the number of classes are the caller's (a ModelSpec
or an ONNX file's input shapes), and image sizes are read from what the decoder returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from cvae_bench.core.errors import UsageError
from cvae_bench.runtime.files import atomic_path, ensure_dir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

F32 = NDArray[np.float32]
#: decode(z float32 (n, latent), one-hot labels float32 (n, classes)) -> images float32 (n, H, W).
Decode = Callable[[F32, F32], F32]

FILES = {
    "prior": "prior_samples.png",
    "fixed_z": "fixed_z_labels_1-{last}.png",
    "manifold": "latent_manifold_digit{digit}.png",
}


def _onehot(digits: Sequence[int] | NDArray[np.integer], classes: int) -> F32:
    out: F32 = np.eye(classes, dtype=np.float32)[np.asarray(digits)]
    return out


def prior_samples(decode: Decode, *, latent_dim: int, classes: int, per_digit: int = 10, seed: int = 0) -> F32:
    """Images (classes, per_digit, H, W): row d decodes digit d at `per_digit` draws z ~ N(0, I)."""
    z = np.random.default_rng(seed).standard_normal((per_digit, latent_dim)).astype(np.float32)
    # The same z in every row, so that a column shows one latent code across digits (style held fixed).
    digits = np.repeat(np.arange(classes), per_digit)
    images = decode(np.tile(z, (classes, 1)), _onehot(digits, classes))
    return images.reshape(classes, per_digit, *images.shape[1:])


def fixed_z_labels(classes: int) -> list[int]:
    """The labels of the tutorial's picture: 1 to `classes` - 1 (1-9 for ten digits), or 0 alone for one class."""
    return list(range(1, classes)) or [0]


def fixed_z(
    decode: Decode, *, latent_dim: int, classes: int, seed: int = 0, labels: Sequence[int] | None = None
) -> tuple[F32, F32]:
    """The tutorial's picture: one z ~ N(0, I) decoded with each label (default `fixed_z_labels(classes)`).

    Returns:
        (images (n, H, W), z (latent,)).
    """
    chosen = fixed_z_labels(classes) if labels is None else list(labels)
    z = np.random.default_rng(seed).standard_normal(latent_dim).astype(np.float32)
    images = decode(np.tile(z, (len(chosen), 1)), _onehot(chosen, classes))
    return images, z


def manifold_grid(n: int = 15, low: float = 0.05, high: float = 0.95) -> list[float]:
    """`n` latent values at evenly spaced quantiles of N(0, 1), from `low` to `high`."""
    dist = NormalDist()
    return [dist.inv_cdf(low + (high - low) * i / (n - 1)) for i in range(n)]


def manifold(decode: Decode, digit: int, *, latent_dim: int, classes: int, n: int = 15) -> tuple[F32, list[float]]:
    """Images (n, n, H, W) over a grid of (z_1, z_2) at the prior's quantiles (z_2 decreasing down the rows).

    Other latent dimensions, if any, are held at 0. Returns the images and the grid values.
    """
    values = manifold_grid(n)
    z = np.zeros((n, n, latent_dim), np.float32)
    for r, z2 in enumerate(reversed(values)):
        for c, z1 in enumerate(values):
            z[r, c, 0] = z1
            if latent_dim > 1:
                z[r, c, 1] = z2
    images = decode(z.reshape(n * n, latent_dim), _onehot([digit] * (n * n), classes))
    return images.reshape(n, n, *images.shape[1:]), values


def mosaic(images: F32, gap: int = 2) -> F32:
    """Tile images (rows, cols, H, W) into one picture with `gap` pixels of white between them."""
    rows, cols, h, w = images.shape
    out = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap), np.float32)
    for r in range(rows):
        for c in range(cols):
            out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = images[r, c]
    return out


def _save(fig: Figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attaches an Agg canvas: no pyplot, no global backend state
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def write_figures(
    decode: Decode,
    out_dir: str | Path,
    *,
    latent_dim: int,
    num_classes: int,
    seed: int = 0,
    digit: int = 0,
    source: str = "",
) -> list[Path]:
    """Write the three PNGs into `out_dir` (atomically) and return their paths.

    Args:
        decode: the decoder to draw (an ONNX session's or a backend's).
        out_dir: the folder (created if needed).
        latent_dim, num_classes: the decoder's input sizes (its ModelSpec's, or its ONNX file's shapes).
        seed: seed of the prior draws.
        digit: the digit (class) whose latent manifold is drawn.
        source: a short description of the decoder for the titles (e.g. the file name).

    Raises:
        CvaeBenchError: `digit` is not a class of the decoder.
    """
    from matplotlib.figure import Figure

    if not 0 <= digit < num_classes:
        raise UsageError(f"--digit: expected a class 0-{num_classes - 1} of this decoder; received {digit}")
    sizes: dict[str, int] = {"latent_dim": latent_dim, "classes": num_classes}
    out = ensure_dir(out_dir)
    suffix = f"\n{source}" if source else ""
    gray: dict[str, Any] = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0, "interpolation": "nearest"}
    paths = []

    grid = prior_samples(decode, seed=seed, **sizes)
    h = grid.shape[2] + 2
    fig = Figure(figsize=(8, 8.6))
    ax = fig.add_subplot()
    ax.imshow(mosaic(grid), **gray)
    ax.set_yticks([r * h + h / 2 - 1 for r in range(grid.shape[0])], [str(d) for d in range(grid.shape[0])])
    ax.set_xticks([c * h + h / 2 - 1 for c in range(grid.shape[1])], [str(c + 1) for c in range(grid.shape[1])])
    ax.set_ylabel("digit (label)")
    ax.set_xlabel("prior draw z ~ N(0, I) (the same z down each column)")
    ax.set_title(f"Prior samples per digit (seed {seed}){suffix}")
    fig.tight_layout()
    paths.append(_save(fig, out / FILES["prior"]))

    labels = fixed_z_labels(num_classes)
    images, z = fixed_z(decode, seed=seed, labels=labels, **sizes)
    side = math.ceil(math.sqrt(len(labels)))  # 3 x 3 for labels 1-9
    fig = Figure(figsize=(7, 7.4))  # wide enough for the two-line title with the source
    for i, (label, image) in enumerate(zip(labels, images, strict=True)):
        ax = fig.add_subplot(side, side, i + 1)
        ax.imshow(image, **gray)
        ax.set_title(f"label {label}", fontsize=10)
        ax.axis("off")
    z_text = ", ".join(f"{v:.2f}" for v in z)
    span = f"{labels[0]}-{labels[-1]}"
    fig.suptitle(f"One z = ({z_text}) decoded with labels {span}{suffix}", fontsize=11)
    fig.tight_layout()
    paths.append(_save(fig, out / FILES["fixed_z"].format(last=labels[-1])))

    grid, values = manifold(decode, digit, **sizes)
    n, h = grid.shape[0], grid.shape[2] + 2
    fig = Figure(figsize=(8.6, 9))
    ax = fig.add_subplot()
    ax.imshow(mosaic(grid), **gray)
    ticks = [i * h + h / 2 - 1 for i in range(n)][::2]
    ax.set_xticks(ticks, [f"{v:.2f}" for v in values][::2])
    ax.set_yticks(ticks, [f"{v:.2f}" for v in reversed(values)][::2])
    ax.set_xlabel("z[0] (prior quantiles 5%-95%)")
    ax.set_ylabel("z[1] (prior quantiles 5%-95%)")
    ax.set_title(f"Latent manifold of digit {digit}{suffix}")
    fig.tight_layout()
    paths.append(_save(fig, out / FILES["manifold"].format(digit=digit)))
    return paths
