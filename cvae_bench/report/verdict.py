"""The answer up front: one row per backend/mode, the A/A noise floor, and what makes the answer weak.

Nothing here computes a statistic. Ratios, intervals and verdict words are the ones the commands wrote:
bench.json's `cvae_bench.verdicts` and `noise` (made by `cvae_bench.bench.verdicts`), and the time-to-target
rows of `cvae_bench.training.compare.summarize` (comparison.json, bench.json, or the runs given). The A/A
twin is never a row: it is the noise check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cvae_bench.bench.verdicts import NoiseCheck
from cvae_bench.report.charts import interval, is_twin, series_label
from cvae_bench.report.inputs import BenchEntry, BenchFile, Inputs, Loaded, VerdictFile
from cvae_bench.training.compare import summarize
from cvae_bench.training.records import ComparisonRow, RunResult

#: The benchmark group whose ms/step the block shows (one Adam step at batch 64).
STEP_GROUP = "train-step"
#: Fewer rounds than this give no order-statistic interval of the median at 95 % (`report.stats.median_ci`).
MIN_ROUNDS = 6
#: Fewer converged runs a side than this give no interval of a time-to-target ratio (`training.compare`).
MIN_RUNS = 3


@dataclass(frozen=True)
class Row:
    """One backend/mode: its figures as table cells ('—' where the inputs hold none).

    Attributes:
        label: 'torch:eager' ('[2] torch:eager' when several bench files are given).
        time_to_target: median seconds with its spread over runs; ttt_vs_fastest: ratio, interval and verdict.
        ms_per_step: median with its 95 % interval; step_vs_fastest: ratio, interval and verdict.
        convergence: consistent / deviant / unchecked.
        memory: peak RSS (MiB), None when no input measured it.
        weak: the row's verdict is withheld, unsure or deviant (drawn in the warning colour).
    """

    label: str
    time_to_target: str = "—"
    ttt_vs_fastest: str = "—"
    ms_per_step: str = "—"
    step_vs_fastest: str = "—"
    convergence: str = "unchecked"
    memory: str | None = None
    weak: bool = False


@dataclass(frozen=True)
class VerdictBlock:
    """What the first screen says: the rows, the noise floor, and the banners of a weak answer."""

    rows: list[Row]
    noise: list[str] = field(default_factory=list)
    banners: list[str] = field(default_factory=list)

    @property
    def has_memory(self) -> bool:
        """Whether any row has a memory figure (the column is drawn only then)."""
        return any(r.memory is not None for r in self.rows)


def _ratio_cell(ratio: float | None, low: float | None, high: float | None, word: str | None) -> str:
    if ratio is None:
        return "—"
    bounds = f"[{low:.2f}, {high:.2f}]" if low is not None and high is not None else "[?]"
    return f"{ratio:.2f}× {bounds} {word or 'unsure'}"


def _verdict_cell(v: VerdictFile) -> str:
    """The bench's own verdict; a withheld one says why in one word (BUSY, IDLE-WORK)."""
    if v.ratio is None:
        return f"no ratio: {v.verdict}"
    word = f"withheld ({v.withheld.split(':')[0]})" if v.withheld else v.verdict
    return _ratio_cell(v.ratio.estimate, v.ratio.low, v.ratio.high, word)


def _mib(value: object) -> str | None:
    return f"{value / 2**20:.0f} MiB" if isinstance(value, (int, float)) and value > 0 else None


def _peak_rss(entry: BenchEntry) -> str | None:
    memory = entry.extra_info.get("memory")
    return _mib(memory.get("peak_rss")) if isinstance(memory, dict) else None


def _run_peak(results: Sequence[RunResult]) -> str | None:
    """The largest peak RSS of the runs (result.json's `memory`, where a run measured it)."""
    peaks = []
    for r in results:
        memory = getattr(r, "memory", None)
        peak = memory.get("peak_rss") if isinstance(memory, dict) else getattr(memory, "peak_rss", None)
        if isinstance(peak, (int, float)) and peak > 0:
            peaks.append(peak)
    return _mib(max(peaks)) if peaks else None


def _convergence(results: Sequence[RunResult], row: ComparisonRow | None) -> str:
    words = {r.convergence.verdict for r in results if r.convergence is not None}
    if "deviant" in words or (row is not None and row.deviant):
        return "deviant"
    if "consistent" in words:
        return "consistent"
    return "unchecked"


