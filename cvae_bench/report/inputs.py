"""The files a report reads, as typed records: result.json, comparison.json, bench.json, decoders, history.

Nothing here imports a runner: a report is made from files alone, copied off another machine if need be.
bench.json is read as a file format (pytest-benchmark's layout plus our `cvae_bench` key) through records
of this module that give every field a default, so a pytest-benchmark JSON of `pytest benchmarks` reads too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvae_bench.bench.fairness import AuditEntry
from cvae_bench.bench.verdicts import NoiseCheck
from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.core.records import Record, RecordError
from cvae_bench.core.stats import Interval
from cvae_bench.runtime import files
from cvae_bench.runtime.machine import LoadWindow
from cvae_bench.training.records import ComparisonRow, ConvergenceVerdict, FinalEval, RunResult


class ReportError(CvaeBenchError):
    """A report input that cannot be read, or a report that cannot be made."""


# -- bench.json ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchStats(Record):
    """pytest-benchmark's statistics of one entry, seconds per call (the fields a report uses)."""

    median: float
    q1: float | None = None
    q3: float | None = None
    iqr: float | None = None
    mean: float | None = None
    stddev: float | None = None
    min: float | None = None
    max: float | None = None
    rounds: int = 0
    data: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class BenchEntry(Record):
    """One measurement of bench.json's `benchmarks`; `extra_info` is the group's `MeasuredInfo` as JSON."""

    group: str
    name: str
    stats: BenchStats
    params: dict[str, Any] = field(default_factory=dict)
    extra_info: dict[str, Any] = field(default_factory=dict)

    def info(self, key: str, default: Any = None) -> Any:
        """`extra_info[key]`, else `params[key]`, else `default`."""
        return self.extra_info.get(key, self.params.get(key, default))

    @property
    def batch(self) -> int | None:
        """Images per call."""
        value = self.info("batch_size", self.params.get("batch"))
        return None if value is None else int(value)

    @property
    def series(self) -> str:
        """What the entry measures, without its batch: 'torch:eager' or 'onnxruntime CPU fp32'."""
        if "precision" in self.params or "provider" in self.params:
            return f"onnxruntime {self.info('provider', '?')} {self.info('precision', '?')}"
        return f"{self.info('backend', '?')}:{self.info('mode', '?')}"


@dataclass(frozen=True)
class Floor(Record):
    """The roofline of one workload: its bare-matmul floor and the ceiling's GFLOP/s."""

    batch: int
    floor_s: float
    ceiling_gflops: float
    spec_flops: int = 0
    floor_by_library_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RooflineFile(Record):
    """bench.json's `cvae_bench.roofline`, as far as a report reads it."""

    libraries: dict[str, str] = field(default_factory=dict)
    train_step: Floor | None = None
    decode: dict[int, Floor] = field(default_factory=dict)


@dataclass(frozen=True)
class TimeToTargetFile(Record):
    """bench.json's `cvae_bench.time_to_target`."""

    source: str | None = None
    rows: list[ComparisonRow] = field(default_factory=list)


@dataclass(frozen=True)
class VerdictFile(Record):
    """One of bench.json's `cvae_bench.verdicts`, as far as a report reads it."""

    name: str
    reference: str
    verdict: str
    withheld: str | None = None
    ratio: Interval | None = None


@dataclass(frozen=True)
class RoundsFile(Record):
    """bench.json's `cvae_bench.rounds`, as far as a report reads it."""

    busy: bool = False
    epochs_run: int = 1


@dataclass(frozen=True)
class BenchSummaryFile(Record):
    """bench.json's `cvae_bench` key, as far as a report reads it."""

    command: str = ""
    started: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    load: LoadWindow | None = None
    roofline: RooflineFile | None = None
    fairness: list[AuditEntry] = field(default_factory=list)
    time_to_target: TimeToTargetFile | None = None
    verdicts: list[VerdictFile] = field(default_factory=list)
    rounds: RoundsFile | None = None
    noise: NoiseCheck | None = None


@dataclass(frozen=True)
class BenchFile(Record):
    """bench.json (or any pytest-benchmark JSON file)."""

    benchmarks: list[BenchEntry]
    machine_info: dict[str, Any] = field(default_factory=dict)
    commit_info: dict[str, Any] = field(default_factory=dict)
    datetime: str = ""
    version: str = ""
    cvae_bench: BenchSummaryFile | None = None

    def group(self, name: str) -> list[BenchEntry]:
        """The entries of one benchmark group, in file order."""
        return [e for e in self.benchmarks if e.group == name]


# -- comparison.json ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunBrief(Record):
    """One run as comparison.json's `runs` lists it."""

    backend: str
    mode: str
    device: str
    seed: int
    status: str = ""
    reached: bool | None = None
    steps_to_target: int | None = None
    time_to_target_s: float | None = None
    first_step_s: float | None = None
    ms_per_step_median: float | None = None
    final: FinalEval | None = None
    convergence: ConvergenceVerdict | None = None
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def deviant(self) -> bool:
        """Left the reference band (or diverged)."""
        return self.convergence is not None and self.convergence.deviant


@dataclass(frozen=True)
class ComparisonFile(Record):
    """comparison.json: the command, target, machine, one row per backend/mode and every run in brief."""

    rows: list[ComparisonRow]
    command: str = ""
    target: float | None = None
    hardware: dict[str, Any] = field(default_factory=dict)
    runs: list[RunBrief] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Any) -> ComparisonFile:
        """Read comparison.json (rows of older files lack `diverged` and `deviant`)."""
        if isinstance(data, dict) and isinstance(data.get("rows"), list):
            data = {**data, "rows": [{"diverged": 0, "deviant": 0, **r} for r in data["rows"]]}
        return super().from_json(data)


