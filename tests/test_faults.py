"""Faults: signals, a killed parent, a full disk, a busy or non-empty run folder, bad numbers, bad weights.

Real processes and real signals throughout; no timing is asserted: each wait is generous (a loaded
two-core machine starts a torch worker slowly) and the tests assert on what happened.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from cvae_bench.backends import registry
from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.models import DEFAULT_SPEC, reference
from cvae_bench.runtime import files
from cvae_bench.runtime.files import (
    LOCK_NAME,
    claim_output_folder,
    file_sha256,
    load_weights,
    save_weights,
    write_json,
    write_text,
)
from cvae_bench.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
WORKER_MODULE = "cvae_bench.runtime.worker"
#: Generous: how long a process may take to appear or to go away on a loaded machine.
WAIT_S = 60.0

needs_torch = pytest.mark.skipif(not registry.get("torch").available, reason="torch is not installed")

#: A small run that keeps training long enough to be interrupted (10 steps an epoch, 1000 epochs).
LONG_RUN = (
    "run",
    "--backend",
    "torch",
    "--train-subset",
    "640",
    "--val-subset",
    "200",
    "--epochs",
    "1000",
    "--quiet",
)
SHORT_RUN = ("run", "--backend", "torch", "--train-subset", "640", "--val-subset", "200", "--epochs", "1", "--quiet")


# -- helpers ---------------------------------------------------------------------------------------------
def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cvae_bench", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        timeout=600,
    )


def _interruptible() -> None:
    # As a terminal starts a command: SIGINT at its default. A suite started in the background by a shell
    # without job control inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cvae_bench", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        preexec_fn=_interruptible,
    )


def one_error_line(returncode: int, stderr: str) -> str:
    assert returncode != 0
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")


def worker_of(proc: subprocess.Popen[str]) -> psutil.Process:
    """The worker process of a running `cvae-bench` (waits for it to start)."""

    def find() -> psutil.Process | None:
        assert proc.poll() is None, proc.communicate()[1]
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if WORKER_MODULE in " ".join(child.cmdline()):
                        return child
        return None

    worker: psutil.Process = wait_for("the worker to start", find)
    return worker


def gone(process: psutil.Process) -> bool:
    """True when the process has exited (a zombie waiting for a reaper has exited too)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def training(worker: psutil.Process) -> None:
    """Wait until the worker has spent CPU time past its imports (it is training, not starting)."""
    wait_for("the worker to train", lambda: sum(worker.cpu_times()[:2]) > 3.0, timeout=180)


@pytest.fixture
def tmp_env(tmp_path: Path) -> dict[str, str]:
    """A temp folder of its own for the CLI, so that its worker logs can be counted."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return {"TMPDIR": str(tmp)}


def logs_in(env: dict[str, str]) -> list[str]:
    return sorted(p.name for p in Path(env["TMPDIR"]).glob("cvae-bench-*.stderr.log"))


# -- 1. clean shutdown -----------------------------------------------------------------------------------
@needs_torch
@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_stops_the_run_with_one_line_and_takes_its_worker(
    tmp_path: Path, tmp_env: dict[str, str], sig: signal.Signals, code: int, word: str, mnist: tuple
) -> None:
    out = tmp_path / "run"
    with start_cli(*LONG_RUN, "--out", str(out), env=tmp_env) as proc:
        try:
            worker = worker_of(proc)
            training(worker)
            proc.send_signal(sig)  # to the parent alone: it must take its worker down itself
            _, stderr = proc.communicate(timeout=WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == code, stderr
    assert word in one_error_line(proc.returncode, stderr)
    wait_for("the worker to go", lambda: gone(worker))
    assert not (out / LOCK_NAME).exists()  # the folder is free again
    assert _temporaries(out) == []  # a clean stop removes its own temporaries, a killed worker's included
    assert logs_in(tmp_env) == []  # nothing failed: the worker's log is not kept


def _open_writer(fifo: Path) -> int | None:
    """The write end of `fifo` once a reader has it open (the command is then blocked reading it), else None."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader yet
            return None
        raise


def _blocked_in_a_pipe_read(pid: int) -> bool:
    """Whether `pid`'s main thread sleeps in the kernel reading a pipe (Linux: /proc/PID/wchan).

    Waited for before a signal is sent: a signal that lands between Python's last look at its signal flags
    and the read it then blocks in would be noticed only when the read returns (never, here).
    """
    with contextlib.suppress(OSError):
        return "pipe" in Path(f"/proc/{pid}/wchan").read_text()
    return False