def _ttt_cells(row: ComparisonRow) -> tuple[str, str]:
    if row.time_to_target_s is None:
        return f"not reached ({row.converged}/{row.runs})", "—"
    spread = row.time_to_target_spread_s
    ttt = f"{row.time_to_target_s:.1f} s"
    ttt += f" [{spread[0]:.1f}–{spread[1]:.1f}]" if spread and row.converged > 1 else ""
    ttt += f" ({row.converged}/{row.runs} reached)"
    if row.ratio_to_fastest is None:
        return ttt, "— (deviant: not ranked)" if row.deviant else "—"
    if row.verdict is None:  # the fastest has no verdict of its own
        return ttt, "1.00× fastest"
    low, high = row.ratio_ci if row.ratio_ci else (None, None)
    return ttt, _ratio_cell(row.ratio_to_fastest, low, high, row.verdict)


def _ttt_rows(inputs: Inputs) -> list[ComparisonRow]:
    """Time-to-target rows: of the runs given, else comparison.json's, else bench.json's."""
    results = [r for r in inputs.run_results() if r.outcome.target is not None]
    if results:
        return list(summarize(results))
    rows = [row for c in inputs.comparisons for row in c.record.rows]
    if rows:
        return rows
    return [
        row
        for b in inputs.benches
        if b.record.cvae_bench and b.record.cvae_bench.time_to_target
        for row in b.record.cvae_bench.time_to_target.rows
    ]


def _step_cells(benches: Sequence[Loaded]) -> dict[str, tuple[str, str, str | None, bool]]:
    """label → (ms/step cell, vs-fastest cell, peak RSS, weak) of every train-step entry but the twin's."""
    out: dict[str, tuple[str, str, str | None, bool]] = {}
    many = len(benches) > 1
    for i, loaded in enumerate(benches):
        bench: BenchFile = loaded.record
        summary = bench.cvae_bench
        verdicts = {v.name: v for v in summary.verdicts} if summary else {}
        for e in bench.group(STEP_GROUP):
            if is_twin(e):
                continue
            lo, hi, how = interval(e)
            ms = e.stats.median * 1e3
            step = f"{ms:.3f} ms [{lo * 1e3:.3f}, {hi * 1e3:.3f}]" + ("" if how.startswith("95") else " (IQR)")
            v = verdicts.get(e.name)
            if v is not None:
                cell, weak = _verdict_cell(v), v.withheld is not None or v.verdict in ("unsure", "withheld")
            elif verdicts:
                cell, weak = "1.00× fastest", False
            else:
                cell, weak = "— (no verdicts in this file)", True
            label = (f"[{i + 1}] " if many else "") + series_label(
                str(e.info("backend", "?")), str(e.info("mode", "?")), str(e.info("device", "cpu"))
            )
            out[label] = (step, cell, _peak_rss(e), weak)
    return out


def _noise_lines(benches: Sequence[Loaded]) -> tuple[list[str], list[str]]:
    """The A/A line of every bench (the twin labelled as the noise check), and banners for a failed or
    unchecked one."""
    lines, banners = [], []
    many = len(benches) > 1
    for i, loaded in enumerate(benches):
        summary = loaded.record.cvae_bench
        noise: NoiseCheck | None = summary.noise if summary else None
        where = f"[{i + 1}] " if many else ""
        if noise is None:
            lines.append(f"{where}No A/A noise check in this bench (no twin was measured): the noise floor is unknown.")
            continue
        lines.append(where + "Noise check (A/A) " + noise.line().removeprefix("A/A self-check "))
        if noise.passed is False:
            banners.append(
                f"{where}A/A check FAILED: the same backend in two workers differed "
                f"({noise.ratio.cell('.3f')}); something other than the backends moves the figures."
            )
        elif noise.passed is None:
            banners.append(f"{where}A/A check not made: too few rounds for an interval.")
    return lines, banners


