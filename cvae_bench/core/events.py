"""What a command tells its user while it works: typed event records, and the one `Reporter` that hears them.

In-process layers (the bench engine, matched training runs, the command bodies) send records. Workers send
events as plain dicts (`{"type": "eval", ...}`: the worker protocol's wire format, across the process
boundary); `read_event` turns each into its record once, at the edge where the worker's frame arrives
(`runtime.worker.Worker.request`), so that what shows them (the console, a log, a test) matches on types
rather than on string keys, and hears everything through one method.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
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
class CeilingMeasured:
    """The matmul ceiling at one GEMM shape (`m×k×n`): the fastest seconds per product, by library."""

    shape: str
    seconds: dict[str, float]


@dataclass(frozen=True)
class BandwidthMeasured:
    """One library's memory bandwidth: bytes per second, by working-set size in bytes."""

    library: str
    bytes_per_s: dict[str, float]


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
class Diverged:
    """A training run diverged at `step`: `what` (the loss, val −ELBO, a weight) reached `value`; it stops."""

    step: int
    what: str
    value: str


@dataclass(frozen=True)
class Message:
    """A line for the user: `info` (a result line), `progress` (what is being done), `warning`."""

    text: str
    level: Literal["info", "progress", "warning"] = "info"


@dataclass(frozen=True)
class Other:
    """A wire event this version has no record for (or an incomplete one): kept whole, not lost.

    `type` is the event's `type` ("" when it had none); `fields` everything else it carried.
    """

    type: str
    fields: dict[str, Any]


Event = (
    Stage
    | Measured
    | CeilingMeasured
    | BandwidthMeasured
    | TrainStart
    | TrainProgress
    | Evaluated
    | Diverged
    | Message
    | Other
)

#: What a worker job sends its events through (`job(backend, emit, **kwargs)`): the wire format, a dict.
Emit = Callable[[dict[str, Any]], None]


class Reporter(Protocol):
    """Whatever shows a command's events: the console, a log file, a list in a test."""

    def report(self, event: Event) -> None:
        """Show (or keep) one event."""


class RunReporter(Reporter, Protocol):
    """A `Reporter` for matched training runs: its lines, and a display of each run's own events."""

    def run(self, label: str) -> AbstractContextManager[Reporter]:
        """The reporter of one run's events (`TrainStart`, `TrainProgress`, `Evaluated`, ...) while it trains
        (the console's progress bar, entered before the run and left after it, however it ends)."""
        ...


class Silent:
    """A `RunReporter` that drops every event: the default of callers that show nothing."""

    def report(self, event: Event) -> None:
        """Drop `event`."""

    def run(self, label: str) -> AbstractContextManager[Reporter]:
        """Itself: a run's events are dropped too."""
        return contextlib.nullcontext(self)


#: The one `Silent` reporter (it holds nothing).
SILENT = Silent()


@dataclass
class Collect:
    """A `RunReporter` that keeps every event in order, each run's included (a test's, a notebook's)."""

    events: list[Event] = field(default_factory=list)

    def report(self, event: Event) -> None:
        """Keep `event`."""
        self.events.append(event)

    def run(self, label: str) -> AbstractContextManager[Reporter]:
        """Itself: a run's events join the others."""
        return contextlib.nullcontext(self)


def read_event(wire: Any) -> Event:
    """The record of one wire event (`{"type": ..., ...}`); an unknown or incomplete one becomes `Other`, whole."""
    if not isinstance(wire, dict):
        return Other("", {"data": wire})
    kind = wire.get("type")
    try:
        if kind == "stage":
            return Stage(str(wire.get("what", "")))
        if kind == "bench" and "median_s" in wire:
            return Measured(str(wire["what"]), float(wire["median_s"]))
        if kind == "ceiling" and "shape" in wire:
            return CeilingMeasured(str(wire["shape"]), _figures(wire, "shape"))
        if kind == "ceiling" and "bandwidth" in wire:
            return BandwidthMeasured(str(wire["bandwidth"]), _figures(wire, "bandwidth"))
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
        if kind == "diverged":
            return Diverged(int(wire["step"]), str(wire["what"]), str(wire["value"]))
    except (KeyError, TypeError, ValueError):
        pass
    if not isinstance(kind, str):  # no type, or one that is not a name: kept among the fields
        return Other("", dict(wire))
    return Other(kind, {k: v for k, v in wire.items() if k != "type"})


def _figures(wire: dict[str, Any], name: str) -> dict[str, float]:
    """Every field but `type` and `name`, as numbers (raises ValueError or TypeError on one that is not)."""
    return {str(k): float(v) for k, v in wire.items() if k not in ("type", name)}
