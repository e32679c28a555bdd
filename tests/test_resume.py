"""Resume: every backend's training state round-trips, and a killed run finishes with the history it would have had."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.models import DEFAULT_SPEC, reference
from cvae_bench.testing.support import load_mnist
from cvae_bench.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
#: Generous: a busy 2-core machine may take minutes to start a worker; nothing here asserts a duration.
WAIT_S = 300.0


# -- end to end ------------------------------------------------------------------------------------------
RUN = ("run", "--train-subset", "1280", "--val-subset", "200", "--epochs", "8", "--eval-every", "5", "--quiet")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cvae_bench", *args], capture_output=True, text=True, cwd=ROOT, timeout=1800
    )


def _history(folder: Path) -> list[tuple[int, float, float]]:
    doc = json.loads((folder / "result.json").read_text())
    return [(h["step"], h["val_elbo"], h["kl"]) for h in doc["history"]]


def _kill_after_checkpoint(args: tuple[str, ...], checkpoint: Path) -> None:
    """Start a run, wait until it has checkpointed at least twice, then kill -9 it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cvae_bench", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and proc.poll() is None:
            meta = checkpoint / "checkpoint.json"
            if meta.is_file() and json.loads(meta.read_text() or "{}").get("step", 0) >= 10:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run finished before it could be killed; make it longer"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)


def test_a_killed_comparison_resumes_where_it_stopped(tmp_path: Path) -> None:
    """kill -9 during the second of two runs; --resume keeps the first as it was and finishes the second with
    exactly the history an uninterrupted run of that seed makes."""
    load_mnist()  # skip (or fail under CI) where MNIST is missing
    whole = _cli(*RUN, "--backend", "torch", "--seed", "1", "--no-report", "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    folder = tmp_path / "cmp"
    _kill_after_checkpoint(
        (*RUN, "--backend", "torch", "--repeats", "2", "--out", str(folder)), folder / "torch-seed1" / "checkpoint"
    )
    first, second = folder / "torch-seed0", folder / "torch-seed1"
    assert (first / "result.json").is_file() and not (second / "result.json").exists()
    stamp = (first / "result.json").stat().st_mtime_ns

    resumed = _cli("run", "--resume", str(folder), "--quiet", "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    assert "torch seed 0: finished before, kept" in resumed.stdout and "resumed from step" in resumed.stdout
    assert (first / "result.json").stat().st_mtime_ns == stamp, "a finished run is never run again"
    assert _history(second) == _history(tmp_path / "whole")  # bit for bit: same weights, noise and order
    (resumption,) = json.loads((second / "result.json").read_text())["resumptions"]
    assert resumption["from_step"] >= 10 and resumption["lost_train_s"] >= 0.0
    assert not (second / "checkpoint").exists(), "a finished run keeps no checkpoint"
    comparison = json.loads((folder / "comparison.json").read_text())
    assert sorted(r["seed"] for r in comparison["runs"]) == [0, 1]


def test_resume_of_a_folder_without_a_plan_is_one_line(tmp_path: Path) -> None:
    proc = _cli("run", "--resume", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: cannot resume") and "plan.json" in proc.stderr
    both = _cli("run", "--resume", str(tmp_path), "--backend", "torch")
    assert both.returncode == 2 and "--backend NAME to start runs, or --resume" in both.stderr


def test_a_crash_while_checkpointing_leaves_the_previous_checkpoint_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cvae_bench.training import checkpoint as ckpt

    weights = reference.init_weights(0)
    order = np.arange(10)

    def loop(step: int) -> ckpt.LoopState:
        return ckpt.LoopState(step, {"s": 1}, [], [], 1.0, 0.5, 0.1, 0.0)

    ckpt.save_checkpoint(tmp_path, loop(5), weights, {"adam_t": np.array(5)}, order)

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # killed after the new files, before the new checkpoint.json

    monkeypatch.setattr(ckpt, "write_json", crash)
    newer = {k: v + 1 for k, v in weights.items()}
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, loop(10), newer, {"adam_t": np.array(10)}, order)
    got = ckpt.load_checkpoint(tmp_path, DEFAULT_SPEC)
    assert got is not None and got.loop.step == 5 and int(got.backend_state["adam_t"]) == 5
    for key in weights:
        np.testing.assert_array_equal(got.weights[key], weights[key])
    monkeypatch.undo()
    ckpt.save_checkpoint(tmp_path, loop(10), newer, {"adam_t": np.array(10)}, order)
    names = sorted(p.name for p in (tmp_path / "checkpoint").iterdir())
    assert names == ["checkpoint.json", "state-000000010.npz", "weights-000000010.safetensors"]


def test_a_resume_that_finds_the_result_removes_the_checkpoint_and_what_a_killed_write_left(tmp_path: Path) -> None:
    """kill -9 after result.json but before the checkpoint went: --resume keeps the run and clears the rest."""
    from cvae_bench.runtime.files import is_temporary

    load_mnist()
    out = tmp_path / "run"
    args = ("run", "--backend", "torch", "--train-subset", "640", "--val-subset", "200", "--epochs", "1")
    first = _cli(*args, "--quiet", "--no-report", "--out", str(out))
    assert first.returncode == 0, first.stderr
    result = (out / "result.json").read_bytes()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    checkpoint = out / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "checkpoint.json").write_text("{}")
    (checkpoint / f".weights-000000010.safetensors.{dead.pid}-abc123.tmp").write_bytes(b"half")
    (out / f".result.json.{dead.pid}-def456.tmp").write_bytes(b"half")
    again = _cli("run", "--resume", str(out), "--no-report")
    assert again.returncode == 0, again.stderr
    assert "finished before, kept" in again.stdout
    assert not checkpoint.exists()
    assert [p.name for p in out.rglob("*") if is_temporary(p.name)] == []
    assert (out / "result.json").read_bytes() == result


@pytest.mark.parametrize(("text", "says"), [("{}", "missing"), ('{"step": NaN}', "NaN is not strict JSON"), ("[", "")])
def test_a_checkpoint_that_is_not_one_is_named(tmp_path: Path, text: str, says: str) -> None:
    """Whatever is wrong with checkpoint.json, the one error line names the file, so a user knows what to remove."""
    (tmp_path / "checkpoint").mkdir()
    meta = tmp_path / "checkpoint" / "checkpoint.json"
    meta.write_text(text)
    with pytest.raises(CvaeBenchError) as caught:
        load_checkpoint(tmp_path, DEFAULT_SPEC)
    assert str(meta) in str(caught.value) and says in str(caught.value)


@pytest.mark.parametrize("text", ['{"backends": "torch"}', '{"repeats": Infinity}', "not json"])
def test_a_plan_that_is_not_one_is_one_line_naming_it(tmp_path: Path, text: str) -> None:
    """`run --resume` of a folder whose plan.json is damaged: one line naming the file, not a traceback."""
    from cvae_bench.training.matched import load_plan

    (tmp_path / "plan.json").write_text(text)
    with pytest.raises(CvaeBenchError) as caught:
        load_plan(tmp_path)
    assert str(caught.value).startswith(f"cannot resume {tmp_path}: no readable plan.json (")
