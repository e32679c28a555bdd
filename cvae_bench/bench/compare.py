"""The regression gate: `cvae-bench compare BASE NEW`, from result files alone.

Reads bench.json (ours, or any pytest-benchmark JSON: `--benchmark-json` output and the saved runs under
`.benchmarks/`), result.json, comparison.json, or folders of them, as small typed samples — never a runner.
Each entry present in both gets NEW / BASE with its 95 % interval (`cvae_bench.core.stats`: a bootstrap of the
two samples' medians, or the box-plot notch when a file kept only summaries) and a verdict. When the two
files come from different machines, each ratio is divided by the ratio of the roofline floors the runs
measured for the same arithmetic (`extra_info.floor_s`, the roofline's record of each entry), so that a
faster machine is not read as a faster backend. The gate fails when a regression is significant (the
interval lies above 1) and its estimate is larger than `fail_above`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvae_bench.core.defaults import DEFAULT_FAIL_ABOVE
from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.core.records import Record, finite_number
from cvae_bench.core.stats import DEFAULT_TIE, Interval, notch_ratio, unpaired_ratio, verdict
from cvae_bench.runtime.files import read_json
from cvae_bench.training.records import RunResult


@dataclass(frozen=True)
class Sample(Record):
    """One entry of a result file: its values (seconds) or summary, the floor, and the machine.

    Attributes:
        name: the entry ("train-step[torch-eager]", "time-to-target[torch-eager-cpu]").
        values: every round's (or run's) seconds, when the file kept them.
        median, iqr, n: the summary (for files without values).
        floor_s: the roofline floor of the same arithmetic on the run's machine (None: unknown).
        machine: what identifies the machine ("AMD EPYC ×2").
        busy: whether the file records the machine as contended during the work.
    """

    name: str
    median: float
    n: int
    values: list[float] | None = None
    iqr: float | None = None
    floor_s: float | None = None
    machine: str = ""
    busy: bool = False


@dataclass(frozen=True)
class Change(Record):
    """One entry's change from BASE to NEW: the ratio NEW/BASE (above 1: slower), interval, verdict."""

    name: str
    base_s: float
    new_s: float
    ratio: Interval
    verdict: str
    normalised: bool
    regression: bool
    notes: list[str] = field(default_factory=list)


def _object(value: Any, where: str) -> dict[str, Any]:
    """`value` when it is a JSON object (None: an empty one)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CvaeBenchError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _array(value: Any, where: str) -> list[Any]:
    """`value` when it is a JSON array (None: an empty one)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise CvaeBenchError(f"{where}: expected an array, got {type(value).__name__}")
    return value


def _bench_samples(doc: dict[str, Any]) -> list[Sample]:
    mi = _object(doc.get("machine_info"), "machine_info")
    cpu = _object(mi.get("cpu"), "machine_info.cpu")
    machine = f"{cpu.get('brand_raw', mi.get('processor', '?'))} ×{cpu.get('count', '?')}"
    cb = _object(doc.get("cvae_bench"), "cvae_bench")
    rounds = _object(cb.get("rounds"), "cvae_bench.rounds")
    busy = bool(_object(rounds.get("load"), "cvae_bench.rounds.load").get("busy"))
    out = []
    for i, e in enumerate(_array(doc.get("benchmarks"), "benchmarks")):
        at = f"benchmarks[{i}]"
        e = _object(e, at)
        stats, info = _object(e.get("stats"), f"{at}.stats"), _object(e.get("extra_info"), f"{at}.extra_info")
        if "median" not in stats:
            continue
        data = _array(stats.get("data"), f"{at}.stats.data")
        values = [finite_number(v, f"{at}.stats.data[{j}]", positive=True) for j, v in enumerate(data)]
        rounds_n = stats.get("rounds")
        n = len(values) if rounds_n is None else finite_number(rounds_n, f"{at}.stats.rounds", positive=True)
        iqr, floor = stats.get("iqr"), info.get("floor_s")
        name = e.get("name") or e.get("fullname")
        if not isinstance(name, str):
            raise CvaeBenchError(f"{at}.name: expected a string, got {type(name).__name__}")
        out.append(
            Sample(
                name=name,
                median=finite_number(stats["median"], f"{at}.stats.median", positive=True),
                n=int(n),
                values=values or None,
                iqr=None if iqr is None else finite_number(iqr, f"{at}.stats.iqr"),
                floor_s=None if floor is None else finite_number(floor, f"{at}.extra_info.floor_s", positive=True),
                machine=machine,
                busy=busy or bool(stats.get("contended_rounds")),
            )
        )
    return out


