"""Tuning knobs: named settings of one backend worker, written `NAME:MODE+KNOB=VALUE` in a selection.

A knob is a process-level setting that a framework offers and that may make a backend faster or slower on a
given machine: its thread count, torch's flush-to-zero for denormals, torch's oneDNN (mkldnn) kernels, the
torch.compile mode, TensorFlow's oneDNN graph rewrites, or any environment variable (`env:XLA_FLAGS=...`).
`cvae-bench bench --backend torch:eager,torch:eager+flush-denormal=on` times both in the same interleaved
sweeps, so the verdict between them (with its confidence interval) says whether the knob is worth turning;
docs/design.md ("Tuning knobs") lists the experiments and what they found.

How a knob reaches the framework: most are environment variables, which the parent puts in the worker's
environment so that they are in place before the framework's first import; the others are calls into a
framework already loaded (`apply`), which the worker makes right after it has built the backend, before any
step. The whole tuning also travels in `$CVAE_BENCH_TUNING`, which is how the worker knows what to apply.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cvae_bench.core.errors import TuningError

#: The worker reads the tuning from here (the parent sets it; `Tuning.label` without the leading "+").
TUNING_ENV = "CVAE_BENCH_TUNING"
#: Environment variables whose values are flag lists: a knob extends them instead of replacing them.
FLAG_LISTS = frozenset({"XLA_FLAGS"})
ON_OFF = ("on", "off")


def _torch_flush_denormal(value: str) -> None:
    import torch

    # Returns False where the CPU has no FTZ/DAZ (then nothing changed): said, not ignored.
    if not torch.set_flush_denormal(value == "on"):
        raise TuningError("flush-denormal: torch reports that this CPU cannot flush denormals (no SSE3)")


def _torch_mkldnn(value: str) -> None:
    import torch

    torch.backends.mkldnn.enabled = value == "on"  # type: ignore[assignment]  # a module-level flag property


@dataclass(frozen=True)
class Knob:
    """One setting a worker can be given.

    Attributes:
        name: how a selection names it.
        summary: one line for errors and docs.
        values: the values it takes (empty: any non-empty text, checked by `check`).
        framework: the module that must be loaded for `apply` to act (None: an environment variable only).
        env: the environment variables the worker needs for a value.
        apply: the call that sets it in a worker whose backend is built (None: the environment suffices).
        check: raises ValueError for a value it does not take (for knobs without a fixed list).
    """

    name: str
    summary: str
    values: tuple[str, ...] = ()
    framework: str | None = None
    env: Callable[[str], dict[str, str]] = lambda value: {}
    apply: Callable[[str], None] | None = None
    check: Callable[[str], None] | None = None

    def validate(self, value: str) -> None:
        """Raises TuningError for a value this knob does not take."""
        if self.values and value not in self.values:
            raise TuningError(f"knob {self.name!r} takes {'|'.join(self.values)}, not {value!r}")
        if not value:
            raise TuningError(f"knob {self.name!r} needs a value: {self.name}=VALUE")
        if self.check is not None:
            try:
                self.check(value)
            except ValueError as exc:
                raise TuningError(f"knob {self.name!r}: {exc}") from None


def _positive_int(value: str) -> None:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"a whole number >= 1, not {value!r}")


#: Every named knob. `env:NAME=VALUE` sets any environment variable besides these.
KNOBS: dict[str, Knob] = {
    k.name: k
    for k in (
        Knob(
            "threads",
            "threads for every framework in this worker (instead of --threads), pinned to that many cores",
            check=_positive_int,
        ),
        Knob(
            "flush-denormal",
            "torch.set_flush_denormal: flush denormal floats to zero (FTZ/DAZ) in torch's CPU kernels",
            ON_OFF,
            framework="torch",
            apply=_torch_flush_denormal,
        ),
        Knob(
            "mkldnn",
            "torch.backends.mkldnn.enabled: let torch use oneDNN (mkldnn) kernels on the CPU",
            ON_OFF,
            framework="torch",
            apply=_torch_mkldnn,
        ),
        Knob(
            "torch-compile-mode",
            "the torch.compile mode of torch's compiled mode ($CVAE_BENCH_TORCH_COMPILE_MODE)",
            ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
            env=lambda v: {"CVAE_BENCH_TORCH_COMPILE_MODE": v},
        ),
        Knob(
            "onednn",
            "TensorFlow's oneDNN graph rewrites and kernels ($TF_ENABLE_ONEDNN_OPTS)",
            ON_OFF,
            env=lambda v: {"TF_ENABLE_ONEDNN_OPTS": "1" if v == "on" else "0"},
        ),
    )
}
ENV_PREFIX = "env:"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def knob_for(name: str) -> Knob:
    """The knob called `name` (`env:VAR` is the environment knob of VAR).

    Raises:
        TuningError: no such knob; the message lists them.
    """
    if name.startswith(ENV_PREFIX):
        var = name[len(ENV_PREFIX) :]
        if not _ENV_NAME.match(var):
            raise TuningError(f"{name!r}: {var!r} is not an environment variable name")
        return Knob(name, f"the environment variable {var}", env=lambda v: {var: v})
    try:
        return KNOBS[name]
    except KeyError:
        known = ", ".join([*KNOBS, f"{ENV_PREFIX}NAME"])
        raise TuningError(f"no tuning knob {name!r}; known: {known}") from None


@dataclass(frozen=True)
class Tuning:
    """The knobs of one worker, in the order given (empty: the backend as it ships)."""

    settings: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Tuning:
        """`KNOB=VALUE+KNOB=VALUE...` (a leading "+" is allowed), each knob at most once.

        Raises:
            TuningError: an unknown knob, a value it does not take, a knob given twice, or no `=`.
        """
        settings: list[tuple[str, str]] = []
        for part in text.strip().removeprefix("+").split("+"):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise TuningError(f"tuning {part!r} has no value: write KNOB=VALUE")
            name, value = name.strip(), value.strip()
            knob_for(name).validate(value)
            if any(n == name for n, _ in settings):
                raise TuningError(f"knob {name!r} given twice")
            settings.append((name, value))
        return cls(tuple(settings))

    def __bool__(self) -> bool:
        return bool(self.settings)

    @property
    def label(self) -> str:
        """'+KNOB=VALUE...' as a selection writes it ('' without knobs)."""
        return "".join(f"+{n}={v}" for n, v in self.settings)

    @property
    def threads(self) -> int | None:
        """The `threads` knob's count, None without it."""
        return next((int(v) for n, v in self.settings if n == "threads"), None)

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The variables to add to a worker's environment (merged into `base`, whose flag lists are extended).

        `threads` is not among them: the caller turns it into the thread environment.
        """
        env: dict[str, str] = {}
        if not self.settings:
            return env
        base = base if base is not None else {}
        for name, value in self.settings:
            for var, val in knob_for(name).env(value).items():
                before = env.get(var, base.get(var, ""))
                env[var] = f"{before} {val}".strip() if var in FLAG_LISTS and before else val
        env[TUNING_ENV] = self.label.removeprefix("+")
        return env


#: The tuning of a backend as it ships.
UNTUNED = Tuning()


def apply_in_process(environ: Mapping[str, str] | None = None) -> Tuning:
    """Make the calls of `$CVAE_BENCH_TUNING`'s knobs that act inside a framework; the worker runs this right
    after building its backend (the framework is loaded then, and no step has run).

    Returns:
        The tuning in force.

    Raises:
        TuningError: a knob whose framework this backend did not load (it would act on nothing).
    """
    tuning = Tuning.parse((environ if environ is not None else os.environ).get(TUNING_ENV, ""))
    for name, value in tuning.settings:
        knob = knob_for(name)
        if knob.apply is None:
            continue
        if knob.framework is not None and knob.framework not in sys.modules:
            raise TuningError(f"knob {name!r} acts on {knob.framework}, which this backend does not load")
        knob.apply(value)
    return tuning
