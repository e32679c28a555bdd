"""Deployment: `cvae_bench/deploy.py` alone, with onnxruntime and NumPy, samples a decoder and refuses bad input.

The decoders here are built with `onnx.helper` from the float64 reference's weights (`decoder_file` in
tests/conftest.py, `cvae_bench.testing.onnx_models`), so
no framework is needed; the module itself is also run from a copy, in a process where importing any
framework, onnx or cvae_bench fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from cvae_bench import deploy
from cvae_bench.deploy import DecoderError, OnnxDecoder, default_providers
from cvae_bench.models import reference
from cvae_bench.onnx.interface import normalize_interface, set_metadata
from cvae_bench.testing.onnx_models import dense_model
from cvae_bench.testing.support import biased_weights

DEPLOY = Path(__file__).resolve().parent.parent / "cvae_bench" / "deploy.py"
FORBIDDEN = ("torch", "tensorflow", "jax", "keras", "onnx", "onnxscript", "cvae_bench", "matplotlib")
weights = biased_weights


def _write(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def decoder(decoder_file: Path) -> OnnxDecoder:
    return OnnxDecoder(str(decoder_file))


def test_decode_and_sample_match_the_reference(decoder: OnnxDecoder) -> None:
    assert (decoder.latent_dim, decoder.num_classes, decoder.image_shape) == (2, 10, (28, 28))
    assert decoder.providers == ["CPUExecutionProvider"]
    digits = [3, 1, 4, 1, 5]
    images = decoder.sample(digits, seed=42)
    z = np.random.default_rng(42).standard_normal((5, 2)).astype(np.float32)
    expected = reference.decode(weights(), z, np.eye(10, dtype=np.float32)[digits])
    assert images.shape == (5, 28, 28) and images.dtype == np.float32
    np.testing.assert_allclose(images, expected, atol=1e-5)
    np.testing.assert_array_equal(decoder.sample(np.array(digits), z=z), images)
    np.testing.assert_array_equal(decoder.decode(z.astype(np.float64), np.eye(10)[digits]), images)
    assert not np.array_equal(decoder.sample(digits, seed=1), images)


def test_default_providers_prefer_cuda_then_cpu() -> None:
    providers = default_providers()
    assert providers[-1] == "CPUExecutionProvider"
    assert providers[0] == ("CUDAExecutionProvider" if "CUDAExecutionProvider" in providers else "CPUExecutionProvider")


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ([10], "digits: expected integers 0-9; received 10"),
        ([-1], "digits: expected integers 0-9; received -1"),
        ([1.5], "digits: expected integers 0-9; received float64 1.5"),
        ([2, 1.5], "digits: expected integers 0-9; received float64 1.5"),
        ([True], "digits: expected integers 0-9; received bool True"),
        (["3"], "digits: expected integers 0-9; received <U1 '3'"),
        ([], "digits: expected a non-empty 1-D sequence of integers; received shape (0,)"),
        ([[1, 2]], "digits: expected a non-empty 1-D sequence of integers; received shape (1, 2)"),
        (7, "digits: expected a sequence of integers 0-9; received 7"),
    ],
    ids=["ten", "minus-one", "one-and-a-half", "mixed", "bool", "string", "empty", "2-D", "scalar"],
)
def test_bad_digits_are_one_clear_line(decoder: OnnxDecoder, digits: object, expected: str) -> None:
    with pytest.raises(DecoderError) as info:
        decoder.sample(digits)  # type: ignore[arg-type]
    assert str(info.value) == expected
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda d: d.sample([1, 2], z=np.zeros((2, 3), np.float32)), "z: expected shape (2, 2); received (2, 3)"),
        (lambda d: d.sample([1, 2], z=np.zeros((3, 2), np.float32)), "z: expected shape (2, 2); received (3, 2)"),
        (lambda d: d.sample([1], z=np.zeros((1, 2), np.int32)), "z: expected a float array; received dtype int32"),
        (
            lambda d: d.sample([1], z=np.full((1, 2), np.nan)),
            "z: expected finite float32 values (|x| <= 3.4e38); received NaN, infinity or a value beyond",
        ),
        (
            lambda d: d.decode(np.zeros((2, 2), np.float32), np.zeros((2, 9), np.float32)),
            "label_onehot: expected shape (2, 10); received (2, 9)",
        ),
        (
            lambda d: d.decode(np.zeros(2, np.float32), np.zeros((1, 10), np.float32)),
            "z: expected shape (n, 2) with n >= 1; received (2,)",
        ),
        (
            lambda d: d.decode(np.zeros((1, 2), np.float32), np.zeros((1, 10), np.uint8)),
            "label_onehot: expected a float array; received dtype uint8",
        ),
    ],
    ids=["z-width", "z-rows", "z-int", "z-nan", "label-width", "z-1d", "label-uint8"],
)
def test_bad_arrays_are_one_clear_line(decoder: OnnxDecoder, call: object, expected: str) -> None:
    with pytest.raises(DecoderError) as info:
        call(decoder)  # type: ignore[operator]
    assert str(info.value) == expected


# -- bounded deployment: every bad argument is a DecoderError ------------------------------------------
FINITE = "expected finite float32 values"


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.sample([1], z=np.array([[1e300, 0.0]])),
        lambda d: d.decode(np.array([[0.0, -1e39]]), np.eye(10)[[1]]),
        lambda d: d.decode(np.zeros((1, 2)), np.full((1, 10), 1e300)),
    ],
    ids=["z-1e300", "z-minus-1e39", "label-1e300"],
)
def test_float64_beyond_float32_is_refused_not_nan_pixels(decoder: OnnxDecoder, call: Any) -> None:
    """Cast first, then check: 1e300 passes a float64 finite check but is inf in float32 (NaN pixels)."""
    with pytest.raises(DecoderError, match=FINITE):
        call(decoder)


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.sample([1], z=np.array([[3e38, 0.0]], np.float32)),
        lambda d: d.decode(np.array([[0.0, -2e4]], np.float32), np.eye(10, dtype=np.float32)[[1]]),
        lambda d: d.decode(np.zeros((1, 2), np.float32), np.full((1, 10), 1e5, np.float32)),
    ],
    ids=["z-3e38", "z-minus-2e4", "label-1e5"],
)
def test_finite_inputs_beyond_the_sane_range_are_refused(decoder: OnnxDecoder, call: Any) -> None:
    """A finite float32 z of 3e38 overflows the network's arithmetic into NaN pixels: refused before."""
    with pytest.raises(DecoderError, match=r"expected values within \+-10000 .*received"):
        call(decoder)


