"""The `cvae-bench` entry point: the signal handlers first, then the command line (which imports much)."""

from __future__ import annotations

from cvae_bench.runtime import signals


def main() -> None:
    """Run the `cvae-bench` command, with SIGINT and SIGTERM handled from the first moment."""
    signals.install()
    try:
        with signals.blocked():
            # NumPy starts its BLAS threads as it loads: started now, they keep SIGINT and SIGTERM blocked,
            # so the kernel always hands those to the main thread (see runtime.signals.main_thread_only).
            import numpy  # noqa: F401
        from cvae_bench.cli import main as command
    except (KeyboardInterrupt, signals.Terminated) as exc:
        signals.stop(exc)
    command()
