"""Matched runs across backends: aggregate repeats, rank by time-to-target, write JSON and Markdown."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.core.records import RecordError
from cvae_bench.core.stats import DEFAULT_TIE, unpaired_ratio, verdict
from cvae_bench.core.tables import markdown_table
from cvae_bench.runtime.files import read_json, write_json, write_text
from cvae_bench.training.convergence import TUTORIAL_VAL_LOSS
from cvae_bench.training.records import ComparisonRow, RunResult

FIDELITY_EPOCHS = (1, 5, 10)


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _spread(values: Sequence[float]) -> list[float] | None:
    return [min(values), max(values)] if values else None


def _median_int(values: Sequence[int]) -> int | None:
    return int(statistics.median(values)) if values else None


def _deviant(r: RunResult) -> bool:
    return r.convergence is not None and r.convergence.deviant


def _key(row: ComparisonRow) -> tuple[str, str, str]:
    return row.backend, row.mode, row.device


def _ttt(runs: Sequence[RunResult]) -> list[float]:
    return [r.outcome.time_to_target_s for r in runs if r.outcome.reached and r.outcome.time_to_target_s]


def _busy(r: RunResult) -> bool:
    return r.load is not None and r.load.busy


def summarize(results: Sequence[RunResult], tie: float = DEFAULT_TIE) -> list[ComparisonRow]:
    """One row per (backend, mode, device): medians over repeats, every run counted, ratio to the fastest.

    Runs that did not reach the target, diverged or trained unlike the recipe (deviant) are counted,
    never dropped; time and step medians are over the converged runs only (None when there are none).
    A backend/mode with any deviant run gets no ratio and ranks after the others: it is shown, never
    silently ranked as a win. Each ratio gets a 95 % interval over the repeats (a bootstrap of the two
    medians; none below 3 converged runs a side) and a verdict with the tie band ±`tie`.
    """
    groups: dict[tuple[str, str, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.backend, r.mode, r.device), []).append(r)
    rows = []
    for (backend, mode, device), runs in groups.items():
        done = [r for r in runs if r.outcome.reached]  # None (fixed epochs, no target) counts as not reached
        times = [r.outcome.time_to_target_s for r in done if r.outcome.time_to_target_s is not None]
        steps = [float(r.outcome.steps_to_target) for r in done if r.outcome.steps_to_target is not None]
        ms = [r.outcome.ms_per_step_median for r in runs if r.outcome.ms_per_step_median]
        finals = [r.outcome.final.val_elbo for r in runs if r.outcome.final is not None]
        rows.append(
            ComparisonRow(
                backend=backend,
                mode=mode,
                device=device,
                runs=len(runs),
                converged=len(done),
                not_converged=len(runs) - len(done),
                diverged=sum(r.outcome.status == "diverged" for r in runs),
                deviant=sum(_deviant(r) for r in runs),
                seeds=[r.seed for r in runs],
                time_to_target_s=_median(times),
                time_to_target_spread_s=_spread(times),
                steps_to_target=_median(steps),
                steps_to_target_spread=_spread(steps),
                ms_per_step_median=_median([m for m in ms if m is not None]),
                first_step_s=_median([r.outcome.first_step_s for r in runs]),
                final_val_elbo=_median(finals),
                target=runs[0].outcome.target,
                peak_rss=_median_int([r.memory.peak_rss for r in runs if r.memory is not None]),
                peak_rss_spread=_spread([r.memory.peak_rss for r in runs if r.memory is not None]),
            )
        )
    ranked = [r for r in rows if r.time_to_target_s is not None and not r.deviant]
    fastest = min((r.time_to_target_s for r in ranked if r.time_to_target_s is not None), default=None)
    best = next((r for r in ranked if r.time_to_target_s == fastest), None)
    out = []
    for row in rows:
        t = row.time_to_target_s
        ratio = t / fastest if row in ranked and t is not None and fastest else None
        extra: dict[str, Any] = {"ratio_to_fastest": ratio, "busy_runs": sum(_busy(r) for r in groups[_key(row)])}
        if ratio is not None and best is not None and row is not best:
            # Repeats are separate runs (seeds), not paired rounds: the ratio of medians, bootstrapped.
            ci = unpaired_ratio(_ttt(groups[_key(best)]), _ttt(groups[_key(row)]))
            if ci.low is not None and ci.high is not None:  # below 3 runs a side: no interval, no verdict
                extra["ratio_ci"] = [ci.low, ci.high]
                extra["verdict"] = verdict(ci, tie)
        out.append(ComparisonRow(**{**row.__dict__, **extra}))
    out.sort(key=lambda r: (r.deviant > 0, r.time_to_target_s is None, r.time_to_target_s or 0.0))
    return out


def _fmt(value: Any, spec: str = ".2f", none: str = "—") -> str:
    return none if value is None else format(value, spec)


def table_rows(rows: Sequence[ComparisonRow]) -> list[list[str]]:
    """Cells of the comparison table (shared by the terminal and the Markdown output)."""
    out = []
    for r in rows:
        spread = r.time_to_target_spread_s
        if r.target is None:
            reached = f"n/a ({r.runs} fixed-epoch run{'s' if r.runs > 1 else ''})"
        else:
            reached = f"{r.converged}/{r.runs}" + (" (not converged)" if r.not_converged else "")
        if r.diverged:
            reached += f" ({r.diverged} diverged)"
        ttt = _fmt(r.time_to_target_s, ".1f")
        if spread and r.converged > 1:
            ttt += f" ({spread[0]:.1f}–{spread[1]:.1f})"
        ratio = _fmt(r.ratio_to_fastest, ".2f") + ("×" if r.ratio_to_fastest is not None else "")
        if r.ratio_ci is not None:
            ratio += f" [{r.ratio_ci[0]:.2f}, {r.ratio_ci[1]:.2f}]"
        if r.verdict is not None:
            ratio += f" {r.verdict}"
        if r.busy_runs:
            reached += f" (BUSY machine in {r.busy_runs})"
        out.append(
            [
                r.backend,
                r.mode,
                reached,
                f"DEVIANT {r.deviant}/{r.runs}" if r.deviant else "consistent",
                ttt,
                _fmt(r.steps_to_target, ".0f"),
                _fmt(r.ms_per_step_median),
                _fmt(r.final_val_elbo, ".3f"),
                ratio if not r.deviant else "not ranked",
            ]
        )
    return out


HEADERS = [
    "backend",
    "mode",
    "reached",
    "convergence",
    "time-to-target s (spread)",
    "steps-to-target",
    "ms/step (median)",
    "final val −ELBO",
    "vs fastest",
]


def fidelity_rows(results: Sequence[RunResult]) -> list[list[str]]:
    """Val −ELBO after epochs 1, 5 and 10 of each run, under the tutorial's own row."""
    rows = [["tutorial (Keras, val_loss)", "—", *(f"{TUTORIAL_VAL_LOSS[e - 1]:.2f}" for e in FIDELITY_EPOCHS)]]
    for r in results:
        at = {round(h.epoch, 6): h.val_elbo for h in r.outcome.history}
        rows.append([f"{r.backend} ({r.mode})", str(r.seed), *(_fmt(at.get(float(e))) for e in FIDELITY_EPOCHS)])
    return rows


