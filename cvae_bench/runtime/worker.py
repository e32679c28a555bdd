"""Hermetic backend workers: one subprocess per backend, driven over a small framed-pickle protocol.

Protocol. The parent starts ``python -m cvae_bench.runtime.worker`` with the backend's environment
(``KERAS_BACKEND`` …) already set, so the framework is imported fresh under it. Both directions carry
frames of an 8-byte big-endian length followed by a pickle. The parent sends requests:

- ``{"op": "create", "name", "spec", "seed", "device", "mode"}`` → the backend's ``describe()`` plus
  ``build_s``, the construction time;
- ``{"op": "call", "method", "args", "kwargs"}`` → the return value of that Backend method;
- ``{"op": "run", "job", "kwargs"}`` → ``job(backend, emit, **kwargs)``: a job is a module-level function,
  sent as the function object itself (pickle carries it by reference, module and name), so that a rename
  fails in mypy rather than in a worker. It runs next to the backend and may ``emit(event)`` progress
  frames while it works (a dict, the wire format; the parent reads each into its `core.events` record);
  sent before any ``create``, the job gets ``backend=None`` (measurements that need a clean process but no
  model: the matmul ceiling, onnxruntime sessions). Before work that sends nothing for a while (a data
  load, a check, an evaluation) a job emits ``{"type": "stage", "what"}``: the parent then allows the
  longer start limit of silence until the next frame;
- ``{"op": "exit"}``.

The worker answers each request with any number of ``{"kind": "event", "data"}`` frames followed by one
``{"kind": "result", "value"}`` or ``{"kind": "error", "type", "message", "traceback"}``. The worker's
file descriptor 1 is pointed at stderr before anything is imported, so a framework printing to stdout
cannot corrupt the protocol; stderr goes to a log file that the parent quotes when the worker dies.

Faults. A frame that fails to unpickle, or an answer that is not one of the three kinds, is a protocol
error reported at once (the worker is killed: its stream can no longer be trusted). A worker dies with
its parent: on Linux it asks the kernel for SIGKILL when the parent goes (`PR_SET_PDEATHSIG`, first thing),
and everywhere a watchdog thread exits it when its request pipe closes or its parent PID changes. The
parent kills its workers at once when it leaves on an exception (SIGINT, SIGTERM), and `kill_all_workers`
is there for the CLI's way out. A worker's stderr log is removed when it closes, unless an error named it.

Threads. A parent that wants an explicit thread count passes `runtime.threads.thread_env(n)` as the
worker's `extra_env`; the worker pins its CPU affinity to n cores (when n is below what it may use) before
it imports anything else, and each framework reads its own variable when it starts.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from cvae_bench.backends.registry import BackendInfo
from cvae_bench.core import errors
from cvae_bench.core.defaults import DEFAULT_IDLE_TIMEOUT
from cvae_bench.core.errors import WorkerError
from cvae_bench.core.events import SILENT, Reporter, Stage, read_event
from cvae_bench.core.tuning import apply_in_process
from cvae_bench.models.spec import ModelSpec
from cvae_bench.runtime import signals
from cvae_bench.runtime.pause import IdleWatch
from cvae_bench.runtime.protocol import EOF, ProtocolError, check_answer, read_frame, write_frame

T = TypeVar("T")

#: Seconds a worker may take to build its backend (import the framework) before it counts as hung.
DEFAULT_START_TIMEOUT = 300.0

#: The parent's PID, for the worker's watchdog (a changed parent PID means the parent is gone).
PARENT_ENV = "CVAE_BENCH_PARENT_PID"

#: The variable that pads every worker's environment to one size (`padded_environment`).
ENV_PAD = "CVAE_BENCH_ENV_PAD"
#: Bytes every worker's environment gets beyond this process's: room for any backend's and knob's variables.
ENV_ROOM = 4096


def _env_bytes(env: dict[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) + 2 for k, v in env.items())


def padded_environment(env: dict[str, str]) -> dict[str, str]:
    """`env` padded with `ENV_PAD` to this process's environment size + `ENV_ROOM` bytes, so that every worker
    starts with an environment block of one size whatever its backend adds (KERAS_BACKEND, a knob's
    variables). The environment sits at the top of the initial stack, so its size shifts the stack's
    alignment, which moves a process's timings by itself (Mytkowicz et al., "Producing Wrong Data Without
    Doing Anything Obviously Wrong!", ASPLOS 2009); the contestants then differ by their code, not by this."""
    env = {k: v for k, v in env.items() if k != ENV_PAD}
    target = _env_bytes({k: v for k, v in os.environ.items() if k != ENV_PAD}) + ENV_ROOM
    room = target - _env_bytes(env) - len(ENV_PAD) - 2
    if room > 0:
        env[ENV_PAD] = "x" * room
    return env


