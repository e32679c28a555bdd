"""The worker protocol: results, events, foreign stdout, errors, death and hangs reported as such."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cvae_bench.backends import registry
from cvae_bench.core.errors import BackendUnavailableError, DataError, WorkerError
from cvae_bench.core.events import (
    CeilingMeasured,
    Collect,
    Diverged,
    Measured,
    Other,
    Stage,
    TrainProgress,
)
from cvae_bench.models import DEFAULT_SPEC
from cvae_bench.runtime.protocol import ProtocolError, check_answer, write_frame
from cvae_bench.runtime.worker import RemoteBackend, Worker
from tests.worker_jobs import WIRE_EVENTS, chatty, die, hang, raise_other, raise_ours, silent_stage, wire_events

ROOT = str(Path(__file__).resolve().parent.parent)
ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}

pytestmark = pytest.mark.skipif(not registry.get("torch").available, reason="torch is not installed")


@pytest.fixture
def remote() -> Iterator[RemoteBackend]:
    worker = Worker(registry.get("torch"), idle_timeout=60, extra_env=ENV)
    try:
        yield RemoteBackend(worker, DEFAULT_SPEC, seed=0)
    finally:
        worker.close()


def test_calls_return_numpy_results(remote: RemoteBackend) -> None:
    z = np.zeros((3, 2), np.float32)
    y = np.eye(10, dtype=np.float32)[:3]
    out = remote.decode(z, y)
    assert out.shape == (3, 28, 28) and out.dtype == np.float32
    assert remote.info["backend"] == "torch" and remote.info["build_s"] > 0


def test_events_stream_and_stdout_noise_is_harmless(remote: RemoteBackend) -> None:
    seen = Collect()
    assert remote.run_job(chatty, seen, n=5) == 5
    assert seen.events == [Other("", {"i": i}) for i in range(5)]  # no type: kept whole, in order
    assert "noise 4" in remote.worker.stderr_path.read_text()


def test_wire_events_become_records_at_the_edge_and_unknown_ones_arrive_whole(remote: RemoteBackend) -> None:
    """The reporter of a job hears records only: each wire dict is read once, where its frame arrives; one this
    version has no record for (or a half-formed one) arrives as `Other` with every field it carried."""
    seen = Collect()
    assert remote.run_job(wire_events, seen) == len(WIRE_EVENTS)
    assert seen.events == [
        Stage("first step"),
        Measured("decode batch 64", 0.002),
        CeilingMeasured("64x784x512", {"numpy": 1e-4, "torch": 8e-5}),
        TrainProgress(100, 180.5, 900.0),
        Diverged(7, "training loss", "nan"),
        Other("novel", {"figures": {"a": [1, 2]}, "note": "from a newer worker"}),
        Other("eval", {"epoch": 1.0}),
    ]


def test_our_errors_keep_their_type(remote: RemoteBackend) -> None:
    with pytest.raises(DataError, match="the data went missing"):
        remote.run_job(raise_ours)
    # the worker survives an error and keeps serving
    assert remote.get_weights()["decoder.dense_2.bias"].shape == (784,)


def test_foreign_errors_are_named(remote: RemoteBackend) -> None:
    with pytest.raises(
        WorkerError, match=r"backend 'torch' failed in tests.worker_jobs.raise_other: ValueError: bad value"
    ):
        remote.run_job(raise_other)


def test_a_dead_worker_is_reported_with_its_stderr(remote: RemoteBackend) -> None:
    with pytest.raises(WorkerError, match=r"worker for backend 'torch' died \(exit code -9\).*about to be killed"):
        remote.run_job(die)
    with pytest.raises(WorkerError, match="is not running"):
        remote.get_weights()


def test_a_hung_worker_is_killed_and_reported() -> None:
    with Worker(registry.get("torch"), idle_timeout=2, extra_env=ENV) as worker:
        remote = RemoteBackend(worker, DEFAULT_SPEC, seed=0)
        with pytest.raises(WorkerError, match=r"hung: no answer for 2 s, killed"):
            remote.run_job(hang, seconds=60)


def test_silence_after_a_stage_event_is_given_the_start_limit() -> None:
    # A data load or a recipe check sends nothing while it works: a short --worker-timeout must not call a
    # healthy worker hung there, while silence outside a stage still is (the test above).
    with Worker(registry.get("torch"), idle_timeout=1, start_timeout=300, extra_env=ENV) as worker:
        remote = RemoteBackend(worker, DEFAULT_SPEC, seed=0)
        seen = Collect()
        assert remote.run_job(silent_stage, seen, seconds=3) == "done"
        assert seen.events == [Stage("loading")]


def test_bad_device_is_a_clear_error() -> None:
    with Worker(registry.get("torch"), extra_env=ENV) as worker, pytest.raises(BackendUnavailableError):
        RemoteBackend(worker, DEFAULT_SPEC, seed=0, device="cuda")


def test_bad_mode_is_a_clear_error() -> None:
    with (
        Worker(registry.get("torch"), extra_env=ENV) as worker,
        pytest.raises(BackendUnavailableError, match="no mode 'turbo'"),
    ):
        RemoteBackend(worker, DEFAULT_SPEC, seed=0, mode="turbo")


def _explode() -> None:
    raise RuntimeError("this answer cannot be loaded here")


class Unloadable:
    """Pickles fine in the worker; loading it in the parent raises (as a class missing there would)."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_explode, ())