@contextlib.contextmanager
def _blocked_reading(fifo: Path, args: list[str], env: dict[str, str], what: str) -> Iterator[subprocess.Popen[str]]:
    """The CLI with `args`, blocked reading `fifo` (made here; nobody writes it) at `what`."""
    os.mkfifo(fifo)
    with start_cli(*args, env=env) as proc:
        fd = None
        try:
            fd = wait_for(f"the command to open {what}", lambda: _open_writer(fifo))
            wait_for(f"the command to block reading {what}", lambda: _blocked_in_a_pipe_read(proc.pid))
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            if fd is not None:
                os.close(fd)


@contextlib.contextmanager
def _stuck_in_start_up(tmp_path: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A `run` blocked in its start-up (before plan.json), reading a data file that is a FIFO nobody writes."""
    fifo = tmp_path / "mnist.npz"
    args = [*LONG_RUN, "--data", str(fifo), "--out", str(tmp_path / "run")]
    with _blocked_reading(fifo, args, env, "its data") as proc:
        yield proc


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_in_start_up_is_one_line_and_128_plus_the_signal(
    tmp_path: Path, tmp_env: dict[str, str], sig: signal.Signals, code: int, word: str
) -> None:
    with _stuck_in_start_up(tmp_path, tmp_env) as proc:
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == code, stderr
    assert word in one_error_line(proc.returncode, stderr)
    assert not (tmp_path / "run" / "plan.json").exists()


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_while_the_command_line_is_imported_is_one_line(
    tmp_path: Path, tmp_env: dict[str, str], sig: signal.Signals, code: int, word: str
) -> None:
    # The earliest point: `rich`, which the command line imports first, is shadowed by a module that blocks.
    fifo, shadow = tmp_path / "fifo", tmp_path / "shadow" / "rich"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(f"open({str(fifo)!r}).read()\n")
    env = {**tmp_env, "PYTHONPATH": os.pathsep.join([str(shadow.parent), str(ROOT)])}
    args = [*LONG_RUN, "--out", str(tmp_path / "run")]
    with _blocked_reading(fifo, args, env, "the shadowed `rich` while importing the command line") as proc:
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == code, stderr
    assert word in one_error_line(proc.returncode, stderr)


@pytest.mark.parametrize("first", [signal.SIGTERM, signal.SIGINT])
def test_two_signals_at_once_end_in_one_line_for_the_one_that_won(
    tmp_path: Path, tmp_env: dict[str, str], first: signal.Signals
) -> None:
    # Both may be pending when Python looks, and it runs handlers in signal-number order: either may win,
    # but the end must be that one's line and status, never Python dying of the other (-2, -15).
    second = signal.SIGINT if first == signal.SIGTERM else signal.SIGTERM
    with _stuck_in_start_up(tmp_path, tmp_env) as proc:
        proc.send_signal(first)
        proc.send_signal(second)
        _, stderr = proc.communicate(timeout=WAIT_S)
    line = one_error_line(proc.returncode, stderr)
    assert (proc.returncode, "SIGINT" in line, "SIGTERM" in line) in ((130, True, False), (143, False, True)), stderr


@needs_torch
def test_a_second_signal_while_stopping_is_ignored(tmp_path: Path, tmp_env: dict[str, str], mnist: tuple) -> None:
    out = tmp_path / "run"
    with start_cli(*LONG_RUN, "--out", str(out), env=tmp_env) as proc:
        try:
            worker = worker_of(proc)
            training(worker)
            proc.send_signal(signal.SIGTERM)
            wait_for("the worker to be killed", lambda: gone(worker))  # the way out is under way
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 143, stderr
    assert "SIGTERM" in one_error_line(proc.returncode, stderr)
    assert _temporaries(out) == []


@needs_torch
def test_kill_9_of_the_parent_leaves_no_orphan_and_a_lock_that_is_taken_over(
    tmp_path: Path, tmp_env: dict[str, str], mnist: tuple
) -> None:
    out = tmp_path / "run"
    with start_cli(*LONG_RUN, "--out", str(out), env=tmp_env) as proc:
        try:
            worker = worker_of(proc)
            training(worker)
        finally:
            proc.kill()
            proc.communicate(timeout=WAIT_S)
    wait_for("the orphaned worker to go", lambda: gone(worker))
    # SIGKILL runs no cleanup: the lock stays, naming a dead PID, and the next run takes it over.
    assert (out / LOCK_NAME).read_text().strip() == str(proc.pid)
    again = cli(*SHORT_RUN, "--threads", "1", "--out", str(out), "--force", env=tmp_env)
    assert again.returncode == 0, again.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["weights"]["sha256"] == file_sha256(out / "weights.safetensors")
    # 4. the thread counts in force in the worker are what the result records
    in_force = result["hardware"]["threads_in_force"]
    assert in_force["requested"] == 1 and in_force["torch_intra_op"] == 1 and in_force["affinity_cores"] == 1
    assert not (out / LOCK_NAME).exists()


# -- 3. no silent overwrite --------------------------------------------------------------------------------
def test_a_non_empty_out_is_refused_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "decoder.onnx").write_bytes(b"an earlier run's file")
    proc = cli("run", "--backend", "torch", "--out", str(out))
    line = one_error_line(proc.returncode, proc.stderr)
    assert f"output folder {out} is not empty (decoder.onnx)" in line and "--force" in line
    assert not (out / LOCK_NAME).exists()
    assert (out / "decoder.onnx").read_bytes() == b"an earlier run's file"


#: A process that takes the lock of the folder argv[1], says so on stdout, and holds it until stdin closes.
_HOLDER = """
import sys
from pathlib import Path
from cvae_bench.runtime.files import FolderLock
lock = FolderLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
sys.stdin.read()
lock.release()
"""


def test_a_folder_locked_by_a_living_run_is_refused_naming_its_pid(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            proc = cli("run", "--backend", "torch", "--out", str(out), "--force")
            line = one_error_line(proc.returncode, proc.stderr)
            assert f"in use by another cvae-bench run (PID {holder.pid}" in line
            assert (out / LOCK_NAME).read_text().strip() == str(holder.pid)  # not taken from its owner
        finally:
            holder.kill()


def test_a_stale_lock_naming_a_living_unrelated_process_is_taken_over(tmp_path: Path) -> None:
    # The PID in a lock file left by a killed run may since belong to anything: the kernel's lock decides.
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (tmp_path / LOCK_NAME).write_text(f"{unrelated.pid}\n")
        with claim_output_folder(tmp_path) as lock:
            assert lock.path.read_text().strip() == str(os.getpid())
    finally:
        unrelated.kill()
        unrelated.wait()


#: One racer: wait for the start file, try to take the lock; while held, log enter/leave to a shared file.
_RACER = """
import os, sys, time
from pathlib import Path
from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.runtime.files import FolderLock
folder, log, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
for _ in range(int(sys.argv[4])):
    lock = FolderLock(folder)
    try:
        lock.acquire()
    except CvaeBenchError:
        continue
    with open(log, "a") as f:
        f.write(f"enter {os.getpid()}\\n"); f.flush()
        time.sleep(0.002)  # widen the window in which a second holder would show
        f.write(f"leave {os.getpid()}\\n"); f.flush()
    lock.release()
"""


def test_eight_processes_racing_for_a_stale_lock_never_hold_it_together(tmp_path: Path) -> None:
    folder, log, go = tmp_path / "run", tmp_path / "log", tmp_path / "go"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / LOCK_NAME).write_text(f"{dead.pid}\n")  # a stale lock, as a kill -9 leaves it
    racers = [
        subprocess.Popen([sys.executable, "-c", _RACER, str(folder), str(log), str(go), "20"], cwd=ROOT)
        for _ in range(8)
    ]
    go.touch()
    for racer in racers:
        assert racer.wait(timeout=600) == 0
    lines = log.read_text().splitlines()
    assert lines, "nobody ever took the lock"
    holder = None
    for line in lines:  # the log alternates: enter A, leave A, enter B, leave B ...
        what, pid = line.split()
        if what == "enter":
            assert holder is None, f"{pid} entered while {holder} held the lock"
            holder = pid
        else:
            assert holder == pid
            holder = None
    assert not (folder / LOCK_NAME).exists()


def test_the_lock_holds_the_pid_and_is_removed_at_the_end(tmp_path: Path) -> None:
    with claim_output_folder(tmp_path / "new") as lock:
        assert lock.path.read_text().strip() == str(os.getpid())
        with pytest.raises(CvaeBenchError, match="already being written by this process"):
            claim_output_folder(tmp_path / "new", force=True)
    assert not lock.path.exists()
    assert list((tmp_path / "new").iterdir()) == []


def test_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(f"{dead.pid}\n")
    with claim_output_folder(tmp_path) as lock:  # only a stale lock: the folder counts as empty
        assert lock.path.read_text().strip() == str(os.getpid())
    (tmp_path / LOCK_NAME).write_text("")  # a writer killed between creating and writing it
    with claim_output_folder(tmp_path):
        pass


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def _temporaries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if files.is_temporary(p.name))


def test_taking_a_folder_sweeps_the_temporaries_a_killed_writer_left(tmp_path: Path) -> None:
    dead = _dead_pid()
    (tmp_path / "checkpoint").mkdir()
    left = [
        tmp_path / f".weights.safetensors.{dead}-k1ll3d.tmp",
        tmp_path / "checkpoint" / f".state-000000010.npz.{dead}-x_9.tmp",
        tmp_path / "checkpoint" / f".progress.json.{dead}-w.tmp",
    ]
    for path in left:
        path.write_bytes(b"half a file")
    (tmp_path / "notes.tmp").write_text("not ours: kept")
    assert len(_temporaries(tmp_path)) == 3
    with claim_output_folder(tmp_path, force=True):
        assert _temporaries(tmp_path) == []
    assert (tmp_path / "notes.tmp").read_text() == "not ours: kept"


def test_letting_go_of_a_folder_sweeps_what_a_stopped_writer_left(tmp_path: Path) -> None:
    with claim_output_folder(tmp_path):
        # A worker killed on the way out, mid-write: its temporary stays until the folder is let go.
        (tmp_path / files.temporary_name("weights-000000020.safetensors", "w0rker")).write_bytes(b"half")
    assert _temporaries(tmp_path) == []


def test_a_rewrite_sweeps_the_temporaries_of_a_dead_writer_of_that_file(tmp_path: Path) -> None:
    # A killed export or bench: the next write of the same file removes what the dead writer left.
    dead_tmp = tmp_path / f".decoder.onnx.{_dead_pid()}-abc123.tmp"
    live_tmp = tmp_path / f".decoder.onnx.{os.getpid()}-abc123.tmp"  # a writer that lives: not touched
    dead_tmp.write_bytes(b"half")
    live_tmp.write_bytes(b"half")
    write_text(tmp_path / "decoder.onnx", "whole")
    assert not dead_tmp.exists() and live_tmp.exists()
    assert (tmp_path / "decoder.onnx").read_text() == "whole"


# -- 2. durable writes -------------------------------------------------------------------------------------
def test_writes_go_temp_fsync_rename_fsync_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        calls.append(f"rename {Path(src).name.startswith('.result.json.')}->{Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_json(tmp_path / "result.json", {"a": 1})
    assert calls == ["fsync-file", "rename True->result.json", "fsync-dir"]


def _enospc(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_a_full_disk_is_one_error_and_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    target = tmp_path / "weights.safetensors"
    target.write_bytes(b"old")
    monkeypatch.setattr(os, where, _enospc)
    with pytest.raises(CvaeBenchError, match=f"cannot write {target}: No space left on device"):
        save_weights(target, reference.init_weights(0))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.safetensors"]
    assert target.read_bytes() == b"old"


def test_a_permission_error_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def eacces(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(files.tempfile, "mkstemp", eacces)  # root ignores chmod, so the error is injected
    with pytest.raises(CvaeBenchError, match=r"cannot write .*result\.json: Permission denied"):
        write_text(tmp_path / "result.json", "{}")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (root only); skips where mounting is not permitted."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_weights_on_a_full_disk_are_one_error_and_no_half_file(tiny_disk: Path) -> None:
    with pytest.raises(CvaeBenchError, match="No space left on device"):
        save_weights(tiny_disk / "weights.safetensors", reference.init_weights(0))
    assert list(tiny_disk.iterdir()) == []


@needs_torch
def test_a_run_onto_a_full_disk_is_one_error_line(tiny_disk: Path, tmp_env: dict[str, str], mnist: tuple) -> None:
    out = tiny_disk / "run"
    proc = cli(*SHORT_RUN, "--out", str(out), env=tmp_env)
    line = one_error_line(proc.returncode, proc.stderr)
    assert "No space left on device" in line and ("weights.safetensors" in line or "checkpoint" in line)
    # No temp file, no half file, no lock: the plan (to resume once there is room) and at most a whole,
    # earlier checkpoint.
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert "plan.json" in left and not [name for name in left if name.endswith(".tmp") or "lock" in name]
    if (out / "checkpoint" / "checkpoint.json").exists():
        assert load_checkpoint(out, DEFAULT_SPEC) is not None  # whole: every file agrees with checkpoint.json


def test_the_recorded_sha256_is_that_of_the_bytes_written(tmp_path: Path) -> None:
    digest = save_weights(tmp_path / "w.safetensors", reference.init_weights(3))
    assert digest == file_sha256(tmp_path / "w.safetensors")


def test_result_json_is_strict(tmp_path: Path) -> None:
    with pytest.raises(CvaeBenchError, match="strict JSON"):
        write_json(tmp_path / "result.json", {"final": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_weights_with_a_non_finite_value_are_refused_naming_the_tensor(tmp_path: Path) -> None:
    weights = reference.init_weights(0)
    name = sorted(weights)[1]
    weights[name] = weights[name].copy()
    weights[name].flat[5] = np.nan
    save_weights(tmp_path / "w.safetensors", weights)
    with pytest.raises(CvaeBenchError, match=rf"{name} holds 1 non-finite value"):
        load_weights(tmp_path / "w.safetensors")
    proc = cli("evaluate", "--backend", "torch", "--weights", str(tmp_path / "w.safetensors"))
    assert name in one_error_line(proc.returncode, proc.stderr)


# -- 4. numeric options ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "option", "says"),
    [
        (("--target", "nan"), "--target", "not a finite number"),
        (("--target", "inf"), "--target", "not a finite number"),
        (("--target", "-inf"), "--target", "not a finite number"),
        (("--worker-timeout", "inf"), "--worker-timeout", "not a finite number"),
        (("--worker-timeout", "0.5"), "--worker-timeout", "below the minimum 1"),
        (("--train-subset", "60001"), "--train-subset", "more than MNIST's 60000 training images"),
        (("--val-subset", "10001"), "--val-subset", "more than MNIST's 10000 validation images"),
        (("--threads", "999"), "--threads", "999 threads is more than the"),
    ],
)
def test_numeric_options_must_be_finite_and_in_range(args: tuple[str, ...], option: str, says: str) -> None:
    proc = cli("run", "--backend", "torch", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {option}: ") and says in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_refuses_a_folder_that_holds_files_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    out.mkdir()
    (out / "bench.json").write_text("{}")
    proc = cli("bench", "--backend", "torch", "--groups", "train-step", "--out", str(out))
    line = one_error_line(proc.returncode, proc.stderr)
    assert "is not empty (bench.json)" in line and "--force" in line
    assert (out / "bench.json").read_text() == "{}"  # untouched


def _bfloat16_weights(path: Path) -> None:
    """The model's weights as bfloat16 safetensors (written by hand: NumPy has no bfloat16)."""
    header: dict[str, Any] = {}
    blobs, offset = [], 0
    for name, shape in sorted(DEFAULT_SPEC.weight_shapes().items()):
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        blobs.append(b"\0" * size)
        offset += size
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def test_bfloat16_weights_are_refused_naming_the_dtype(tmp_path: Path) -> None:
    path = tmp_path / "bf16.safetensors"
    _bfloat16_weights(path)
    with pytest.raises(CvaeBenchError, match=r"is BF16\[.*expected float32"):
        load_weights(path)


@needs_torch
@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_evaluate_and_sample_refuse_bfloat16_weights_in_one_line(tmp_path: Path, command: str) -> None:
    path = tmp_path / "bf16.safetensors"
    _bfloat16_weights(path)
    extra = ("--out", str(tmp_path / "samples")) if command == "sample" else ()
    proc = cli(command, "--backend", "torch", "--weights", str(path), *extra)
    assert "BF16" in one_error_line(proc.returncode, proc.stderr)


def test_a_process_hosting_the_command_gets_its_signal_handlers_back() -> None:
    from click.testing import CliRunner

    from cvae_bench.cli import main

    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