#: Every worker of this process that has not been closed, for `kill_all_workers`.
_live: weakref.WeakSet[Worker] = weakref.WeakSet()


def kill_all_workers() -> None:
    """Kill every live worker of this process at once and reap it (for the way out on a signal)."""
    for worker in list(_live):
        worker.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            worker.proc.wait(timeout=10)


class _BadFrame:
    """What the reader thread passes on for a frame it could not read."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class Worker:
    """A backend living in a subprocess of its own.

    Args:
        info: the registry entry of the backend (its `env` is set before the worker imports anything).
        idle_timeout: seconds without any frame after which the worker is killed and reported as hung.
        start_timeout: the same limit for building the backend, which imports its framework: a slow start
            on a busy machine is not a hang.
        extra_env: more environment variables for the worker (thread counts, device visibility).
    """

    def __init__(
        self,
        info: BackendInfo,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        extra_env: dict[str, str] | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
    ) -> None:
        self.info = info
        self.idle_timeout = idle_timeout
        self.start_timeout = max(start_timeout, idle_timeout)
        env = padded_environment({**os.environ, **info.env, **(extra_env or {}), PARENT_ENV: str(os.getpid())})
        self._stderr = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the worker
            prefix=f"cvae-bench-{info.name}-", suffix=".stderr.log", delete=False
        )
        self.stderr_path = Path(self._stderr.name)
        self._keep_log = False  # set when an error names the log: then it outlives the worker
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cvae_bench.runtime.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        #: Stops the worker between its timed rounds (`pause`/`resume`) and counts what it did meanwhile.
        self.idle = IdleWatch(self.proc.pid)
        self._frames: queue.Queue[Any] = queue.Queue()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        _live.add(self)

    def _read_loop(self) -> None:
        signals.main_thread_only()  # a stop must wake the main thread, not this one
        assert self.proc.stdout is not None
        while True:
            try:
                frame = read_frame(self.proc.stdout)
            except ProtocolError as exc:
                frame = _BadFrame(str(exc))
            except (OSError, ValueError):
                frame = EOF
            self._frames.put(frame)
            if frame is EOF or isinstance(frame, _BadFrame):
                return

    def stderr_tail(self, lines: int = 3) -> str:
        """The last non-empty lines of the worker's stderr, joined with ' | '."""
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        tail = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
        return " | ".join(tail)

    def _died(self, what: str) -> WorkerError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        code = self.proc.returncode
        tail = self.stderr_tail()
        detail = f"; its stderr ended with: {tail}" if tail else ""
        self._keep_log = True
        return WorkerError(
            f"worker for backend {self.info.name!r} {what} (exit code {code}){detail} [full log: {self.stderr_path}]"
        )

    def request(self, req: dict[str, Any], reporter: Reporter = SILENT, timeout: float | None = None) -> Any:
        """Send one request and wait for its result, passing its events to `reporter`.

        This is the edge of the worker protocol: each event frame (a dict, the wire format) is read into its
        `core.events` record here, once (`read_event`; one this version does not know arrives as `Other`).

        `timeout` (default `idle_timeout`) is the longest silence allowed between two frames; after a `Stage`
        event, which a job sends before work that reports nothing while it runs, the silence allowed until
        the next frame is `start_timeout` (if longer).

        Raises:
            WorkerError: the worker died, hung, or failed with a non-cvae-bench exception.
            CvaeBenchError: the worker raised one of ours (re-raised with its own type and message).
        """
        if self.proc.poll() is not None:
            raise self._died("is not running")
        self.idle.resume()  # a stopped worker would never answer
        assert self.proc.stdin is not None
        try:
            write_frame(self.proc.stdin, req)
        except (BrokenPipeError, OSError):
            raise self._died("died") from None
        base = self.idle_timeout if timeout is None else timeout
        limit = base
        while True:
            try:
                frame = self._frames.get(timeout=limit)
            except queue.Empty:
                self.kill()
                raise self._died(f"hung: no answer for {limit:.0f} s, killed") from None
            if frame is EOF:
                raise self._died("died")
            try:
                if isinstance(frame, _BadFrame):
                    raise ProtocolError(frame.reason)
                kind, payload = check_answer(frame)
            except ProtocolError as exc:
                self.kill()  # the stream is out of step now: nothing after this frame can be trusted
                raise self._died(f"broke the protocol in {_request_name(req)}: {exc}; killed") from None
            if kind == "event":
                # Silence is judged only where the worker can speak: a stage event announces work that
                # reports nothing until it ends (a data load, a recipe check, an evaluation, a first step
                # that compiles), which is given the start limit, as building the backend is.
                event = read_event(payload)
                limit = max(base, self.start_timeout) if isinstance(event, Stage) else base
                reporter.report(event)
            elif kind == "result":
                return payload
            else:
                cls = getattr(errors, payload["type"], None)
                if isinstance(cls, type) and issubclass(cls, errors.CvaeBenchError):
                    raise cls(payload["message"])
                self._keep_log = True
                raise WorkerError(
                    f"backend {self.info.name!r} failed in {_request_name(req)}: {payload['type']}: "
                    f"{payload['message']} [traceback in {self.stderr_path}]"
                )

    def run_job(self, job: Callable[..., T], reporter: Reporter = SILENT, **kwargs: Any) -> T:
        """Run `job(backend, emit, **kwargs)` in the worker and return what it returns.

        Args:
            job: a module-level function importable in the worker; `backend` is the worker's backend, or
                None before any `create`.
            reporter: hears, in this process, the record of every event the job emits (by default none does).
            kwargs: the job's keyword arguments (pickled).
        """
        if getattr(job, "__qualname__", "").count("<") or not getattr(job, "__module__", None):
            raise WorkerError(f"worker job {job!r} must be a module-level function")
        value: T = self.request({"op": "run", "job": job, "kwargs": kwargs}, reporter)
        return value

    def pause(self) -> None:
        """Stop the worker's process tree (SIGSTOP) until `resume` or its next request: see `runtime.pause`."""
        if self.proc.poll() is None:
            self.idle.pause()

    def resume(self) -> None:
        """Continue a worker that `pause` stopped."""
        self.idle.resume()

    def kill(self) -> None:
        """Kill the worker at once."""
        # Continued first: a stopped child of the worker would otherwise outlive it, stopped for ever.
        self.idle.resume()
        with contextlib.suppress(OSError):
            self.proc.kill()

    def close(self) -> None:
        """Ask the worker to exit, then make sure it has; remove its log unless an error named it."""
        _live.discard(self)
        self.idle.resume()
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                write_frame(self.proc.stdin, {"op": "exit"})
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()
        if not self._keep_log:
            with contextlib.suppress(OSError):
                self.stderr_path.unlink()

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            # Leaving on an error or a signal: the worker may be mid-job and would not read an exit
            # request until the job ends, so it is killed rather than asked.
            self.kill()
        self.close()


