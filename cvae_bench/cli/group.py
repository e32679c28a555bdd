"""The `cvae-bench` group: every error one `error:` line and its exit status, signals from the first moment."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from cvae_bench import __version__
from cvae_bench.core.errors import USAGE_EXIT, CvaeBenchError, UsageError
from cvae_bench.runtime import signals


class CvaeBenchGroup(click.Group):
    """Turns our errors into one line on stderr and a non-zero exit, never a traceback.

    SIGTERM behaves like SIGINT (`runtime.signals`): the command unwinds (each worker it holds is killed on
    the way, since a worker mid-job would not hear a polite exit), one `error:` line, exit 128 + the signal
    (143, 130); the first signal decides, from the first moment (parsing included) to the last.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's own usage errors (a bad value, an unknown option, a missing argument) as one `error:` line
        and exit `USAGE_EXIT`, the style and status of every refusal made before work starts."""
        # Again, for a caller that did not come through `cvae_bench.entry` (a test's CliRunner gets its own
        # handlers back at the end; for `cvae-bench` itself, the entry point's stay, unchanged).
        previous = signals.install()
        try:
            return self._main(args, prog_name, complete_var, standalone_mode, **extra)
        finally:
            signals.restore(previous)

    def _main(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        standalone_mode: bool,
        **extra: Any,
    ) -> Any:
        try:
            # Never standalone: click's own way out turns a signal into "Aborted!" and exit 1.
            value = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except (KeyboardInterrupt, signals.Terminated) as exc:
            signals.stop(exc)
        except click.exceptions.Abort as exc:  # a signal during parsing, or Ctrl-C at a prompt
            signals.stop(exc.__cause__)
        except click.UsageError as exc:
            click.echo(f"error: {_usage_message(exc)}", err=True)
            sys.exit(USAGE_EXIT)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            # The reader went away (`| head`): nothing more to say; quiet the flush at exit, as click does.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        if not standalone_mode:
            return value
        sys.exit(value if isinstance(value, int) else 0)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except (KeyboardInterrupt, signals.Terminated) as exc:
            signals.stop(exc)  # before click echoes a blank line for it

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CvaeBenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(USAGE_EXIT if isinstance(exc, UsageError) else 1)
        except (KeyboardInterrupt, signals.Terminated) as exc:
            signals.stop(exc)


def _usage_message(exc: click.UsageError) -> str:
    """One line: `--opt: what is wrong` for a bad value (as our own checks say it), click's sentence otherwise."""
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        param = exc.param
        given = exc.param_hint
        hint = (
            (given if isinstance(given, str) else " / ".join(given))
            if given
            else param.opts[0]
            if isinstance(param, click.Option)
            else param.human_readable_name
            if param
            else None
        )
        message = f"{hint.strip(chr(39))}: {exc.message}" if hint else exc.message
    else:
        message = exc.format_message()
    command = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
    return " ".join(message.split()) + command


@click.group(cls=CvaeBenchGroup)
@click.version_option(__version__, prog_name="cvae-bench")
def main() -> None:
    """Benchmark the Keras tutorial's Conditional VAE across frameworks, at matched quality."""
