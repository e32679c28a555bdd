"""bench.json: what one `cvae-bench bench` measured, written down in pytest-benchmark's layout.

bench.json has pytest-benchmark's layout (`machine_info`, `commit_info`, `benchmarks`, `datetime`,
`version`), so `pytest-benchmark compare bench.json other.json` reads it, plus one key of ours,
`cvae_bench`, with the command, options, spec, load, roofline, fairness audit, time-to-target rows, and one
key per group that has a section of its own (sample-onnxruntime: `onnx`). Each entry of `benchmarks` is
one measurement (`records.Entry`):

- `group`: the group's name; `name`/`fullname`: e.g. "train-step[torch-eager]",
  "sample-onnxruntime[CPU-int8-b1024]"; `params`: backend/mode or provider/precision, and batch;
- `stats`: pytest-benchmark's statistics of the seconds per call (one training step, or one decoder call
  of `batch` images), `data` (per-call seconds of each round) and `iterations` (calls per round);
- `extra_info`: the group's `MeasuredInfo` record: backend, mode, device, versions, threads, batch_size,
  flops_per_call, gflops and images_per_s (at the median), floor_s and fraction_of_floor, and the times
  kept out of the statistics (build_s, first_step_s / first_call_s / session_s, warmup_s, data_load_s).

Added for verdicts (issue 10): each entry's `stats` carries `median_ci` (95 %, order statistics), `sweeps`
(the interleaved sweep of each round) and `contended_rounds`; `cvae_bench` carries `tie`, `rounds` (the
schedule: sweeps run and kept, contention, re-measured sweeps, the time to a verdict, the precision asked
and what missed it, the load the sentinel saw), `verdicts` (each entry against the fastest of its table:
ratio, 95 % interval, verdict) and `noise` (the A/A self-check). The A/A twin's entries are named
`…-aa]` with `params.aa_twin` set.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvae_bench.bench.fairness import AuditEntry
from cvae_bench.bench.groups import GROUPS, BackendGroup, StandaloneGroup
from cvae_bench.bench.memory import attach as attach_memory
from cvae_bench.bench.records import BackendRun, BenchRun, Entry
from cvae_bench.bench.roofline import Roofline
from cvae_bench.bench.rounds import RoundsSummary
from cvae_bench.bench.verdicts import (
    AA_TWIN,
    BUSY,
    NoiseCheck,
    PlainVerdict,
    TuningVerdict,
    Verdict,
    entry_verdicts,
    noise_check,
    plain_verdicts,
    tuning_verdicts,
)
from cvae_bench.core.records import Record
from cvae_bench.core.stats import DEFAULT_TIE
from cvae_bench.core.versions import NOT_INSTALLED, dist_version
from cvae_bench.runtime.machine import LoadWindow
from cvae_bench.runtime.threads import THREADS_ENV
from cvae_bench.training.records import ComparisonRow

#: The pytest-benchmark version whose layout bench.json follows, when pytest-benchmark is not installed.
PYTEST_BENCHMARK_LAYOUT = "5.2.3"


@dataclass(frozen=True)
class TimeToTarget(Record):
    """Time-to-target rows beside the benchmark, and where they came from."""

    source: str | None
    rows: list[ComparisonRow]


@dataclass(frozen=True)
class BenchSummary(Record):
    """bench.json's `cvae_bench` key. Each group's own section (`BenchGroup.section`) is a key beside the
    fields; in memory they are kept in `sections`."""

    command: str
    started: str
    options: dict[str, Any]
    spec: dict[str, Any]
    load: LoadWindow
    roofline: Roofline
    fairness: list[AuditEntry]
    time_to_target: TimeToTarget | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    tie: float = DEFAULT_TIE
    rounds: RoundsSummary | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    noise: NoiseCheck | None = None
    tuning: list[TuningVerdict] = field(default_factory=list)
    plain: list[PlainVerdict] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The record with `sections` spread beside the fields, before `time_to_target`."""
        out = super().to_json()
        sections, ttt = out.pop("sections"), out.pop("time_to_target")
        return {**out, **sections, "time_to_target": ttt}

    @classmethod
    def from_json(cls, data: Any) -> BenchSummary:
        """Read back `to_json()`: keys that are not fields are group sections."""
        summary = super().from_json(data)
        names = {f.name for f in dataclasses.fields(cls)}
        return dataclasses.replace(summary, sections={k: v for k, v in data.items() if k not in names})


@dataclass(frozen=True)
class BenchDocument(Record):
    """The whole of bench.json."""

    machine_info: dict[str, Any]
    commit_info: dict[str, Any]
    benchmarks: list[Entry]
    datetime: str
    version: str
    cvae_bench: BenchSummary


