"""The records of training: evaluation points, a run's outcome, result.json, comparison rows."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cvae_bench.core.memory import RunMemory
from cvae_bench.core.records import Record
from cvae_bench.runtime.sentinel import LoadSeen

#: How a run ended. `diverged` (a non-finite loss or val −ELBO) counts like `not-reached` in comparisons.
STATUSES = ("reached", "not-reached", "fixed-epochs", "diverged")


@dataclass(frozen=True)
class EvalPoint(Record):
    """One evaluation of the shared evaluator during training (times are cumulative seconds)."""

    step: int
    epoch: float
    val_elbo: float
    kl: float
    nll: float
    train_loss: float | None = None
    train_time_s: float = 0.0
    wall_time_s: float = 0.0


@dataclass(frozen=True)
class FinalEval(Record):
    """The last evaluation of a run."""

    step: int
    epoch: float
    val_elbo: float
    kl: float
    nll: float


@dataclass(frozen=True)
class Divergence(Record):
    """Where a run stopped because a value was no longer finite."""

    step: int
    what: str  # "training loss", "val -ELBO" or "weight <name>" (`training.divergence`)
    value: str  # "nan", "inf" or "-inf": strict JSON has no non-finite numbers


@dataclass(frozen=True)
class DataUsed(Record):
    """Which data a run trained and was evaluated on."""

    dataset: str
    train_examples: int
    val_examples: int


@dataclass(frozen=True)
class RecipeCheck(Record):
    """The conformance suite's recipe checks, run on the backend in its worker before training.

    `failed` holds one line per check that found the backend training unlike the recipe; `skipped` says why
    none ran (too few training examples for the probe), in which case the run is not checked this way.
    """

    ran: list[str]
    failed: list[str]
    seconds: float
    skipped: str = ""

    @property
    def ok(self) -> bool:
        """True when every check that ran passed."""
        return not self.failed


@dataclass(frozen=True)
class AuditRecord(Record):
    """The run-time audit (`training.audit`): training steps of the run itself replayed with the reference.

    Attributes:
        points: training steps audited (snapshotted, replayed with the float64 reference and compared).
        failed: what the audit found, one line each (the first `AUDIT_LINES`), naming the step and what
            differed; any line makes the run deviant.
        seconds: the harness's own time spent auditing (snapshots, replays, comparisons, the seeding check),
            outside `train_time_s` and every timed chunk.
        seeding_seconds: the part of `seconds` the seeding check took (building and stepping the two
            throwaway instances).
        findings: how many lines there were in all.
        worst: for each comparison, the largest measured difference over its tolerance during the run (≤ 1
            passes): the margin the run had.
        skipped: why the run was not audited at all (empty when it was).
    """

    points: int
    failed: list[str]
    seconds: float
    seeding_seconds: float = 0.0
    findings: int = 0
    worst: dict[str, float] = field(default_factory=dict)
    skipped: str = ""

    @property
    def ok(self) -> bool:
        """True when the audit found nothing."""
        return not self.failed


#: How many of the audit's findings a result keeps (the count of all is `AuditRecord.findings`).
AUDIT_LINES = 20


@dataclass(frozen=True)
class TrainOutcome(Record):
    """What the training loop measured (everything of result.json except identity and files).

    `time_to_target_s` counts training steps from the second on: the first step (compilation included) is
    `first_step_s`; evaluations are `eval_time_s`.
    """

    status: str
    target: float | None
    reached: bool | None
    steps_to_target: int | None
    epochs_to_target: float | None
    time_to_target_s: float | None
    wall_time_to_target_s: float | None
    first_step_s: float
    data_load_s: float
    ms_per_step_median: float | None
    steps: int
    epochs: float
    steps_per_epoch: int
    train_time_s: float
    eval_time_s: float
    final: FinalEval | None
    history: list[EvalPoint]
    divergence: Divergence | None = None
    data: DataUsed | None = None
    recipe_check: RecipeCheck | None = None
    audit: AuditRecord | None = None


@dataclass(frozen=True)
class ConvergenceVerdict(Record):
    """Whether a run trained like the reference recipe: `consistent`, `deviant` or `unchecked`.

    A deviant run is shown with its time-to-target, never ranked as a win.
    """

    verdict: str
    reasons: list[str] = field(default_factory=list)
    band: str = ""

    @property
    def deviant(self) -> bool:
        """True when the run left the reference band or failed the recipe check."""
        return self.verdict == "deviant"


@dataclass(frozen=True)
class Resumption(Record):
    """One resume of a run: from which step, and the training time the interruption cost (work redone)."""

    from_step: int
    lost_train_s: float


@dataclass(frozen=True)
class WeightsRef(Record):
    """The weights file a result names, with the SHA-256 of the bytes written."""

    file: str
    sha256: str


@dataclass(frozen=True)
class RunResult(Record):
    """result.json: who ran, on what, with which settings, and the outcome (written flat, as ever)."""

    cvae_bench: str
    started: str
    backend: str
    origin: str
    mode: str
    device: str
    versions: dict[str, str]
    hardware: dict[str, Any]
    seed: int
    config: dict[str, Any]
    spec: dict[str, Any]
    build_s: float
    outcome: TrainOutcome
    weights: WeightsRef | None = None
    convergence: ConvergenceVerdict | None = None
    resumptions: list[Resumption] = field(default_factory=list)
    #: The load the contention sentinel saw on the machine while the worker trained (None: older files).
    load: LoadSeen | None = None
    #: The worker's peak resident set over the run (`core.memory.RunMemory`; None: older files).
    memory: RunMemory | None = None

    def to_json(self) -> dict[str, Any]:
        """The flat result.json document: the outcome's fields sit beside the identity's."""
        doc = super().to_json()
        outcome = doc.pop("outcome")
        weights, convergence, resumptions = doc.pop("weights"), doc.pop("convergence"), doc.pop("resumptions")
        return {**doc, **outcome, "convergence": convergence, "resumptions": resumptions, "weights": weights}

    @classmethod
    def from_json(cls, data: Any) -> RunResult:
        """Read a result.json document (older files without `status` or `convergence` included)."""
        doc = dict(data)
        names = {f.name for f in dataclasses.fields(TrainOutcome)}
        outcome = {k: doc.pop(k) for k in list(doc) if k in names}
        outcome.setdefault("status", _legacy_status(outcome))
        doc["outcome"] = outcome
        return super().from_json(doc)

    @property
    def label(self) -> str:
        """`backend (mode, device)`."""
        return f"{self.backend} ({self.mode}, {self.device})"


def _legacy_status(outcome: dict[str, Any]) -> str:
    if outcome.get("target") is None:
        return "fixed-epochs"
    return "reached" if outcome.get("reached") else "not-reached"


@dataclass(frozen=True)
class ComparisonRow(Record):
    """One backend/mode/device over its repeats: medians over converged runs, every run counted."""

    backend: str
    mode: str
    device: str
    runs: int
    converged: int
    not_converged: int
    diverged: int
    deviant: int
    seeds: list[int]
    time_to_target_s: float | None
    time_to_target_spread_s: list[float] | None
    steps_to_target: float | None
    steps_to_target_spread: list[float] | None
    ms_per_step_median: float | None
    first_step_s: float | None
    final_val_elbo: float | None
    target: float | None
    ratio_to_fastest: float | None = None
    #: The 95 % interval of `ratio_to_fastest` (a bootstrap over the repeats; None below 3 converged runs).
    ratio_ci: list[float] | None = None
    #: faster / slower / tie / unsure against the fastest (`cvae_bench.core.stats.verdict`; None for the fastest).
    verdict: str | None = None
    #: Runs during which the contention sentinel saw the machine busy.
    busy_runs: int = 0
    #: The training worker's peak resident set, median over the runs (bytes; None: not recorded), and its range.
    peak_rss: int | None = None
    peak_rss_spread: list[float] | None = None
