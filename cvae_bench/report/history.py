"""The results history: one plain JSON file per result, keyed by commit, machine and versions.

`append_history(result, history_dir)` copies a result (a bench.json, a result.json or a comparison.json)
into the history folder as a `HistoryEntry`: the whole document, who made it (commit, machine fingerprint,
versions) and the figures whose trend a report draws (`Metric`, lower is better: seconds). The file name is
the key and a digest of the result document, `<commit>_<machine>_<versions>_<kind>-<subject>_<digest>.json`:
the same result appended twice replaces itself, while every other result gets its own file — two runs of
one commit that differ only in their seed, or two writers appending to the folder at once, never share a
name. Files are written atomically (a unique temporary file renamed into place) and hold plain JSON, so a
user may commit or sync the folder.

The machine fingerprint is the CPU model and core count (the host name is left out: CI machines change it
every run; the kernel and Python versions go into the versions key instead).
"""

from __future__ import annotations

import datetime as _dt
import re
import subprocess
from pathlib import Path
from typing import Any

from cvae_bench.core.records import Record, RecordError
from cvae_bench.report.inputs import (
    BenchFile,
    ComparisonFile,
    HistoryEntry,
    Loaded,
    Metric,
    ReportError,
    kind_of,
    read_json,
    short_digest,
)
from cvae_bench.runtime.files import ensure_dir, write_json
from cvae_bench.training.records import RunResult

#: The format of history files; readers ignore keys they do not know.
FORMAT = 1


def default_history_dir() -> Path:
    """$CVAE_BENCH_HISTORY, else `<project cache>/history`: $CVAE_BENCH_CACHE/history, else
    ~/.cache/cvae-bench/history. (Its own variable so that a test suite can move the history and keep the
    data cache.)"""
    import os

    from cvae_bench.data.loading import cache_dir

    env = os.environ.get("CVAE_BENCH_HISTORY")
    return Path(env).expanduser() if env else cache_dir() / "history"


def history_store(history: str | Path | None, off: bool = False) -> Path | None:
    """Where `run` and `bench` append their results: `history`, else the default store; None when `off`."""
    if off:
        return None
    return Path(history).expanduser() if history else default_history_dir()


def machine_fingerprint(cpu: str, cores: Any) -> tuple[str, str]:
    """(fingerprint, name) of a machine from its CPU model and core count."""
    return short_digest([cpu, cores], 12), f"{cpu}, {cores} cores"


def _git_commit(root: Path) -> tuple[str, bool]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return commit, bool(commit) and bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "", False


# -- metrics of each kind of result ----------------------------------------------------------------------
def bench_metrics(bench: BenchFile) -> list[Metric]:
    """The median seconds per call of every benchmark entry, with its IQR."""
    out = []
    for e in bench.benchmarks:
        s = e.stats
        out.append(
            Metric(
                family=e.group,
                name=e.name,
                value=s.median,
                sigma=s.iqr / 1.349 if s.iqr is not None else None,
                low=s.q1,
                high=s.q3,
            )
        )
    return out


def _label(backend: str, mode: str, device: str) -> str:
    return f"{backend}:{mode} ({device})"


def result_metrics(result: RunResult) -> list[Metric]:
    """A run's time-to-target (when it reached the target) and its median ms/step, in seconds."""
    o, label = result.outcome, _label(result.backend, result.mode, result.device)
    out = []
    if o.time_to_target_s is not None:
        out.append(Metric("time-to-target", f"time-to-target[{label}]", o.time_to_target_s))
    if o.ms_per_step_median:
        out.append(Metric("training ms/step", f"training-step[{label}]", o.ms_per_step_median / 1e3))
    return out


def comparison_metrics(comparison: ComparisonFile) -> list[Metric]:
    """Each row's median time-to-target (min–max over repeats) and median ms/step."""
    out = []
    for r in comparison.rows:
        label = _label(r.backend, r.mode, r.device)
        if r.time_to_target_s is not None:
            low, high = r.time_to_target_spread_s or (None, None)
            out.append(Metric("time-to-target", f"time-to-target[{label}]", r.time_to_target_s, None, low, high))
        if r.ms_per_step_median:
            out.append(Metric("training ms/step", f"training-step[{label}]", r.ms_per_step_median / 1e3))
    return out


