"""How a command stops on SIGINT or SIGTERM: the first signal wins, the command unwinds, one line, 128 + signal.

Both signals raise in the main thread (SIGINT as `KeyboardInterrupt`, SIGTERM as `Terminated`), so that the
command unwinds through its `finally` blocks and context managers: workers are killed, locks let go,
temporary files swept. The first signal decides how the command ends; any later one is ignored, since the
way out is already under way and a second exception raised in the middle of it would cut it short (and
leave Python to die of the signal, without the promised line and exit status).

This module imports nothing heavy, so that the entry point can install the handlers before anything else.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import NoReturn

#: What each signal's one line says.
_WORDS = {signal.SIGINT: "interrupted (SIGINT)", signal.SIGTERM: "terminated (SIGTERM)"}

_received: int | None = None


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it unwinds like KeyboardInterrupt (not an Exception)."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is not None:
        return  # the first signal won: its way out is under way
    _received = signum
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated


#: What `install` replaced, for `restore`.
Handlers = dict[int, object]


def install() -> Handlers:
    """Handle SIGINT and SIGTERM from now on (main thread only; a SIGINT ignored by the parent stays ignored).

    Returns:
        The handlers replaced, for `restore` (a process that hosts the command, such as a test, gets its own
        back; the `cvae-bench` process itself keeps these to its end).
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: Handlers = {}
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # nohup and `cmd &` in a script mean it
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _on_signal)
    previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _on_signal)
    return previous


def restore(previous: Handlers) -> None:
    """Give a process that hosts the command (a test's CliRunner) its own handlers back, and forget the stop.

    Where the handlers replaced were already ours (`cvae-bench` came through its entry point), nothing
    changes: after a stop they are SIG_IGN to the end, and must stay so.
    """
    global _received
    if all(handler is _on_signal for handler in previous.values()):
        return
    for signum, handler in previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]
    _received = None


_STOPPING = {signal.SIGINT, signal.SIGTERM}


def main_thread_only() -> None:
    """Keep SIGINT and SIGTERM away from the calling (non-main) thread, so that the kernel delivers them to
    the main thread.

    A process-directed signal goes to any thread that does not block it. Python runs its handler in the
    main thread, but notices the signal only when the main thread next runs bytecode: if the kernel picked
    another thread while the main thread sleeps in a read or a wait, the stop waits for that call to return.
    Our own threads call this first; `blocked` covers the threads that libraries start.
    """
    if hasattr(signal, "pthread_sigmask") and threading.current_thread() is not threading.main_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """Hold SIGINT and SIGTERM pending while the block runs (a signal then is handled as it ends).

    For loading libraries that start threads of their own (NumPy's BLAS pool): the threads inherit the
    blocked mask for good, so they never take a signal meant for the main thread (see `main_thread_only`).
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def received() -> int | None:
    """The signal that is stopping this process, if any."""
    return _received


def stop(exc: BaseException | None = None) -> NoReturn:
    """End the command for the signal received: kill its workers, one `error:` line, exit 128 + the signal.

    Args:
        exc: the exception that carried the signal up, for when no handler of ours saw it (a
            `KeyboardInterrupt` raised by Python's own handler before `install`).
    """
    global _received
    signum = _received
    if signum is None:
        signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        _received = signum  # and from now on, any other signal is ignored
    if threading.current_thread() is threading.main_thread():
        # Ignored by the kernel from here to the end: Python puts SIGINT's default back as it shuts down,
        # and a signal then would kill the process (-2) after its line was printed.
        for other in (signal.SIGINT, signal.SIGTERM):
            signal.signal(other, signal.SIG_IGN)
    # Only a process that has started workers has loaded the module that holds them.
    worker = sys.modules.get("cvae_bench.runtime.worker")
    if worker is not None:
        worker.kill_all_workers()
    print(f"error: {_WORDS.get(signal.Signals(signum), f'stopped by signal {signum}')}", file=sys.stderr, flush=True)
    sys.exit(128 + signum)
