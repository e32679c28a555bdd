"""The `cvae-bench` entry point: the signal handlers first, then the command line (which imports much)."""

from __future__ import annotations

from cvae_bench.runtime import signals


def main() -> None:
    """Run the `cvae-bench` command, with SIGINT and SIGTERM handled from the first moment."""
    signals.install()
    try:
        from cvae_bench.cli import main as command
    except (KeyboardInterrupt, signals.Terminated) as exc:
        signals.stop(exc)
    command()
