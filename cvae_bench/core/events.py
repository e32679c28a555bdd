"""What a command tells its user while it works: typed event records, and the one `Reporter` that hears them.

Workers and the bench engine send events as JSON objects (`{"type": "eval", ...}`: the worker protocol's wire
format). `read_event` turns one into its record once, at the edge, so that what shows them (the console, a
log, a test) matches on types rather than on string keys, and says everything through one method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class Stage:
    """A phase of the work begins (`bench matmul ceiling (15 shapes)`)."""

    what: str


@dataclass(frozen=True)
class Measured:
    """One timed entry of a bench is measured."""

    what: str
    median_s: float


@dataclass(frozen=True)
class TrainStart:
    """A training run starts: the steps it will take at most."""

    total_steps: int


@dataclass(frozen=True)
class TrainProgress:
    """A training run's progress: the step reached, the last loss, the speed."""

    step: int
    loss: float
    steps_per_s: float


@dataclass(frozen=True)
class Evaluated:
    """The shared evaluator scored the weights (val −ELBO and its parts)."""

    epoch: float
    step: int
    val_elbo: float
    kl: float
    nll: float
    train_time_s: float


@dataclass(frozen=True)
class Message:
    """A line for the user: `info` (a result line), `progress` (what is being done), `warning`."""

    text: str
    level: Literal["info", "progress", "warning"] = "info"


@dataclass(frozen=True)
class Other:
    """An event this version does not show (a ceiling measured, a divergence recorded): kept, not lost."""

    type: str
    fields: dict[str, Any]


Event = Stage | Measured | TrainStart | TrainProgress | Evaluated | Message | Other


class Reporter(Protocol):
    """Whatever shows a command's events: the console, a log file, a list in a test."""

    def report(self, event: Event) -> None:
        """Show (or keep) one event."""


def read_event(wire: dict[str, Any]) -> Event:
    """The record of one wire event (`{"type": ..., ...}`); an unknown or incomplete one becomes `Other`."""
    kind = str(wire.get("type"))
    try:
        if kind == "stage":
            return Stage(str(wire["what"]))
        if kind == "bench" and "median_s" in wire:
            return Measured(str(wire["what"]), float(wire["median_s"]))
        if kind == "start":
            return TrainStart(int(wire["total_steps"]))
        if kind == "progress":
            return TrainProgress(int(wire["step"]), float(wire["loss"]), float(wire["steps_per_s"]))
        if kind == "eval":
            return Evaluated(
                float(wire["epoch"]),
                int(wire["step"]),
                float(wire["val_elbo"]),
                float(wire["kl"]),
                float(wire["nll"]),
                float(wire["train_time_s"]),
            )
    except (KeyError, TypeError, ValueError):
        pass
    return Other(kind, {k: v for k, v in wire.items() if k != "type"})
