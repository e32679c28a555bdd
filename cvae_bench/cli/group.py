"""The `cvae-bench` group: every error one `error:` line and its exit status, signals from the first moment."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from cvae_bench import __version__
from cvae_bench.core.errors import USAGE_EXIT, CvaeBenchError, UsageError
from cvae_bench.runtime import signals

#: Each command, and the module that defines it: a module is imported when its command is asked for (or the
#: list of commands is shown), so that one command does not pay for importing every other command's records.
COMMANDS: dict[str, str] = {
    "backends": "cvae_bench.cli.registry:backends",
    "data": "cvae_bench.cli.registry:data",
    "run": "cvae_bench.cli.training:run",
    "evaluate": "cvae_bench.cli.training:evaluate",
    "bench": "cvae_bench.cli.bench:bench",
    "compare": "cvae_bench.cli.bench:compare",
    "export": "cvae_bench.cli.onnx:export",
    "sample": "cvae_bench.cli.onnx:sample",
    "loadtest": "cvae_bench.cli.serving:loadtest",
    "web": "cvae_bench.cli.serving:web",
    "sweep": "cvae_bench.cli.sweep:sweep",
    "report": "cvae_bench.cli.report:report",
}


class CvaeBenchGroup(click.Group):
    """Turns our errors into one line on stderr and a non-zero exit, never a traceback; loads each command from
    its module (`COMMANDS`) when it is first asked for.

    SIGTERM behaves like SIGINT (`runtime.signals`): the command unwinds (each worker it holds is killed on
    the way, since a worker mid-job would not hear a polite exit), one `error:` line, exit 128 + the signal
    (143, 130); the first signal decides, from the first moment (parsing included) to the last.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command, those not loaded yet included."""
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context | None, name: str) -> click.Command | None:
        """The command `name`, its module imported the first time it is asked for."""
        if name in COMMANDS and name not in self.commands:
            module, attribute = COMMANDS[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return self.commands.get(name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """The command `args` name; a misspelt one is answered with the closest (`Did you mean 'bench'?`)."""
        name = args[0] if args else ""
        if self.get_command(ctx, name) is None and not name.startswith("-"):
            from cvae_bench.core.checks import did_you_mean

            known = self.list_commands(ctx)
            ctx.fail(f"No such command {name!r}.{did_you_mean(name, known)} Commands: {', '.join(known)}.")
        return super().resolve_command(ctx, args)

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