def test_non_finite_pixels_are_an_error_not_an_image(decoder_file: Path) -> None:
    class _NaNs:
        def __init__(self, session: Any) -> None:
            self.session = session

        def run(self, names: Any, feeds: Any) -> list[Any]:
            out = self.session.run(names, feeds)
            out[0][0, 0, 0] = np.nan
            return out

    decoder = OnnxDecoder(str(decoder_file))
    decoder.session = _NaNs(decoder.session)
    with pytest.raises(DecoderError, match=r"^x_mean: the decoder gave 1 non-finite pixel"):
        decoder.sample([1, 2])


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ([2**70], "digits: expected integers 0-9; received 1180591620717411303424"),
        ([1, -(2**70)], "digits: expected integers 0-9; received -1180591620717411303424"),
        (np.array([2**63], np.uint64), "digits: expected integers 0-9; received 9223372036854775808"),
        ([[1], [2, 3]], "digits: expected a sequence of integers 0-9; received setting an array element"),
        (None, "digits: expected a sequence of integers 0-9; received None"),
    ],
    ids=["2**70", "minus-2**70", "uint64", "ragged", "none"],
)
def test_digits_out_of_int_range_or_unreadable_are_refused(decoder: OnnxDecoder, digits: Any, expected: str) -> None:
    with pytest.raises(DecoderError) as info:
        decoder.sample(digits)
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize(
    "seed",
    ["1", 1.5, -1, True, [1, 2], object(), np.float64(3.0)],
    ids=lambda seed: "object()" if type(seed) is object else repr(seed),  # stable ids (xdist compares them)
)
def test_bad_seeds_are_refused(decoder: OnnxDecoder, seed: Any) -> None:
    with pytest.raises(DecoderError, match=r"^seed: expected None or a non-negative integer; received "):
        decoder.sample([1, 2], seed=seed)


def test_good_seeds_include_numpy_integers_and_huge_ones(decoder: OnnxDecoder) -> None:
    np.testing.assert_array_equal(decoder.sample([4], seed=np.int64(7)), decoder.sample([4], seed=7))
    assert decoder.sample([4], seed=2**100).shape == (1, 28, 28)


@pytest.mark.parametrize(
    ("z", "expected"),
    [
        ("abc", "z: expected a float array; received dtype <U3"),
        ([[1.0, 2.0], [3.0]], "z: expected a float array; received list (setting an array element"),
        (object(), "z: expected a float array; received dtype object"),
        (np.zeros((1, 2), complex), "z: expected a float array; received dtype complex128"),
        (np.zeros((1, 1, 2)), "z: expected shape (1, 2); received (1, 1, 2)"),
    ],
    ids=["string", "ragged", "object", "complex", "3-D"],
)
def test_non_numeric_or_misshapen_z_is_refused(decoder: OnnxDecoder, z: Any, expected: str) -> None:
    with pytest.raises(DecoderError) as info:
        decoder.sample([1], z=z)
    assert str(info.value).startswith(expected)