def _bench_banners(benches: Sequence[Loaded]) -> list[str]:
    out = []
    many = len(benches) > 1
    for i, loaded in enumerate(benches):
        bench: BenchFile = loaded.record
        summary = bench.cvae_bench
        where = f"[{i + 1}] " if many else ""
        if summary is None:
            out.append(f"{where}{loaded.path.name} is a plain pytest-benchmark file: no verdicts, no noise check.")
            continue
        if summary.rounds is not None and summary.rounds.busy:
            out.append(f"{where}BUSY: the machine never got quiet enough; no verdict (timings kept for the record).")
        elif summary.options.get("under_load"):
            out.append(f"{where}Measured under load (--under-load): verdicts given although the machine was busy.")
        withheld = [v for v in summary.verdicts if v.withheld]
        if withheld and not (summary.rounds is not None and summary.rounds.busy):
            reasons = sorted({v.withheld.split(":")[0] for v in withheld if v.withheld})
            out.append(f"{where}{len(withheld)} verdict(s) withheld ({', '.join(reasons)}).")
        if summary.rounds is not None and summary.rounds.epochs_run < 2:
            out.append(
                f"{where}One epoch of worker processes: the intervals do not include the variation between workers."
            )
        few = [e.name for e in bench.group(STEP_GROUP) if e.stats.rounds < MIN_ROUNDS]
        if few:
            out.append(f"{where}Too few rounds (< {MIN_ROUNDS}) for a 95 % interval: {', '.join(few)} (IQR shown).")
    return out


def build_block(inputs: Inputs) -> VerdictBlock:
    """The verdict block of a report: every backend/mode of the inputs, in the order of its time to target
    (else its ms/step), with the bench's and the comparison's own verdicts."""
    results = inputs.run_results()
    ttt = _ttt_rows(inputs)
    steps = _step_cells(inputs.benches)
    rows: list[Row] = []
    banners: list[str] = []
    seen: set[str] = set()
    for t in ttt:
        label = series_label(t.backend, t.mode, t.device)
        mine = [r for r in results if series_label(r.backend, r.mode, r.device) == label]
        step = steps.get(label)
        ttt_cell, ttt_vs = _ttt_cells(t)
        if step is None and t.ms_per_step_median is not None:
            step = (f"{t.ms_per_step_median:.3f} ms (median of runs)", "—", None, False)
        convergence = _convergence(mine, t)
        memory = (step[2] if step else None) or _run_peak(mine)
        weak = convergence == "deviant" or t.verdict == "unsure" or bool(step and step[3])
        step_cell, step_vs = (step[0], step[1]) if step else ("—", "—")
        rows.append(Row(label, ttt_cell, ttt_vs, step_cell, step_vs, convergence, memory, weak))
        seen.add(label)
    for label, (step_cell, vs, memory, weak) in sorted(steps.items()):
        if label not in seen:
            rows.append(Row(label, ms_per_step=step_cell, step_vs_fastest=vs, memory=memory, weak=weak))
    noise, noise_banners = _noise_lines(inputs.benches)
    if not inputs.benches and rows:
        noise.append(
            "No A/A noise check: runs hold none (cvae-bench bench measures one); the time-to-target intervals "
            "are over the repeats."
        )
    banners += noise_banners + _bench_banners(inputs.benches)
    deviant = sorted(
        {series_label(r.backend, r.mode, r.device) for r in results if r.convergence and r.convergence.deviant}
    )
    deviant += [series_label(t.backend, t.mode, t.device) for t in ttt if t.deviant and not results]
    if deviant:
        banners.append(f"Deviant runs (left the reference band; never ranked): {', '.join(deviant)}.")
    busy = [series_label(t.backend, t.mode, t.device) for t in ttt if t.busy_runs]
    if busy:
        banners.append(f"Measured under load: the sentinel saw the machine busy during runs of {', '.join(busy)}.")
    few = [series_label(t.backend, t.mode, t.device) for t in ttt if 0 < t.converged < MIN_RUNS]
    if ttt and few:
        banners.append(
            f"Too few runs (< {MIN_RUNS} converged) for an interval of the time-to-target ratio: {', '.join(few)}."
        )
    unsure = [r.label for r in rows if "unsure" in (r.ttt_vs_fastest + r.step_vs_fastest)]
    if unsure:
        banners.append(f"Unsure: the interval includes 1 and reaches beyond the tie band for {', '.join(unsure)}.")
    return VerdictBlock(rows, noise, banners)