def entries(run: BenchRun) -> list[Entry]:
    """Every entry of a run: each backend's groups in registry order, then the standalone groups."""
    threads = run.options["threads"]
    out: list[Entry] = []
    for backend in run.backends:
        for name, result in backend.results.items():
            group = GROUPS[name]
            assert isinstance(group, BackendGroup)
            made = group.entries(backend.identity, result, run.roofline, threads)
            made = attach_memory(made, backend.memory)
            if backend.twin:  # the A/A twin: the same params as its original, marked
                made = [_as_twin(e) for e in made]
            out += made
    for name, result in run.standalone.items():
        group = GROUPS[name]
        assert isinstance(group, StandaloneGroup)
        out += group.entries(result, run.roofline, threads)
    return out


def _as_twin(entry: Entry) -> Entry:
    mode = str(entry.params.get("mode", "")).removesuffix(" (A/A)")
    params = {**entry.params, "mode": mode, AA_TWIN: True}
    name = entry.name.removesuffix("]").replace(" (A/A)", "") + "-aa]"
    return dataclasses.replace(entry, params=params, name=name, fullname=f"cvae-bench::{name}", param=name)


def _backend_audit(backend: BackendRun, threads: int, warmup: int) -> AuditEntry:
    ident = backend.identity
    note = ident.notes.get(ident.mode, "")
    # A `threads` knob gives this worker its own count: what its environment said is what it was asked.
    asked = backend.audit.get("env", {}).get(THREADS_ENV)
    entry = AuditEntry(
        label=f"{ident.label} ({ident.device})",
        threads=int(asked) if asked else threads,
        audit=backend.audit,
        compile=ident.mode + (f" ({note})" if note else "") + (f"; tuned {ident.tuning}" if ident.tuning else ""),
        sync=_reference_sync(ident.backend)
        if backend.reference
        else "every round ends on its result: synchronize(), then take_loss() (the round's mean loss) on the host",
        data_on_device="—",
        warmup="warm-up calls + calibration rounds excluded"
        if backend.reference
        else f"{warmup} steps + calibration rounds excluded",
    )
    for name, result in backend.results.items():
        group = GROUPS[name]
        assert isinstance(group, BackendGroup)
        entry = group.refine_audit(entry, result)
    return entry


def _reference_sync(row: str) -> str:
    if row == "plain:torch":
        return "every round ends on its result: the last step's loss.item() on the host"
    if row.startswith("plain:"):
        return "every round ends on its result: fit() returns its History of host floats"
    return "every round ends on its result: one value of the output buffer read on the host"


def audit_entries(run: BenchRun) -> list[AuditEntry]:
    """The fairness audit: what each measured process really ran with."""
    threads, warmup = run.options["threads"], run.options["warmup"]
    out = [_backend_audit(backend, threads, warmup) for backend in run.backends]
    for name, result in run.standalone.items():
        group = GROUPS[name]
        assert isinstance(group, StandaloneGroup)
        out += group.audit_entries(result, threads)
    return out


def _commit_info(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        if not commit:
            return {}
        return {
            "id": commit,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "project": "cvae-bench",
        }
    except (OSError, subprocess.SubprocessError):
        return {}


def _pytest_benchmark_version() -> str:
    version = dist_version("pytest-benchmark")
    return PYTEST_BENCHMARK_LAYOUT if version == NOT_INSTALLED else version


def build_document(
    run: BenchRun,
    command: str,
    runs: Sequence[ComparisonRow] | None = None,
    runs_source: str | None = None,
) -> BenchDocument:
    """The bench.json document (see the module docstring) of one run, with time-to-target rows if given."""
    sections = {
        group.section: group.section_json(run.standalone.get(name))
        for name, group in GROUPS.items()
        if group.section is not None
    }
    made = entries(run)
    tie = float(run.options.get("tie", DEFAULT_TIE))
    busy = run.rounds is not None and run.rounds.busy and not run.options.get("under_load", False)
    verdicts = entry_verdicts(made, tie, BUSY if busy else None)
    noise = noise_check(verdicts, made)
    return BenchDocument(
        machine_info=run.machine_info,
        commit_info=_commit_info(Path(__file__).resolve().parents[2]),
        benchmarks=made,
        datetime=_dt.datetime.now(_dt.timezone.utc).isoformat(),
        version=_pytest_benchmark_version(),
        cvae_bench=BenchSummary(
            command=command,
            started=run.started,
            options=run.options,
            spec=run.spec,
            load=run.load,
            roofline=run.roofline,
            fairness=audit_entries(run),
            time_to_target=TimeToTarget(runs_source, list(runs)) if runs is not None else None,
            sections=sections,
            tie=tie,
            rounds=run.rounds,
            verdicts=verdicts,
            noise=noise,
            tuning=tuning_verdicts(made, noise, tie),
            plain=plain_verdicts(made, noise, tie),
        ),
    )