class _Spy:
    """Counts the rows of every onnxruntime call; optionally fails them as onnxruntime would."""

    def __init__(self, session: Any, fail: bool = False) -> None:
        self.session, self.fail, self.rows = session, fail, []

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> Any:
        self.rows.append(len(feeds["z"]))
        if self.fail:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory\nmore")
        return self.session.run(names, feeds)


def test_large_requests_are_decoded_in_chunks_of_max_batch(decoder_file: Path, decoder: OnnxDecoder) -> None:
    small = OnnxDecoder(str(decoder_file), max_batch=7)
    spy = _Spy(small.session)
    small.session = spy
    digits = np.arange(20) % 10
    images = small.sample(digits, seed=3)
    assert spy.rows == [7, 7, 6]
    np.testing.assert_allclose(images, decoder.sample(digits, seed=3), atol=1e-6)


def test_requests_beyond_max_rows_are_refused_before_any_work(decoder_file: Path) -> None:
    bounded = OnnxDecoder(str(decoder_file), max_batch=8, max_rows=100)
    spy = _Spy(bounded.session)
    bounded.session = spy
    with pytest.raises(
        DecoderError, match=r"^digits: expected at most 100 rows per request \(max_rows\); received 101"
    ):
        bounded.sample([0] * 101)
    with pytest.raises(DecoderError, match=r"^z: expected at most 100 rows per request \(max_rows\); received 101"):
        bounded.decode(np.zeros((101, 2), np.float32), np.zeros((101, 10), np.float32))
    assert spy.rows == []
    assert bounded.sample([0] * 100).shape == (100, 28, 28)


def test_the_default_bounds_refuse_ten_million_rows(decoder: OnnxDecoder) -> None:
    assert 1 <= decoder.max_batch <= deploy.MAX_BATCH and decoder.max_rows <= deploy.MAX_ROWS
    with pytest.raises(DecoderError, match=r"expected at most \d+ rows per request \(max_rows\); received 10000000"):
        decoder.sample(np.zeros(10**7, np.int64))


def test_default_bounds_follow_the_memory() -> None:
    assert deploy.default_max_batch(2, 10, 784, memory=10**12) == 65_536
    assert deploy.default_max_batch(2, 10, 784, memory=10**8) == 10**8 // 4 // (4 * (2 + 10 + 3 * 784))
    assert deploy.default_max_batch(2, 10, 784, memory=0) == 1
    assert deploy.default_max_rows(784, memory=10**12) == 1_048_576
    assert deploy.default_max_rows(784, memory=10**9) == 10**9 // 2 // (4 * 784)
    memory = deploy.available_memory()
    assert memory is None or memory > 0


@pytest.mark.parametrize("bound", ["max_batch", "max_rows"])
@pytest.mark.parametrize("value", [0, -5, True, 1.5, "64"], ids=repr)
def test_bad_bounds_are_refused(decoder_file: Path, bound: str, value: Any) -> None:
    with pytest.raises(DecoderError, match=rf"^{bound}: expected a positive integer; received "):
        OnnxDecoder(str(decoder_file), **{bound: value})


def test_onnxruntime_failures_are_a_decoder_error(decoder_file: Path) -> None:
    failing = OnnxDecoder(str(decoder_file))
    failing.session = _Spy(failing.session, fail=True)
    with pytest.raises(DecoderError, match=r"^onnxruntime failed on 2 rows: \[ONNXRuntimeError\] .*memory$"):
        failing.sample([1, 2])


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["{model}"], 2, "error: usage: python deploy.py decoder.onnx DIGIT [DIGIT ...]"),
        (["{model}", "abc"], 1, "error: digits: expected integers 0-9; received 'abc'"),
        (
            ["{model}", "1180591620717411303424"],
            1,
            "error: digits: expected integers 0-9; received 1180591620717411303424",
        ),
        (["{model}", "3", "-1"], 1, "error: digits: expected integers 0-9; received -1"),
        (["{model}", "1.5"], 1, "error: digits: expected integers 0-9; received '1.5'"),
        (["missing.onnx", "3"], 1, "error: missing.onnx: expected an ONNX decoder file; onnxruntime cannot load it"),
    ],
    ids=["no-digits", "abc", "2**70", "minus-one", "float", "missing-file"],
)
def test_the_deploy_cli_answers_bad_input_with_one_error_line(
    decoder_file: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, expected: str
) -> None:
    assert deploy.main([a.format(model=decoder_file) for a in args]) == code
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), captured.err
    assert captured.out == ""


