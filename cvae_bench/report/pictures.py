"""The seed's pictures of a decoder, as inline PNGs: prior samples per digit and one z across labels.

The images come from `onnx.figures` (the same draws as `cvae-bench sample`) decoded by
`cvae_bench.deploy.OnnxDecoder`; the PNGs are written here with zlib alone, so no matplotlib is needed.
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cvae_bench.onnx.figures import fixed_z, fixed_z_labels, mosaic, prior_samples


def png(image: NDArray[np.floating], scale: int = 2) -> bytes:
    """An 8-bit greyscale PNG of `image` (H, W) with values in [0, 1], each pixel `scale` × `scale`."""
    pixels = (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    h, w = pixels.shape
    raw = b"".join(b"\x00" + pixels[r].tobytes() for r in range(h))  # filter 0 (none) on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit greyscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def data_uri(image: NDArray[np.floating], scale: int = 2) -> str:
    """`image` as a `data:image/png;base64,…` URI for an <img> tag."""
    return "data:image/png;base64," + base64.b64encode(png(image, scale)).decode()


@dataclass(frozen=True)
class DecoderPictures:
    """The pictures of one decoder file."""

    path: Path
    title: str
    prior: str
    fixed_z: str
    labels: list[int]
    z: list[float]
    error: str | None = None


def decoder_pictures(path: Path, seed: int = 0) -> DecoderPictures:
    """Prior samples (rows = digits, the same z down each column) and one z decoded with labels 1…9.

    Never raises for a bad file: the error is kept in the record and the page shows it.
    """
    try:
        from cvae_bench.deploy import OnnxDecoder

        decoder = OnnxDecoder(str(path), providers=["CPUExecutionProvider"])
        meta = decoder.metadata
        latent, classes = decoder.latent_dim, decoder.num_classes
        grid = prior_samples(decoder.decode, latent_dim=latent, classes=classes, seed=seed)
        labels = fixed_z_labels(classes)
        images, z = fixed_z(decoder.decode, latent_dim=latent, classes=classes, seed=seed, labels=labels)
    except ImportError as exc:
        return DecoderPictures(path, path.name, "", "", [], [], f"onnxruntime is needed for pictures ({exc})")
    except Exception as exc:  # a bad file must not cost the rest of the report
        return DecoderPictures(path, path.name, "", "", [], [], f"{type(exc).__name__}: {exc}")
    title = " · ".join(str(meta[k]) for k in ("backend", "precision", "exporter") if meta.get(k)) or path.name
    row = images[np.newaxis]
    return DecoderPictures(
        path=path,
        title=title,
        prior=data_uri(mosaic(grid)),
        fixed_z=data_uri(mosaic(row), scale=3),
        labels=labels,
        z=[float(v) for v in z],
    )