def to_markdown(rows: Sequence[ComparisonRow], meta: dict[str, Any], results: Sequence[RunResult] = ()) -> str:
    """The comparison as a Markdown table with the command that produced it."""
    target = "none (fixed epochs)" if meta["target"] is None else f"val −ELBO ≤ {meta['target']}"
    lines = [
        f"# cvae-bench comparison: target {target}",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['hardware'].get('cpu', '?')} ({meta['hardware'].get('cpu_count', '?')} cores)  ",
        "Time-to-target counts training steps from the second on (build, first step and evaluations apart).",
        "A deviant run left the reference recipe's convergence band (or diverged): shown, never ranked.",
        "",
        *markdown_table(HEADERS, table_rows(rows)),
    ]
    deviant = [r for r in results if r.convergence is not None and r.convergence.deviant]
    if deviant:
        lines += ["", "## Deviant runs", ""]
        lines += [f"- {r.label} seed {r.seed}: {'; '.join(r.convergence.reasons)}" for r in deviant if r.convergence]
    if any(h.epoch >= 1 for r in results for h in r.outcome.history):
        lines += [
            "",
            "## Fidelity: val −ELBO after epochs " + ", ".join(map(str, FIDELITY_EPOCHS)),
            "",
            *markdown_table(["run", "seed", *(f"epoch {e}" for e in FIDELITY_EPOCHS)], fidelity_rows(results)),
        ]
    return "\n".join(lines) + "\n"


def write_comparison(folder: Path, results: Sequence[RunResult], command: str) -> list[ComparisonRow]:
    """Write comparison.json and comparison.md into `folder`; returns the summary rows."""
    rows = summarize(results)
    meta = {"command": command, "target": results[0].outcome.target, "hardware": results[0].hardware}
    write_json(
        folder / "comparison.json",
        {**meta, "rows": [r.to_json() for r in rows], "runs": [_brief(r) for r in results]},
    )
    write_text(folder / "comparison.md", to_markdown(rows, meta, results))
    return rows


def _brief(r: RunResult) -> dict[str, Any]:
    o = r.outcome
    return {
        "backend": r.backend,
        "mode": r.mode,
        "device": r.device,
        "seed": r.seed,
        "status": o.status,
        "reached": o.reached,
        "steps_to_target": o.steps_to_target,
        "time_to_target_s": o.time_to_target_s,
        "first_step_s": o.first_step_s,
        "ms_per_step_median": o.ms_per_step_median,
        "final": o.final.to_json() if o.final else None,
        "convergence": r.convergence.to_json() if r.convergence else None,
        "load": r.load.to_json() if r.load else None,
        "memory": r.memory.to_json() if r.memory else None,
        "versions": r.versions,
    }


def load_comparison_rows(path: str | Path) -> list[ComparisonRow]:
    """Comparison rows from `cvae-bench run` output: a comparison.json, a result.json, or a folder of them.

    Raises:
        CvaeBenchError: nothing readable at `path`.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "comparison.json").is_file():
            p = p / "comparison.json"
        else:
            results = [_parse(RunResult, _read_json(f), f) for f in sorted(p.rglob("result.json"))]
            if not results:
                raise CvaeBenchError(f"no comparison.json or result.json under {p}")
            return summarize(results)
    data = _read_json(p)
    if isinstance(data, dict) and "rows" in data:
        rows = data["rows"] if isinstance(data["rows"], list) else [data["rows"]]
        return [
            _parse(ComparisonRow, {"diverged": 0, "deviant": 0, **row} if isinstance(row, dict) else row, p)
            for row in rows
        ]
    if isinstance(data, dict) and "reached" in data:
        return summarize([_parse(RunResult, data, p)])
    raise CvaeBenchError(f"{p} is neither a comparison.json nor a result.json of cvae-bench run")


def _parse(cls: Any, doc: Any, path: Path) -> Any:
    """`cls.from_json(doc)`, its error naming the file."""
    try:
        return cls.from_json(doc)
    except RecordError as exc:
        raise CvaeBenchError(f"{path}: {exc}") from exc


def _read_json(path: Path) -> Any:
    return read_json(path)
