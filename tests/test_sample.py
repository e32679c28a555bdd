"""Pictures: the three PNGs from a decoder (ONNX or a backend), their contents, and `cvae-bench sample`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.models import reference
from cvae_bench.onnx import figures
from cvae_bench.runtime.files import save_weights
from cvae_bench.testing.onnx_models import write_reference_decoder
from cvae_bench.testing.support import biased_weights

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["prior_samples.png", "fixed_z_labels_1-9.png", "latent_manifold_digit{d}.png"]
weights = biased_weights


def _decode(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return reference.decode(weights(), z, y).astype(np.float32)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cvae_bench", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def _assert_pngs(folder: Path, digit: int) -> None:
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted(n.format(d=digit) for n in NAMES), files
    for name in files:
        data = (folder / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name


def test_grids_decode_what_they_say() -> None:
    sizes = {"latent_dim": 2, "classes": 10}
    grid = figures.prior_samples(_decode, per_digit=4, seed=3, **sizes)
    assert grid.shape == (10, 4, 28, 28)
    z = np.random.default_rng(3).standard_normal((4, 2)).astype(np.float32)
    np.testing.assert_allclose(grid[7], _decode(z, np.eye(10, dtype=np.float32)[[7] * 4]), atol=1e-6)
    images, z1 = figures.fixed_z(_decode, seed=5, **sizes)
    assert images.shape == (9, 28, 28)
    np.testing.assert_allclose(images[0], _decode(z1[None], np.eye(10, dtype=np.float32)[[1]])[0], atol=1e-6)
    values = figures.manifold_grid(15)
    assert values[0] == pytest.approx(NormalDist().inv_cdf(0.05)) and values[7] == pytest.approx(0.0, abs=1e-12)
    assert values == pytest.approx([-v for v in reversed(values)])
    grid, _ = figures.manifold(_decode, digit=4, n=5, **sizes)
    v5 = figures.manifold_grid(5)
    top_right = _decode(np.array([[v5[-1], v5[-1]]], np.float32), np.eye(10, dtype=np.float32)[[4]])[0]
    np.testing.assert_allclose(grid[0, -1], top_right, atol=1e-6)
    assert figures.mosaic(np.zeros((2, 3, 28, 28), np.float32), gap=2).shape == (58, 88)


def test_write_figures_writes_three_pngs_atomically(tmp_path: Path) -> None:
    paths = figures.write_figures(
        _decode, tmp_path / "out", latent_dim=2, num_classes=10, seed=0, digit=3, source="reference"
    )
    assert [p.name for p in paths] == [n.format(d=3) for n in NAMES]
    _assert_pngs(tmp_path / "out", 3)


@pytest.fixture(scope="module")
def decoder_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Overrides tests/conftest.py's: the reference decoder with the metadata `sample` prints."""
    meta = {"part": "decoder", "backend": "reference", "precision": "fp32", "val_elbo_onnx": "234.5"}
    return write_reference_decoder(tmp_path_factory.mktemp("sample") / "decoder.onnx", meta)


def test_cli_sample_from_onnx(decoder_file: Path, tmp_path: Path) -> None:
    proc = _cli(
        "sample",
        "--onnx",
        str(decoder_file),
        "--providers",
        "CPUExecutionProvider",
        "--out",
        str(tmp_path),
        "--digit",
        "8",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(tmp_path / n.format(d=8)) for n in NAMES]
    _assert_pngs(tmp_path, 8)
    # Again into the same folder: the pictures are not replaced unasked (one line, exit 1), only with --force.
    kept = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    again = _cli("sample", "--onnx", str(decoder_file), "--out", str(tmp_path), "--digit", "3")
    assert again.returncode == 1 and again.stderr.startswith(f"error: output folder {tmp_path} is not empty")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == kept
    forced = _cli("sample", "--onnx", str(decoder_file), "--out", str(tmp_path), "--digit", "3", "--force")
    assert forced.returncode == 0, forced.stderr


def test_cli_sample_from_a_backend(tmp_path: Path) -> None:
    from cvae_bench.backends import registry

    if not registry.get("torch").available:
        pytest.skip(registry.get("torch").unavailable_reason())
    save_weights(tmp_path / "w.safetensors", weights())
    out = tmp_path / "pngs"
    proc = _cli("sample", "--backend", "torch", "--weights", str(tmp_path / "w.safetensors"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    _assert_pngs(out, 0)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "error: give either --onnx FILE or --backend NAME --weights FILE"),
        (["--onnx", "README.md"], "error: README.md: expected an ONNX decoder file; onnxruntime cannot load it"),
        (["--backend", "torch"], "error: --backend needs --weights FILE"),
        (["--onnx", "{decoder}", "--providers", "NoSuch"], "error: providers: expected some of "),
        (["--onnx", "{decoder}", "--backend", "torch"], "error: give either --onnx FILE or --backend NAME"),
        (["--onnx", "{decoder}", "--weights", "w.safetensors"], "error: --weights goes with --backend"),
    ],
    ids=["nothing", "not-onnx", "no-weights", "bad-provider", "both", "onnx-with-weights"],
)
def test_cli_sample_errors_are_one_line(args: list[str], expected: str, decoder_file: Path, tmp_path: Path) -> None:
    proc = _cli("sample", *[a.format(decoder=decoder_file) for a in args], "--out", str(tmp_path / "o"))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    status = 1 if "expected an ONNX decoder" in expected or "providers:" in expected else 2  # a file, or usage
    assert proc.returncode == status and len(lines) == 1 and lines[0].startswith(expected), proc.stderr
    assert not (tmp_path / "o").exists()


def test_figures_read_the_sizes_from_the_decoder_not_from_mnist(tmp_path: Path) -> None:
    """A decoder of 3 classes, a 3-D latent and 6 x 5 images: the pictures follow it."""
    seen: list[tuple[int, ...]] = []

    def decode(z: np.ndarray, y: np.ndarray) -> np.ndarray:
        seen.append((z.shape[1], y.shape[1]))
        return np.tile((y.argmax(1)[:, None, None] / 2.0).astype(np.float32), (1, 6, 5))

    paths = figures.write_figures(decode, tmp_path, latent_dim=3, num_classes=3, digit=2)
    assert [p.name for p in paths] == ["prior_samples.png", "fixed_z_labels_1-2.png", "latent_manifold_digit2.png"]
    assert set(seen) == {(3, 3)}
    grid = figures.prior_samples(decode, latent_dim=3, classes=3, per_digit=4)
    assert grid.shape == (3, 4, 6, 5)
    with pytest.raises(CvaeBenchError, match=r"--digit: expected a class 0-2 of this decoder; received 3"):
        figures.write_figures(decode, tmp_path / "none", latent_dim=3, num_classes=3, digit=3)
    assert not (tmp_path / "none").exists()


def test_cli_sample_digit_beyond_the_decoders_classes_is_one_line(decoder_file: Path, tmp_path: Path) -> None:
    proc = _cli("sample", "--onnx", str(decoder_file), "--digit", "10", "--out", str(tmp_path / "o"))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and lines == ["error: --digit: expected a class 0-9 of this decoder; received 10"]
    assert not (tmp_path / "o").exists()
