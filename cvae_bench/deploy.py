"""Sample digits from an exported cvae-bench decoder with onnxruntime and NumPy alone.

This file stands on its own: copy it next to `decoder.onnx` into any environment with `onnxruntime` and
`numpy` (no cvae-bench, no torch, tensorflow, jax, keras or onnx) and run

    from deploy import OnnxDecoder
    images = OnnxDecoder("decoder.onnx").sample([3, 1, 4], seed=0)   # float32 (3, 28, 28) in [0, 1]

or `python deploy.py decoder.onnx 3 1 4` to print the images' shape and value range.

Bounds: a request is decoded in chunks of at most `max_batch` rows (default `default_max_batch()`: 65,536,
or fewer when a quarter of the available memory cannot hold a chunk's inputs, output and activations), and a
request of more than `max_rows` rows (default `default_max_rows()`: 1,048,576, or fewer when half the
available memory cannot hold the result) is refused. Every bad argument is a `DecoderError`.

Memory a service needs (an MNIST decoder, fp32, CPU provider; the peak resident set of a fresh process
measured by the kernel, VmHWM, around one `sample` call): Python with NumPy, onnxruntime and the session
take about 60 MiB; a call then adds about 9 KiB per row of a chunk (`_row_bytes`: inputs, output and two
image-sized activations; at most `max_batch` rows) and, when a request spans several chunks, 3 KiB per row
of the whole request (the float32 result they are copied into). Measured: 1 row 66 MiB in all, 1,024 rows
74 MiB, 65,536 rows (one chunk) 621 MiB, 262,144 rows (four chunks) 1,418 MiB (docs/memory.md, with the
command). So a service answering requests of N rows needs about 60 MiB + 9 KiB × min(N, max_batch), plus
3 KiB × N when N > max_batch.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

__all__ = [
    "DecoderError",
    "OnnxDecoder",
    "available_memory",
    "default_max_batch",
    "default_max_rows",
    "default_providers",
]

#: The interface every cvae-bench decoder has (docs/design.md): names in this order, float32, batch axis dynamic.
INPUTS = ("z", "label")
OUTPUT = "x_mean"
_FLOAT = "tensor(float)"
#: Rows per onnxruntime call at most: 65,536 MNIST rows use ~0.6 GB (inputs, output, two image-sized
#: activations), and larger chunks are no faster (the call is already far longer than its overhead).
MAX_BATCH = 65_536
#: Rows per request at most, whatever the memory: 2**20 MNIST images are 3.3 GB of float32 output.
MAX_ROWS = 1_048_576
#: The largest |value| accepted in z and in the labels: z comes from the standard-normal prior, where 1e4 is
#: ten thousand standard deviations out (the decoder never saw anything near it), and labels are one-hot. Far
#: beyond, float32 arithmetic in the network overflows into NaN pixels.
INPUT_LIMIT = 1e4
_F32 = 4


class DecoderError(ValueError):
    """A decoder file or an input that does not fit the interface; the message says expected vs received."""


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it, then CPU."""
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux `MemAvailable`), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _row_bytes(latent_dim: int, num_classes: int, image_size: int) -> int:
    """What one row of a call holds at its peak: its inputs, its output and two image-sized activations."""
    return _F32 * (latent_dim + num_classes + 3 * image_size)