def unloadable_answer(backend: Any, emit: Any) -> Unloadable:
    """Worker job: answers with a value the parent cannot unpickle."""
    return Unloadable()


def test_an_answer_that_fails_to_unpickle_is_a_protocol_error_at_once() -> None:
    # The idle timeout is long: before, the reader thread died and this waited for it, then said "hung".
    with Worker(registry.get("torch"), idle_timeout=300, extra_env=ENV) as worker:
        with pytest.raises(WorkerError, match=r"broke the protocol in tests.test_worker.unloadable_answer: .*unpickle"):
            worker.run_job(unloadable_answer)
        assert "hung" not in worker.stderr_tail()
        assert worker.stderr_path.exists()  # named in the error, so kept
    assert worker.stderr_path.exists()
    worker.stderr_path.unlink()


@pytest.mark.parametrize(
    "frame",
    [None, "result", {"kind": "result"}, {"kind": "event"}, {"kind": "error", "type": "X"}, {"kind": "shrug"}],
    ids=["none", "str", "result-without-value", "event-without-data", "error-without-message", "unknown-kind"],
)
def test_a_malformed_answer_is_a_protocol_error(frame: Any) -> None:
    with pytest.raises(ProtocolError):
        check_answer(frame)


def test_well_formed_answers_pass() -> None:
    assert check_answer({"kind": "result", "value": None}) == ("result", None)
    assert check_answer({"kind": "event", "data": 3}) == ("event", 3)
    error = {"kind": "error", "type": "ValueError", "message": "m", "traceback": ""}
    assert check_answer(error) == ("error", error)


def test_a_clean_close_removes_the_log_and_a_failure_keeps_and_names_it() -> None:
    with Worker(registry.get("torch"), idle_timeout=300, extra_env=ENV) as worker:
        assert worker.run_job(chatty, n=1) == 1
        clean = worker.stderr_path
    assert not clean.exists()
    with Worker(registry.get("torch"), idle_timeout=300, extra_env=ENV) as worker:
        with pytest.raises(WorkerError, match=rf"traceback in {worker.stderr_path}"):
            worker.run_job(raise_other)
        failed = worker.stderr_path
    assert "ValueError: bad value" in failed.read_text()
    failed.unlink()


def test_a_worker_exits_when_its_request_pipe_closes_even_mid_job() -> None:
    """The watchdog: the main thread is asleep in a job; a closed pipe alone must end the worker."""
    worker = Worker(registry.get("torch"), idle_timeout=300, extra_env=ENV)
    try:
        assert worker.proc.stdin is not None
        write_frame(worker.proc.stdin, {"op": "run", "job": hang, "kwargs": {"seconds": 3600}})
        worker.proc.stdin.close()
        worker.proc.wait(timeout=60)  # generous; without the watchdog it would sleep for an hour
    finally:
        if worker.proc.poll() is None:
            worker.kill()
        worker.close()


def test_a_worker_dies_with_its_parent_even_mid_job(tmp_path: Path) -> None:
    """kill -9 of the parent: PR_SET_PDEATHSIG (Linux) or the watchdog takes the worker with it."""
    import psutil

    script = tmp_path / "parent.py"
    script.write_text(
        "import sys\n"
        "from cvae_bench.backends import registry\n"
        "from cvae_bench.runtime.worker import Worker\n"
        "from tests.worker_jobs import hang\n"
        "w = Worker(registry.get('torch'), idle_timeout=3600)\n"
        "print(w.proc.pid, flush=True)\n"
        "w.run_job(hang, seconds=3600)\n"
    )
    with subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env={**os.environ, **ENV}, cwd=ROOT
    ) as parent:
        try:
            assert parent.stdout is not None
            worker = psutil.Process(int(parent.stdout.readline()))
        finally:
            parent.kill()
            parent.communicate()
    try:
        status = worker.wait(timeout=60)  # generous; before, the orphan slept on for an hour
    except psutil.NoSuchProcess:
        status = None
    except psutil.TimeoutExpired:
        worker.kill()
        raise AssertionError("the worker outlived its parent") from None
    del status


def test_every_worker_environment_is_padded_to_one_size() -> None:
    """Workers of different backends (their own variables, a knob's) start with environments of one size, so
    the stack's alignment does not differ between contestants."""
    from cvae_bench.runtime.worker import ENV_PAD, _env_bytes, padded_environment

    plain = padded_environment(dict(os.environ))
    keras = padded_environment({**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_cpu_use_onednn=true"})
    assert _env_bytes(plain) == _env_bytes(keras)
    assert keras["KERAS_BACKEND"] == "jax" and len(plain[ENV_PAD]) > len(keras[ENV_PAD])
    assert padded_environment(plain) == plain  # idempotent: an old pad is replaced, not stacked