def _run_samples(runs: Sequence[Any], machine: str, where: str = "runs") -> list[Sample]:
    """Time-to-target and ms/step per backend/mode/device, over the runs (repeats) of a comparison."""
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for i, r in enumerate(_array(runs, where)):
        at = f"{where}[{i}]"
        r = _object(r, at)
        groups.setdefault(f"{r.get('backend')}-{r.get('mode')}-{r.get('device')}", []).append((at, r))
    out = []
    for key, members in groups.items():
        busy = any(bool(_object(r.get("load"), f"{at}.load").get("busy")) for at, r in members)
        for metric, scale in (("time_to_target_s", 1.0), ("ms_per_step_median", 1e-3)):
            values = [
                finite_number(r[metric], f"{at}.{metric}", positive=True) * scale
                for at, r in members
                if r.get(metric) is not None
            ]
            if values:
                name = f"{'time-to-target' if metric == 'time_to_target_s' else 'ms-per-step'}[{key}]"
                med = sorted(values)[len(values) // 2] if len(values) % 2 else _mid(values)
                out.append(Sample(name=name, median=med, n=len(values), values=values, machine=machine, busy=busy))
    return out


def _mid(values: list[float]) -> float:
    x = sorted(values)
    return (x[len(x) // 2 - 1] + x[len(x) // 2]) / 2


def _result_samples(doc: dict[str, Any]) -> list[Sample]:
    """The samples of one result.json, after the whole file is checked against `RunResult`."""
    RunResult.from_json(doc)  # a RecordError names the field; `_checked` puts the file in front
    return _run_samples([doc], _hardware_machine(doc.get("hardware")), "result")


def _checked(path: Path, read: Callable[[], list[Sample]]) -> list[Sample]:
    """`read()`'s samples; its field errors get the file's name in front."""
    try:
        return read()
    except CvaeBenchError as exc:
        raise CvaeBenchError(f"{path}: {exc}") from exc


def _merge_runs(samples: list[Sample]) -> list[Sample]:
    """One sample per entry over the result.json files of a folder (each file is one run of its entry)."""
    by_name: dict[str, list[Sample]] = {}
    for s in samples:
        by_name.setdefault(s.name, []).append(s)
    out = []
    for name, members in by_name.items():
        values = [v for m in members for v in (m.values or [m.median])]
        med = sorted(values)[len(values) // 2] if len(values) % 2 else _mid(values)
        busy = any(m.busy for m in members)
        out.append(Sample(name=name, median=med, n=len(values), values=values, machine=members[0].machine, busy=busy))
    return out


def _hardware_machine(hw: Any) -> str:
    hw = hw if isinstance(hw, dict) else {}
    return f"{hw.get('cpu', '?')} ×{hw.get('cpu_count', '?')}"


def read_samples(path: str | Path) -> list[Sample]:
    """Every entry of a result file or folder (see the module docstring).

    Every number is checked on the way in: a string, NaN, infinity, zero or negative where a time belongs is
    refused with the file and the field, so that no verdict is ever computed from it.

    Raises:
        CvaeBenchError: nothing readable at `path`, or a field that does not hold what it should.
    """
    p = Path(path)
    if p.is_dir():
        for name in ("bench.json", "comparison.json"):
            if (p / name).is_file():
                return read_samples(p / name)
        results = sorted(p.rglob("result.json"))
        if results:
            out = []
            for f in results:
                doc = read_json(f)
                if not isinstance(doc, dict):
                    raise CvaeBenchError(f"{f}: expected a JSON object, got {type(doc).__name__}")
                out += _checked(f, functools.partial(_result_samples, doc))
            return _merge_runs(out)
        saved = sorted(p.rglob("*.json"), key=lambda f: f.stat().st_mtime)
        for f in reversed(saved):  # pytest-benchmark's saved runs: the newest
            doc = read_json(f)
            if isinstance(doc, dict) and "benchmarks" in doc:
                return _checked(f, functools.partial(_bench_samples, doc))
        raise CvaeBenchError(f"no bench.json, comparison.json, result.json or pytest-benchmark JSON under {p}")
    doc = read_json(p)
    if isinstance(doc, dict) and "benchmarks" in doc:
        return _checked(p, lambda: _bench_samples(doc))
    if isinstance(doc, dict) and "rows" in doc and "runs" in doc:
        return _checked(p, lambda: _run_samples(doc["runs"], _hardware_machine(doc.get("hardware"))))
    if isinstance(doc, dict) and "backend" in doc and "hardware" in doc:
        return _checked(p, lambda: _result_samples(doc))
    raise CvaeBenchError(
        f"{p} is not a bench.json, pytest-benchmark JSON, comparison.json or result.json of cvae-bench"
    )


def change(base: Sample, new: Sample, tie: float = DEFAULT_TIE, fail_above: float = DEFAULT_FAIL_ABOVE) -> Change:
    """NEW / BASE of one entry, normalised by the floors when the machines differ."""
    notes = []
    if base.values and new.values and min(base.values) > 0 and min(new.values) > 0:
        ratio = unpaired_ratio(base.values, new.values)
    elif base.iqr is not None and new.iqr is not None:
        ratio = notch_ratio(base.median, base.iqr, base.n, new.median, new.iqr, new.n)
    else:
        ratio = Interval(new.median / base.median, None, None, "none", min(base.n, new.n))
    if ratio.low is None:
        notes.append("no interval (fewer than 3 values on a side)")
    normalised = False
    if base.machine != new.machine:
        if base.floor_s and new.floor_s:
            k = new.floor_s / base.floor_s
            ratio = Interval(
                ratio.estimate / k,
                None if ratio.low is None else ratio.low / k,
                None if ratio.high is None else ratio.high / k,
                ratio.method + ", floor-normalised",
                ratio.n,
            )
            normalised = True
            notes.append(f"machines differ: divided by the floors' ratio {k:.3f}")
        else:
            notes.append("machines differ and no roofline floor to normalise by: read with care")
    if base.busy or new.busy:
        notes.append("the machine was BUSY during " + ("both runs" if base.busy and new.busy else "one run"))
    regression = ratio.low is not None and ratio.low > 1 and ratio.estimate > 1 + fail_above
    return Change(new.name, base.median, new.median, ratio, verdict(ratio, tie), normalised, regression, notes)


@dataclass(frozen=True)
class GateResult(Record):
    """Every change, the entries found on one side only, and whether the gate failed."""

    changes: list[Change]
    only_base: list[str]
    only_new: list[str]
    fail_above: float
    tie: float

    @property
    def failed(self) -> bool:
        """Whether any entry regressed significantly by more than `fail_above`."""
        return any(c.regression for c in self.changes)


def compare_files(
    base: str | Path, new: str | Path, tie: float = DEFAULT_TIE, fail_above: float = DEFAULT_FAIL_ABOVE
) -> GateResult:
    """Compare every entry found in both BASE and NEW.

    Raises:
        CvaeBenchError: either side unreadable, or no entry in common.
    """
    # The A/A twin (a second worker of the first contestant) measures the machine's noise floor; it is not a
    # contestant, and comparing it across two benches would list one backend twice.
    a = {s.name: s for s in read_samples(base) if AA_MARK not in s.name}
    b = {s.name: s for s in read_samples(new) if AA_MARK not in s.name}
    common = [n for n in b if n in a]
    if not common:
        raise CvaeBenchError(
            f"no entry in common between {base} ({len(a)} entries) and {new} ({len(b)} entries); "
            "compare results of the same kind (bench with bench, runs with runs)"
        )
    changes = [change(a[n], b[n], tie, fail_above) for n in common]
    return GateResult(changes, sorted(set(a) - set(b)), sorted(set(b) - set(a)), fail_above, tie)


#: What marks an A/A twin's entry in bench.json (`bench.records.Identity.variant`).
AA_MARK = " (A/A)"

GATE_HEADERS = ["entry", "base", "new", "change [95 % CI]", "verdict", "notes"]


def _secs(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def gate_rows(result: GateResult) -> list[list[str]]:
    """The gate's table: one row per entry in common."""
    rows = []
    for c in result.changes:
        r = c.ratio
        pct = f"{(r.estimate - 1) * 100:+.1f} %"
        if r.low is not None and r.high is not None:
            pct += f" [{(r.low - 1) * 100:+.1f}, {(r.high - 1) * 100:+.1f}]"
        verdict_text = c.verdict + (" — REGRESSION" if c.regression else "")
        rows.append([c.name, _secs(c.base_s), _secs(c.new_s), pct, verdict_text, "; ".join(c.notes)])
    return rows


def gate_summary(result: GateResult) -> str:
    """One closing line: passed, or failed with the entries that regressed."""
    bad = [c.name for c in result.changes if c.regression]
    if bad:
        return f"FAILED: {len(bad)} significant regression(s) above {result.fail_above:.0%}: {', '.join(bad)}"
    return f"passed: no significant regression above {result.fail_above:.0%} in {len(result.changes)} entries"