def default_max_batch(latent_dim: int, num_classes: int, image_size: int, memory: int | None = None) -> int:
    """`MAX_BATCH`, or the rows whose peak fits in a quarter of `memory` (default: `available_memory()`)."""
    memory = available_memory() if memory is None else memory
    if memory is None:
        return MAX_BATCH
    return max(1, min(MAX_BATCH, memory // 4 // _row_bytes(latent_dim, num_classes, image_size)))


def default_max_rows(image_size: int, memory: int | None = None) -> int:
    """`MAX_ROWS`, or the rows whose float32 output fits in half of `memory` (default: `available_memory()`)."""
    memory = available_memory() if memory is None else memory
    if memory is None:
        return MAX_ROWS
    return max(1, min(MAX_ROWS, memory // 2 // (_F32 * image_size)))


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise DecoderError(f"{name}: expected a positive integer; received {value!r}")
    return int(value)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _is_dynamic(dim: Any) -> bool:
    return not isinstance(dim, int) or dim < 0


class OnnxDecoder:
    """An exported decoder in onnxruntime: checks its interface, then decodes and samples.

    Args:
        path: the decoder's .onnx file.
        providers: onnxruntime execution providers in order of preference; default `default_providers()`.
        max_batch: rows per onnxruntime call at most; larger requests are decoded in chunks of this size.
            Default `default_max_batch(...)`: 65,536, fewer where memory is short.
        max_rows: rows per request at most; larger requests are refused. Default `default_max_rows(...)`:
            1,048,576, fewer where memory is short.

    Raises:
        DecoderError: the file is missing, not ONNX, not a decoder with the interface, its metadata disagrees
            with its shapes, a provider is not available, or a bound is not a positive integer.
    """

    def __init__(
        self,
        path: str,
        providers: Sequence[str] | None = None,
        *,
        max_batch: int | None = None,
        max_rows: int | None = None,
    ) -> None:
        self.path = str(path)
        available = ort.get_available_providers()
        if providers is None:
            chosen = default_providers()
        elif isinstance(providers, str):
            chosen = [providers]
        else:
            try:
                chosen = [str(p) for p in providers]
            except TypeError:
                raise DecoderError(f"providers: expected a list of provider names; received {providers!r}") from None
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
        image_size = math.prod(self.image_shape)
        self.max_batch = (
            default_max_batch(self.latent_dim, self.num_classes, image_size)
            if max_batch is None
            else _positive("max_batch", max_batch)
        )
        self.max_rows = default_max_rows(image_size) if max_rows is None else _positive("max_rows", max_rows)

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
    def _rows(self, name: str, n: int) -> None:
        if n > self.max_rows:
            raise DecoderError(
                f"{name}: expected at most {self.max_rows} rows per request (max_rows); received {n}; split the request"
            )

    def _floats(self, name: str, a: Any, width: int, n: int | None = None) -> NDArray[np.float32]:
        try:
            arr = np.asarray(a)
        except (ValueError, TypeError, OverflowError) as exc:  # ragged lists, odd objects
            raise DecoderError(
                f"{name}: expected a float array; received {type(a).__name__} ({_first_line(exc)})"
            ) from None
        if arr.dtype.kind != "f":
            raise DecoderError(f"{name}: expected a float array; received dtype {arr.dtype}")
        want = f"({n}, {width})" if n is not None else f"(n, {width}) with n >= 1"
        if arr.ndim != 2 or arr.shape[1] != width or (n is not None and arr.shape[0] != n) or arr.shape[0] == 0:
            raise DecoderError(f"{name}: expected shape {want}; received {arr.shape}")
        self._rows(name, arr.shape[0])
        # Cast first, then check: a float64 of 1e300 becomes inf in float32, which the model must not see.
        with np.errstate(over="ignore"):
            out = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.all(np.isfinite(out)):
            raise DecoderError(
                f"{name}: expected finite float32 values (|x| <= 3.4e38); received NaN, infinity or a value beyond"
            )
        largest = float(np.max(np.abs(out)))
        if largest > INPUT_LIMIT:
            raise DecoderError(
                f"{name}: expected values within +-{INPUT_LIMIT:g} (z is drawn from a standard normal, labels are "
                f"one-hot); received {largest:g}"
            )
        return out

    def _digits(self, digits: Sequence[int] | NDArray[np.integer]) -> NDArray[np.int64]:
        expected = f"integers 0-{self.num_classes - 1}"
        try:
            arr = np.asarray(digits)
        except (ValueError, TypeError, OverflowError) as exc:
            raise DecoderError(f"digits: expected a sequence of {expected}; received {_first_line(exc)}") from None
        if arr.ndim == 0:
            raise DecoderError(f"digits: expected a sequence of {expected}; received {digits!r}")
        if arr.ndim != 1 or arr.size == 0:
            raise DecoderError(f"digits: expected a non-empty 1-D sequence of integers; received shape {arr.shape}")
        self._rows("digits", arr.size)
        if arr.dtype.kind == "O":  # mixed Python objects, or integers beyond int64: judge each one
            values = arr.tolist()
            bad = [d for d in values if not isinstance(d, numbers.Integral) or isinstance(d, bool)]
            bad = bad or [d for d in values if not 0 <= d < self.num_classes]
            if bad:
                raise DecoderError(f"digits: expected {expected}; received {bad[0]!r}")
            return np.asarray([int(d) for d in values], np.int64)
        if arr.dtype.kind not in "iu":
            values = arr.tolist()
            odd = [v for v in values if not (isinstance(v, float) and v.is_integer())] or values
            raise DecoderError(f"digits: expected {expected}; received {arr.dtype} {odd[0]!r}")
        out_of_range = arr[(arr < 0) | (arr >= self.num_classes)]
        if out_of_range.size:
            raise DecoderError(f"digits: expected {expected}; received {int(out_of_range[0])}")
        return arr.astype(np.int64)

    @staticmethod
    def _rng(seed: Any) -> np.random.Generator:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise DecoderError(f"seed: expected None or a non-negative integer; received {seed!r}")
        return np.random.default_rng(None if seed is None else int(seed))

    # -- decoding -------------------------------------------------------------------------------------------
    def decode(self, z: NDArray[np.floating], label_onehot: NDArray[np.floating]) -> NDArray[np.float32]:
        """x_mean for latent codes and (one-hot) labels.

        Args:
            z: float (n, latent_dim).
            label_onehot: float (n, num_classes), usually one-hot.

        Returns:
            float32 (n, H, W) in [0, 1].

        Raises:
            DecoderError: a shape, dtype or non-finite value that does not fit, a value beyond `INPUT_LIMIT`,
                more than `max_rows` rows, onnxruntime failing on a chunk, or an output that is not finite.
        """
        zz = self._floats("z", z, self.latent_dim)
        yy = self._floats("label_onehot", label_onehot, self.num_classes, len(zz))
        n = len(zz)
        if n <= self.max_batch:
            return self._run(zz, yy)
        try:
            out = np.empty((n, *self.image_shape), np.float32)
        except MemoryError:
            raise DecoderError(
                f"z: cannot allocate the output of {n} rows; pass fewer rows or a lower max_rows"
            ) from None
        for start in range(0, n, self.max_batch):
            stop = min(n, start + self.max_batch)
            out[start:stop] = self._run(zz[start:stop], yy[start:stop])
        return out

    def _run(self, z: NDArray[np.float32], y: NDArray[np.float32]) -> NDArray[np.float32]:
        try:
            out: NDArray[np.float32] = self.session.run([OUTPUT], {"z": z, "label": y})[0]
        except Exception as exc:  # onnxruntime's own types (e.g. a failed allocation): one line, no traceback
            raise DecoderError(f"onnxruntime failed on {len(z)} rows: {_first_line(exc)}") from None
        bad = int(out.size - np.count_nonzero(np.isfinite(out)))
        if bad:  # never hand out images with NaN pixels: the caller would see them only when drawing them
            raise DecoderError(
                f"x_mean: the decoder gave {bad} non-finite pixel(s) (NaN or infinity) for these inputs; "
                "its weights or the inputs are beyond what its float32 arithmetic can hold"
            )
        return out

    def sample(
        self,
        digits: Sequence[int] | NDArray[np.integer],
        z: NDArray[np.floating] | None = None,
        seed: int | None = None,
    ) -> NDArray[np.float32]:
        """One image per digit, from the given z or from z ~ N(0, I) drawn with `numpy.random.default_rng(seed)`.

        Args:
            digits: the class of each image, integers 0 to num_classes - 1; at most `max_rows` of them.
            z: float (len(digits), latent_dim); drawn from the prior when None.
            seed: the seed of the prior draw, None or a non-negative integer (unused when z is given).

        Returns:
            float32 (len(digits), H, W) in [0, 1].

        Raises:
            DecoderError: digits that are not integers in range, a bad seed, or z of the wrong shape or dtype.
        """
        d = self._digits(digits)
        rng = self._rng(seed)
        if z is None:
            z = rng.standard_normal((len(d), self.latent_dim)).astype(np.float32)
        zz = self._floats("z", z, self.latent_dim, len(d))
        onehot = np.eye(self.num_classes, dtype=np.float32)[d]
        return self.decode(zz, onehot)

    def __repr__(self) -> str:
        return (
            f"OnnxDecoder({self.path!r}, providers={self.providers}, latent_dim={self.latent_dim}, "
            f"max_batch={self.max_batch})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """`python deploy.py decoder.onnx DIGIT...`: sample and describe the images; one `error:` line otherwise."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("error: usage: python deploy.py decoder.onnx DIGIT [DIGIT ...]", file=sys.stderr)
        return 2
    try:
        decoder = OnnxDecoder(args[0])
        digits = []
        for a in args[1:]:
            try:
                digits.append(int(a))
            except ValueError:
                raise DecoderError(f"digits: expected integers 0-{decoder.num_classes - 1}; received {a!r}") from None
        images = decoder.sample(digits, seed=0)
    except DecoderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{decoder}: {images.shape[0]} images {images.shape[1:]}, values {images.min():.3f}..{images.max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
