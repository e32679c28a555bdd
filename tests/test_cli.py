"""End-to-end CLI: a real (small) training run, the run folder, and one clear line for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cvae_bench.models import reference
from cvae_bench.runtime.files import load_weights

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cvae_bench", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd or ROOT,
        timeout=600,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_backends_table_lists_builtins() -> None:
    proc = cli("backends")
    assert proc.returncode == 0, proc.stderr
    for name in ("torch", "keras-torch", "keras-tensorflow", "keras-jax"):
        assert name in proc.stdout


def test_unknown_backend_is_one_line() -> None:
    line = one_error_line(cli("run", "--backend", "tf"))
    assert line.startswith("error: Unknown backend 'tf'. Known: ")


def test_missing_framework_is_one_line(tmp_path: Path) -> None:
    info = tmp_path / "ghost_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ghost-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cvae_bench.backends]\nghost = ghost_mod:Ghost\n")
    (tmp_path / "ghost_mod.py").write_text("import ghostframework\n")
    proc = cli("run", "--backend", "ghost", env={"PYTHONPATH": str(tmp_path)})
    assert one_error_line(proc) == (
        "error: backend 'ghost' from ghost-plugin failed to import: No module named 'ghostframework'"
    )


def test_corrupt_data_file_is_one_line_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "mnist.npz"
    bad.write_bytes(b"this is not a zip file")
    line = one_error_line(cli("run", "--backend", "torch", "--data", str(bad), "--out", str(tmp_path / "r")))
    assert str(bad) in line


def test_unwritable_output_folder_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_error_line(cli("run", "--backend", "torch", "--out", str(blocker / "run")))
    assert "cannot create output folder" in line


def test_bad_weights_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x00" * 16)
    line = one_error_line(cli("evaluate", "--backend", "torch", "--weights", str(bad)))
    assert "cannot read weights" in line


#: A real training run on the first 6,400 MNIST images that reaches a loose target in a few epochs.
SMALL_RUN = (
    "run",
    "--backend",
    "torch",
    "--train-subset",
    "6400",
    "--val-subset",
    "2000",
    "--target",
    "265",
    "--max-epochs",
    "8",
    "--seed",
    "1",
)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory, mnist: tuple) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("run") / "torch-small"
    proc = cli(*SMALL_RUN, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, json.loads((out / "result.json").read_text()), proc.stdout


def test_run_reaches_a_loose_target_and_writes_its_folder(small_run: tuple[Path, dict, str]) -> None:
    _out, result, stdout = small_run
    assert result["reached"] is True
    assert result["backend"] == "torch" and result["seed"] == 1 and result["target"] == 265
    assert result["final"]["val_elbo"] <= 265
    assert result["steps_to_target"] == result["history"][-1]["step"]
    assert result["steps_to_target"] % 100 == 0  # one epoch of 6400 images is 100 steps
    assert result["time_to_target_s"] > 0 and result["first_step_s"] > 0 and result["build_s"] > 0
    assert [h["epoch"] for h in result["history"]] == list(range(1, len(result["history"]) + 1))
    assert len(stdout.strip().splitlines()) == 1 and "reached val -ELBO <= 265" in stdout


def test_reported_val_elbo_is_recomputed_from_the_weights(small_run: tuple[Path, dict, str], mnist: tuple) -> None:
    out, result, _ = small_run
    w = load_weights(out / "weights.safetensors")
    x_val, y_val = mnist[2][:2000], mnist[3][:2000]
    eps = np.random.default_rng(0).standard_normal((2000, 2))
    ref = reference.evaluator_parts(w, x_val, y_val, eps)
    assert abs(float(ref.total.mean()) - result["final"]["val_elbo"]) < 1e-3


@pytest.mark.slow  # a second whole run; the default suite's resume tests already need identical histories
def test_same_seed_gives_the_same_history(small_run: tuple[Path, dict, str], tmp_path: Path) -> None:
    _, first, _ = small_run
    proc = cli(*SMALL_RUN, "--out", str(tmp_path / "again"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    second = json.loads((tmp_path / "again" / "result.json").read_text())
    strip = ("train_time_s", "wall_time_s")
    assert [{k: v for k, v in h.items() if k not in strip} for h in first["history"]] == [
        {k: v for k, v in h.items() if k not in strip} for h in second["history"]
    ]


def test_evaluate_command_matches_the_run(small_run: tuple[Path, dict, str]) -> None:
    out, result, _ = small_run
    proc = cli(
        "evaluate",
        "--backend",
        "torch",
        "--weights",
        str(out / "weights.safetensors"),
        "--val-subset",
        "2000",
    )
    assert proc.returncode == 0, proc.stderr
    assert f"val -ELBO {result['final']['val_elbo']:.4f}" in proc.stdout


@pytest.mark.slow
def test_full_mnist_run_reaches_235(tmp_path: Path) -> None:
    proc = cli("run", "--backend", "torch", "--out", str(tmp_path / "full"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "full" / "result.json").read_text())
    assert result["reached"] and result["final"]["val_elbo"] <= 235.0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["bench", "--backend", "torch+turbo=1", "--groups", "train-step"], "no tuning knob 'turbo'; known: threads"),
        (["bench", "--backend", "torch:eager+flush-denormal=maybe"], "knob 'flush-denormal' takes on|off"),
        (["run", "--backend", "torch+threads=1"], "are for `cvae-bench bench` only"),
    ],
)
def test_bad_tuning_is_one_line(args: list[str], says: str, tmp_path: Path) -> None:
    assert says in one_error_line(cli(*args, cwd=tmp_path))
    assert not any(tmp_path.iterdir()), "nothing is written for a selection that is refused"