def test_files_that_are_not_decoders_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(DecoderError, match=r"expected an ONNX decoder file; onnxruntime cannot load it"):
        OnnxDecoder(str(text))
    with pytest.raises(DecoderError, match=r"expected an ONNX decoder file; .*(NO_SUCHFILE|doesn't exist)"):
        OnnxDecoder(str(tmp_path / "missing.onnx"))
    encoder = _write(
        normalize_interface(dense_model(weights(), "encoder", inputs=("x", "label")), "encoder"), tmp_path / "e.onnx"
    )
    with pytest.raises(
        DecoderError, match=r"is not a cvae-bench decoder: expected inputs z .* received x tensor\(float\)"
    ):
        OnnxDecoder(str(encoder))
    static = dense_model(weights(), batch=(1, 1, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(DecoderError, match="is not a cvae-bench decoder"):
        OnnxDecoder(str(_write(static, tmp_path / "static.onnx")))


def test_metadata_that_disagrees_with_the_shapes_is_refused(tmp_path: Path) -> None:
    model = normalize_interface(dense_model(weights()), "decoder")
    set_metadata(model, {"latent_dim": "3"})
    with pytest.raises(DecoderError, match=r"metadata latent_dim='3' but the input shape says 2"):
        OnnxDecoder(str(_write(model, tmp_path / "d.onnx")))
    set_metadata(model, {"latent_dim": "2", "part": "encoder"})
    with pytest.raises(DecoderError, match=r"expected a decoder; its metadata says part='encoder'"):
        OnnxDecoder(str(_write(model, tmp_path / "d.onnx")))


def test_unknown_providers_are_refused(decoder_file: Path) -> None:
    with pytest.raises(
        DecoderError, match=r"providers: expected some of .*CPUExecutionProvider.*; received NoSuchProvider"
    ):
        OnnxDecoder(str(decoder_file), providers=["NoSuchProvider"])
    assert OnnxDecoder(str(decoder_file), providers=["CPUExecutionProvider"]).providers == ["CPUExecutionProvider"]


_ALONE = """
import importlib.abc, sys

FORBIDDEN = {forbidden!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not in a deployment environment)")
        return None

sys.meta_path.insert(0, Block())
sys.path.insert(0, {folder!r})
import numpy as np
from deploy import OnnxDecoder
images = OnnxDecoder({model!r}).sample([3, 1, 4], seed=42)
np.save({out!r}, images)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
print("LOADED", loaded)
"""


def test_a_copy_of_deploy_py_runs_where_no_framework_can_be_imported(decoder_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "app"
    folder.mkdir()
    shutil.copy(DEPLOY, folder / "deploy.py")
    shutil.copy(decoder_file, folder / "decoder.onnx")
    script = _ALONE.format(
        forbidden=FORBIDDEN, folder=str(folder), model=str(folder / "decoder.onnx"), out=str(tmp_path / "x.npy")
    )
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=folder, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout
    z = np.random.default_rng(42).standard_normal((3, 2)).astype(np.float32)
    expected = reference.decode(weights(), z, np.eye(10, dtype=np.float32)[[3, 1, 4]])
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), expected, atol=1e-5)
    cli = subprocess.run(
        [sys.executable, "-I", "deploy.py", "decoder.onnx", "3", "1", "4"], capture_output=True, text=True, cwd=folder
    )
    assert cli.returncode == 0 and "3 images (28, 28)" in cli.stdout, cli.stderr
    bad = subprocess.run(
        [sys.executable, "-I", "deploy.py", "decoder.onnx", "12"], capture_output=True, text=True, cwd=folder
    )
    assert bad.returncode == 1 and bad.stderr.strip() == "error: digits: expected integers 0-9; received 12"


def test_the_packaged_module_imports_no_framework(decoder_file: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        from cvae_bench.deploy import OnnxDecoder
        OnnxDecoder({str(decoder_file)!r}).sample([0, 9], seed=0)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN[:-2]!r} or m == "matplotlib")
        ours = sorted(m for m in sys.modules if m.startswith("cvae_bench"))
        print("HEAVY", heavy)
        print("OURS", ours)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert "OURS ['cvae_bench', 'cvae_bench.core', 'cvae_bench.core.errors', 'cvae_bench.deploy']" in proc.stdout
