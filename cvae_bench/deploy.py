"""Sample digits from an exported cvae-bench decoder with onnxruntime and NumPy alone.

This file stands on its own: copy it next to `decoder.onnx` into any environment with `onnxruntime` and
`numpy` (no cvae-bench, no torch, tensorflow, jax, keras or onnx) and run

    from deploy import OnnxDecoder
    images = OnnxDecoder("decoder.onnx").sample([3, 1, 4], seed=0)   # float32 (3, 28, 28) in [0, 1]

or `python deploy.py decoder.onnx 3 1 4` to print the images' shape and value range.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

__all__ = ["DecoderError", "OnnxDecoder", "default_providers"]

#: The interface every cvae-bench decoder has (DESIGN.md): names in this order, float32, batch axis dynamic.
INPUTS = ("z", "label")
OUTPUT = "x_mean"
_FLOAT = "tensor(float)"


class DecoderError(ValueError):
    """A decoder file or an input that does not fit the interface; the message says expected vs received."""


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it, then CPU."""
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def _is_dynamic(dim: Any) -> bool:
    return not isinstance(dim, int) or dim < 0


class OnnxDecoder:
    """An exported decoder in onnxruntime: checks its interface, then decodes and samples.

    Args:
        path: the decoder's .onnx file.
        providers: onnxruntime execution providers in order of preference; default `default_providers()`.

    Raises:
        DecoderError: the file is missing, not ONNX, not a decoder with the interface, its metadata disagrees
            with its shapes, or a provider is not available.
    """

    def __init__(self, path: str, providers: Sequence[str] | None = None) -> None:
        self.path = str(path)
        available = ort.get_available_providers()
        chosen = list(providers) if providers is not None else default_providers()
        unknown = [p for p in chosen if p not in available]
        if not chosen or unknown:
            raise DecoderError(
                f"providers: expected some of {', '.join(available)}; received {', '.join(unknown) or 'none'}"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(self.path, options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/NoSuchFile types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DecoderError(
                f"{self.path}: expected an ONNX decoder file; onnxruntime cannot load it: {first}"
            ) from None
        self.providers: list[str] = list(self.session.get_providers())
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.latent_dim, self.num_classes, self.image_shape = self._check_interface()

    def _check_interface(self) -> tuple[int, int, tuple[int, ...]]:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        got = ", ".join(f"{i.name} {i.type}{i.shape}" for i in [*inputs, *outputs])
        expected = "inputs z float32[batch, latent], label float32[batch, classes]; output x_mean float32[batch, H, W]"
        ok = (
            [i.name for i in inputs] == list(INPUTS)
            and [o.name for o in outputs] == [OUTPUT]
            and all(t.type == _FLOAT for t in [*inputs, *outputs])
            and all(len(i.shape) == 2 for i in inputs)
            and len(outputs[0].shape) == 3
            and all(_is_dynamic(t.shape[0]) for t in [*inputs, *outputs])
            and all(isinstance(d, int) and d > 0 for t in [*inputs, *outputs] for d in t.shape[1:])
        )
        if not ok:
            raise DecoderError(f"{self.path} is not a cvae-bench decoder: expected {expected}; received {got}")
        latent, classes = int(inputs[0].shape[1]), int(inputs[1].shape[1])
        image = (int(outputs[0].shape[1]), int(outputs[0].shape[2]))
        part = self.metadata.get("part", "decoder")
        if part != "decoder":
            raise DecoderError(f"{self.path}: expected a decoder; its metadata says part={part!r}")
        for key, value in (("latent_dim", latent), ("num_classes", classes)):
            if key in self.metadata and self.metadata[key] != str(value):
                raise DecoderError(
                    f"{self.path}: metadata {key}={self.metadata[key]!r} but the input shape says {value}"
                )
        return latent, classes, image

    # -- inputs ---------------------------------------------------------------------------------------------
    def _floats(self, name: str, a: Any, width: int, n: int | None = None) -> NDArray[np.float32]:
        arr = np.asarray(a)
        if arr.dtype.kind != "f":
            raise DecoderError(f"{name}: expected a float array; received dtype {arr.dtype}")
        want = f"({n}, {width})" if n is not None else f"(n, {width}) with n >= 1"
        if arr.ndim != 2 or arr.shape[1] != width or (n is not None and arr.shape[0] != n) or arr.shape[0] == 0:
            raise DecoderError(f"{name}: expected shape {want}; received {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise DecoderError(f"{name}: expected finite values; received NaN or infinity")
        return np.ascontiguousarray(arr, dtype=np.float32)

    def _digits(self, digits: Sequence[int] | NDArray[np.integer]) -> NDArray[np.int64]:
        arr = np.asarray(digits)
        if arr.ndim == 0:
            raise DecoderError(f"digits: expected a sequence of integers 0-{self.num_classes - 1}; received {digits!r}")
        if arr.ndim != 1 or arr.size == 0:
            raise DecoderError(f"digits: expected a non-empty 1-D sequence of integers; received shape {arr.shape}")
        if arr.dtype.kind == "O":  # mixed Python objects: judge each one
            bad = [d for d in arr.tolist() if not isinstance(d, numbers.Integral) or isinstance(d, bool)]
            if bad:
                raise DecoderError(f"digits: expected integers 0-{self.num_classes - 1}; received {bad[0]!r}")
            arr = arr.astype(np.int64)
        elif arr.dtype.kind not in "iu":
            values = arr.tolist()
            odd = [v for v in values if not (isinstance(v, float) and v.is_integer())] or values
            raise DecoderError(f"digits: expected integers 0-{self.num_classes - 1}; received {arr.dtype} {odd[0]!r}")
        out_of_range = arr[(arr < 0) | (arr >= self.num_classes)]
        if out_of_range.size:
            raise DecoderError(f"digits: expected integers 0-{self.num_classes - 1}; received {int(out_of_range[0])}")
        return arr.astype(np.int64)

    # -- decoding -------------------------------------------------------------------------------------------
    def decode(self, z: NDArray[np.floating], label_onehot: NDArray[np.floating]) -> NDArray[np.float32]:
        """x_mean for latent codes and (one-hot) labels.

        Args:
            z: float (n, latent_dim).
            label_onehot: float (n, num_classes), usually one-hot.

        Returns:
            float32 (n, H, W) in [0, 1].

        Raises:
            DecoderError: a shape, dtype or non-finite value that does not fit.
        """
        zz = self._floats("z", z, self.latent_dim)
        yy = self._floats("label_onehot", label_onehot, self.num_classes, len(zz))
        out: NDArray[np.float32] = self.session.run([OUTPUT], {"z": zz, "label": yy})[0]
        return out

    def sample(
        self,
        digits: Sequence[int] | NDArray[np.integer],
        z: NDArray[np.floating] | None = None,
        seed: int | None = None,
    ) -> NDArray[np.float32]:
        """One image per digit, from the given z or from z ~ N(0, I) drawn with `numpy.random.default_rng(seed)`.

        Args:
            digits: the class of each image, integers 0-9.
            z: float (len(digits), latent_dim); drawn from the prior when None.
            seed: the seed of the prior draw (ignored when z is given).

        Returns:
            float32 (len(digits), H, W) in [0, 1].

        Raises:
            DecoderError: digits that are not integers in range, or z of the wrong shape or dtype.
        """
        d = self._digits(digits)
        if z is None:
            z = np.random.default_rng(seed).standard_normal((len(d), self.latent_dim)).astype(np.float32)
        zz = self._floats("z", z, self.latent_dim, len(d))
        onehot = np.eye(self.num_classes, dtype=np.float32)[d]
        return self.decode(zz, onehot)

    def __repr__(self) -> str:
        return f"OnnxDecoder({self.path!r}, providers={self.providers}, latent_dim={self.latent_dim})"


def main(argv: Sequence[str] | None = None) -> int:
    """`python deploy.py decoder.onnx DIGIT...`: sample and describe the images."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: python deploy.py decoder.onnx DIGIT [DIGIT ...]", file=sys.stderr)
        return 2
    try:
        decoder = OnnxDecoder(args[0])
        digits = [int(a) for a in args[1:]]
        images = decoder.sample(digits, seed=0)
    except (DecoderError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{decoder}: {images.shape[0]} images {images.shape[1:]}, values {images.min():.3f}..{images.max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