class RemoteBackend:
    """A Backend proxy: every Backend method call is forwarded to a worker process.

    Args:
        worker: the worker that hosts the backend.
        spec: the model spec; seed, device, mode: as for Backend.
    """

    def __init__(
        self, worker: Worker, spec: ModelSpec, seed: int, device: str = "cpu", mode: str | None = None
    ) -> None:
        self.worker = worker
        self.spec = spec
        self.name = worker.info.name
        self.info: dict[str, Any] = worker.request(
            {
                "op": "create",
                "name": worker.info.name,
                "spec": spec.to_dict(),
                "seed": seed,
                "device": device,
                "mode": mode,
            },
            timeout=worker.start_timeout,
        )
        self.device: str = self.info["device"]
        self.mode: str = self.info["mode"]

    def run_job(self, job: Callable[..., T], reporter: Reporter = SILENT, **kwargs: Any) -> T:
        """Run `job(backend, emit, **kwargs)` next to the backend in the worker; see `Worker.run_job`."""
        return self.worker.run_job(job, reporter, **kwargs)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.worker.request({"op": "call", "method": method, "args": args, "kwargs": kwargs})

        return call


def _request_name(req: dict[str, Any]) -> str:
    job = req.get("job")
    if job is not None:
        return f"{getattr(job, '__module__', '?')}.{getattr(job, '__qualname__', '?')}"
    return str(req.get("method") or req["op"])


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """The worker's request loop (runs in the subprocess)."""
    from cvae_bench.backends import registry
    from cvae_bench.runtime import memory

    memory.mark(memory.START)  # the worker code alone: the baseline a framework's share is read against
    backend: Any = None

    def emit(event: dict[str, Any]) -> None:
        write_frame(out, {"kind": "event", "data": event})

    while True:
        req = read_frame(inp)
        if req is EOF or req.get("op") == "exit":
            return
        try:
            op = req["op"]
            if op == "create":
                t0 = time.perf_counter()
                cls = registry.get(req["name"]).load_class()
                memory.mark(memory.AFTER_IMPORT)
                backend = cls(ModelSpec.from_dict(req["spec"]), req["seed"], req["device"], req["mode"])
                # Knobs that are calls into the framework: it is loaded now, and no step has run yet.
                tuning = apply_in_process()
                value: Any = {**backend.describe(), "build_s": time.perf_counter() - t0, "tuning": tuning.label}
            elif op == "run":
                value = req["job"](backend, emit, **req["kwargs"])
            elif backend is None:
                raise WorkerError("no backend: send a 'create' request first")
            elif op == "call":
                value = getattr(backend, req["method"])(*req["args"], **req["kwargs"])
            else:
                raise WorkerError(f"unknown request {op!r}")
            write_frame(out, {"kind": "result", "value": value})
        except Exception as exc:
            # The log first: the parent may quote it (or close us) as soon as it reads the error.
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            write_frame(
                out,
                {
                    "kind": "error",
                    "type": type(exc).__name__,
                    "message": str(exc),
                    "traceback": traceback.format_exc(),
                },
            )


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux), and exit if it already has."""
    parent = int(os.environ.get(PARENT_ENV) or 0)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(pr_set_pdeathsig, 9, 0, 0, 0)  # 9: SIGKILL
    if parent and os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def _watchdog(inp: IO[bytes], parent: int, period: float = 1.0) -> None:
    """Exit the worker when its request pipe closes or its parent changes (runs in a daemon thread).

    The main thread may be deep in a job and not reading requests; a closed pipe or a new parent means
    nobody will ever read the answer, so training on would only waste the machine.
    """
    fd = inp.fileno()
    poller = select.poll() if hasattr(select, "poll") else None
    if poller is not None:
        poller.register(fd, select.POLLHUP | select.POLLERR)
    while True:
        if parent and os.getppid() != parent:
            os._exit(1)
        if poller is not None:
            events = poller.poll(period * 1000)
            if any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in events):
                os._exit(0)  # the parent closed the pipe: it has gone, or it has asked us to exit
        else:
            time.sleep(period)


def main() -> None:
    """Entry point of the worker process."""
    _die_with_parent()  # first: a parent killed now must not leave an orphan importing a framework
    from cvae_bench.runtime.threads import apply_process_threads

    parent = int(os.environ.get(PARENT_ENV) or 0)
    threading.Thread(target=_watchdog, args=(sys.stdin.buffer, parent), daemon=True, name="watchdog").start()
    apply_process_threads()  # CPU affinity first: thread pools are sized when a framework starts
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a framework prints to stdout now lands in stderr, not in the protocol
    serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