def make_entry(doc: dict[str, Any], source: str, commit: str | None = None, dirty: bool | None = None) -> HistoryEntry:
    """The history entry of a result document (bench.json, result.json or comparison.json).

    Args:
        doc: the document as read from its file.
        source: where it was read from (kept in the entry, shown in reports).
        commit, dirty: the commit it was made at; default: bench.json's `commit_info`, else this checkout's.

    Raises:
        ReportError: the document is none of the three kinds.
    """
    kind = kind_of(doc)
    root = Path(__file__).resolve().parents[2]
    if kind == "bench":
        bench = BenchFile.from_json(doc)
        info = bench.machine_info
        cpu = info.get("cpu", {})
        fingerprint = machine_fingerprint(cpu.get("brand_raw", info.get("processor", "?")), cpu.get("count"))
        versions = {"python": str(info.get("python_version", "?")), **info.get("versions", {})}
        recorded = bench.datetime or (bench.cvae_bench.started if bench.cvae_bench else "")
        found = (bench.commit_info.get("id", ""), bool(bench.commit_info.get("dirty", False)))
        metrics = bench_metrics(bench)
    elif kind in ("result", "comparison"):
        if kind == "result":
            result = RunResult.from_json(doc)
            hardware, versions, recorded = result.hardware, dict(result.versions), result.started
            metrics = result_metrics(result)
        else:
            comparison = ComparisonFile.from_json(doc)
            hardware, recorded = comparison.hardware, ""
            versions = {k: v for r in comparison.runs for k, v in r.versions.items()}
            metrics = comparison_metrics(comparison)
        fingerprint = machine_fingerprint(hardware.get("cpu", "?"), hardware.get("cpu_count"))
        versions = {"python": str(hardware.get("python", "?")), **versions}
        found = _git_commit(root)
    else:
        raise ReportError(f"{source}: expected a bench.json, result.json or comparison.json to add to the history")
    recorded = recorded or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return HistoryEntry(
        history_entry=FORMAT,
        kind=kind,
        commit=found[0] if commit is None else commit,
        dirty=found[1] if dirty is None else dirty,
        machine=fingerprint[0],
        machine_name=fingerprint[1],
        versions=versions,
        versions_key=short_digest(versions),
        recorded=recorded,
        source=source,
        metrics=metrics,
        document=doc,
    )


def append_history(
    result: str | Path | Record | dict[str, Any],
    history_dir: str | Path | None = None,
    *,
    commit: str | None = None,
    dirty: bool | None = None,
) -> Path:
    """Add one result to the history folder; returns the history file written.

    Args:
        result: a result file (bench.json, result.json, comparison.json, or a run folder holding one of
            them: comparison.json first, else result.json, else bench.json), or the record or document itself.
        history_dir: the history folder (default `default_history_dir()`), created if needed.
        commit, dirty: the commit the result was made at (default: bench.json's, else this checkout's).

    Raises:
        ReportError: `result` is not a result of cvae-bench; CvaeBenchError: the folder cannot be written.
    """
    if isinstance(result, (str, Path)):
        path = Path(result)
        if path.is_dir():
            found = [path / n for n in ("comparison.json", "result.json", "bench.json") if (path / n).is_file()]
            if not found:
                raise ReportError(f"{path}: no comparison.json, result.json or bench.json to add to the history")
            path = found[0]
        doc, source = read_json(path), str(path.resolve())
    elif isinstance(result, Record):
        doc, source = result.to_json(), f"<{type(result).__name__}>"
    else:
        doc, source = dict(result), "<document>"
    entry = make_entry(doc, source, commit, dirty)
    folder = ensure_dir(Path(history_dir) if history_dir is not None else default_history_dir())
    # The document's digest tells apart results the key does not (another seed, another start time).
    out = folder / f"{_safe(entry.key)}_{short_digest(doc, 12)}.json"
    write_json(out, entry.to_json())
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


def load_history(folder: str | Path, skipped: list[str] | None = None) -> list[Loaded]:
    """Every history entry in `folder` (recursively), oldest first; files that are not entries are skipped.

    An entry that does not hold a valid `HistoryEntry` is skipped too, with a line naming the file and the
    field appended to `skipped` (when given).

    Raises:
        ReportError: `folder` is not a folder.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ReportError(f"--history {root}: no such folder")
    out = []
    for path in sorted(root.rglob("*.json")):
        try:
            doc = read_json(path)
        except ReportError:
            continue
        if kind_of(doc) == "history":
            try:
                out.append(Loaded(path, HistoryEntry.from_json(doc)))
            except RecordError as exc:
                if skipped is not None:
                    skipped.append(f"{path}: not a valid history entry: {exc}")
    return sorted(out, key=lambda x: x.record.recorded)