# -- what a report is made from ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Loaded:
    """One input file and its record."""

    path: Path
    record: Any


@dataclass
class Inputs:
    """Every file a report was given, by kind (`history` is filled by `history.load_history`)."""

    results: list[Loaded] = field(default_factory=list)
    comparisons: list[Loaded] = field(default_factory=list)
    benches: list[Loaded] = field(default_factory=list)
    decoders: list[Path] = field(default_factory=list)
    history: list[Loaded] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to report."""
        return not (self.results or self.comparisons or self.benches or self.decoders or self.history)

    def run_results(self) -> list[RunResult]:
        """Every result.json record."""
        return [x.record for x in self.results]


def read_json(path: Path) -> Any:
    """The JSON document in `path`.

    Raises:
        ReportError: it cannot be read or is not JSON.
    """
    try:
        return files.read_json(path)
    except CvaeBenchError as exc:
        raise ReportError(str(exc)) from exc


def kind_of(doc: Any) -> str | None:
    """'result', 'comparison', 'bench' or 'history' for a document of that kind, else None."""
    if not isinstance(doc, dict):
        return None
    if "history_entry" in doc:
        return "history"
    if isinstance(doc.get("benchmarks"), list):
        return "bench"
    if isinstance(doc.get("rows"), list):
        return "comparison"
    if "backend" in doc and ("history" in doc or "reached" in doc):
        return "result"
    return None


_PARSERS: dict[str, type[Record]] = {"result": RunResult, "comparison": ComparisonFile, "bench": BenchFile}


def _add(inputs: Inputs, path: Path, seen: set[Path]) -> None:
    path = path.resolve()
    if path in seen:
        return
    seen.add(path)
    if path.suffix == ".onnx":
        inputs.decoders.append(path)
        return
    doc = read_json(path)
    kind = kind_of(doc)
    if kind == "history":
        inputs.history.append(Loaded(path, _parse(HistoryEntry, doc, path)))
    elif kind is None:
        raise ReportError(
            f"{path} is not a result file: expected a result.json, comparison.json or bench.json of cvae-bench "
            "(or a pytest-benchmark JSON file), or a history entry"
        )
    else:
        target = {"result": inputs.results, "comparison": inputs.comparisons, "bench": inputs.benches}[kind]
        target.append(Loaded(path, _parse(_PARSERS[kind], doc, path)))


def _parse(cls: type[Record], doc: Any, path: Path) -> Any:
    try:
        return cls.from_json(doc)
    except (RecordError, TypeError, ValueError, KeyError) as exc:
        raise ReportError(f"cannot read {path} as a {cls.__name__}: {exc}") from exc


#: File names a folder is searched for.
FOLDER_FILES = ("result.json", "comparison.json", "bench.json")


def folder_files(folder: Path) -> Iterable[Path]:
    """The files a report reads under `folder`: result.json, comparison.json, bench.json and decoder*.onnx."""
    for name in FOLDER_FILES:
        yield from sorted(folder.rglob(name))
    yield from sorted(p for p in folder.rglob("*.onnx") if p.name.startswith("decoder"))


def load_inputs(paths: Sequence[str | Path]) -> Inputs:
    """Read every file named, and every result file found under every folder named.

    A folder is searched (recursively) for result.json, comparison.json, bench.json and decoder*.onnx; a
    file is read by what it holds, whatever its name.

    Raises:
        ReportError: a path does not exist, or a file named is not a result file.
    """
    inputs = Inputs()
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = list(folder_files(p))
            if not found:
                inputs.skipped.append(f"{p}: no result.json, comparison.json, bench.json or decoder*.onnx")
            for f in found:
                try:
                    _add(inputs, f, seen)
                except ReportError as exc:
                    inputs.skipped.append(str(exc))
        elif p.is_file():
            _add(inputs, p, seen)
        else:
            raise ReportError(f"{p}: no such file or folder")
    return inputs


# -- history files -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric(Record):
    """One figure of a result whose trend is drawn; seconds, lower is better.

    Attributes:
        family: the chart it belongs to (a benchmark group, "time-to-target", "ms/step of training runs").
        name: the series, e.g. "train-step[torch-eager]".
        value: the figure (a median).
        sigma: its own spread as a normal σ (IQR / 1.349 of the rounds), None when unknown.
        low, high: the spread drawn around it (q1–q3, or min–max over repeats), None when unknown.
    """

    family: str
    name: str
    value: float
    sigma: float | None = None
    low: float | None = None
    high: float | None = None
    unit: str = "s"


@dataclass(frozen=True)
class HistoryEntry(Record):
    """One history file: a result, who made it, and its metrics."""

    history_entry: int
    kind: str
    commit: str
    dirty: bool
    machine: str
    machine_name: str
    versions: dict[str, str]
    versions_key: str
    recorded: str
    source: str
    metrics: list[Metric]
    document: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The file name's stem."""
        commit = (self.commit[:12] or "nocommit") + ("-dirty" if self.dirty else "")
        return f"{commit}_{self.machine}_{self.versions_key}_{self.kind}-{_subject(self)}"

    @property
    def short_commit(self) -> str:
        """The commit's first 8 characters, '+' when the tree had changes."""
        return (self.commit[:8] or "?") + ("+" if self.dirty else "")


def short_digest(obj: Any, n: int = 8) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]


def _subject(entry: HistoryEntry) -> str:
    return short_digest(sorted(m.name for m in entry.metrics) or entry.source)
