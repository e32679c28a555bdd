"""Matched runs across backends: aggregate repeats, rank by time-to-target, write JSON and Markdown."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cvae_bench.runtime.files import write_json, write_text


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _spread(values: Sequence[float]) -> list[float] | None:
    return [min(values), max(values)] if values else None


def summarize(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (backend, mode): medians over repeats, converged counts, ratio to the fastest.

    Runs that did not reach the target are counted in `runs` and `not_converged`, never dropped; the
    time and step medians are over the converged runs only (None when there are none).
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["backend"], r["mode"], r["device"]), []).append(r)
    rows = []
    for (backend, mode, device), runs in groups.items():
        done = [r for r in runs if r["reached"]]  # None (fixed epochs, no target) counts as not reached
        times = [r["time_to_target_s"] for r in done]
        rows.append(
            {
                "backend": backend,
                "mode": mode,
                "device": device,
                "runs": len(runs),
                "converged": len(done),
                "not_converged": len(runs) - len(done),
                "seeds": [r["seed"] for r in runs],
                "time_to_target_s": _median(times),
                "time_to_target_spread_s": _spread(times),
                "steps_to_target": _median([r["steps_to_target"] for r in done]),
                "steps_to_target_spread": _spread([r["steps_to_target"] for r in done]),
                "ms_per_step_median": _median([r["ms_per_step_median"] for r in runs if r["ms_per_step_median"]]),
                "first_step_s": _median([r["first_step_s"] for r in runs]),
                "final_val_elbo": _median([r["final"]["val_elbo"] for r in runs]),
                "target": runs[0]["target"],
            }
        )
    fastest = min((r["time_to_target_s"] for r in rows if r["time_to_target_s"] is not None), default=None)
    for row in rows:
        t = row["time_to_target_s"]
        row["ratio_to_fastest"] = t / fastest if t is not None and fastest else None
    rows.sort(key=lambda r: (r["time_to_target_s"] is None, r["time_to_target_s"] or 0.0))
    return rows


def _fmt(value: Any, spec: str = ".2f", none: str = "—") -> str:
    return none if value is None else format(value, spec)


def table_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Cells of the comparison table (shared by the terminal and the Markdown output)."""
    out = []
    for r in rows:
        spread = r["time_to_target_spread_s"]
        if r["target"] is None:
            reached = f"n/a ({r['runs']} fixed-epoch run{'s' if r['runs'] > 1 else ''})"
        else:
            reached = f"{r['converged']}/{r['runs']}" + (" (not converged)" if r["not_converged"] else "")
        ttt = _fmt(r["time_to_target_s"], ".1f")
        if spread and r["converged"] > 1:
            ttt += f" ({spread[0]:.1f}–{spread[1]:.1f})"
        out.append(
            [
                r["backend"],
                r["mode"],
                reached,
                ttt,
                _fmt(r["steps_to_target"], ".0f"),
                _fmt(r["ms_per_step_median"]),
                _fmt(r["final_val_elbo"], ".3f"),
                _fmt(r["ratio_to_fastest"], ".2f") + ("×" if r["ratio_to_fastest"] is not None else ""),
            ]
        )
    return out


HEADERS = [
    "backend",
    "mode",
    "reached",
    "time-to-target s (spread)",
    "steps-to-target",
    "ms/step (median)",
    "final val −ELBO",
    "vs fastest",
]


#: The tutorial's val_loss after epochs 1…10 (DESIGN.md), for the fidelity table.
TUTORIAL_VAL_LOSS = (243.71, 239.35, 237.24, 235.97, 235.24, 234.93, 234.66, 234.29, 234.04, 233.74)
FIDELITY_EPOCHS = (1, 5, 10)


def fidelity_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Val −ELBO after epochs 1, 5 and 10 of each run, under the tutorial's own row."""
    rows = [["tutorial (Keras, val_loss)", "—", *(f"{TUTORIAL_VAL_LOSS[e - 1]:.2f}" for e in FIDELITY_EPOCHS)]]
    for r in results:
        at = {round(h["epoch"], 6): h["val_elbo"] for h in r["history"]}
        rows.append(
            [f"{r['backend']} ({r['mode']})", str(r["seed"]), *(_fmt(at.get(float(e))) for e in FIDELITY_EPOCHS)]
        )
    return rows


def to_markdown(rows: Sequence[dict[str, Any]], meta: dict[str, Any], results: Sequence[dict[str, Any]] = ()) -> str:
    """The comparison as a Markdown table with the command that produced it."""
    lines = [
        f"# cvae-bench comparison: target val −ELBO ≤ {meta['target']}",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['hardware'].get('cpu', '?')} ({meta['hardware'].get('cpu_count', '?')} cores)  ",
        "Time-to-target counts training steps from the second on (build, first step and evaluations apart).",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(rows)]
    if any(h["epoch"] >= 1 for r in results for h in r["history"]):
        lines += [
            "",
            "## Fidelity: val −ELBO after epochs " + ", ".join(map(str, FIDELITY_EPOCHS)),
            "",
            "| run | seed | " + " | ".join(f"epoch {e}" for e in FIDELITY_EPOCHS) + " |",
            "|---|---|" + "---|" * len(FIDELITY_EPOCHS),
        ]
        lines += ["| " + " | ".join(cells) + " |" for cells in fidelity_rows(results)]
    return "\n".join(lines) + "\n"


def write_comparison(folder: Path, results: Sequence[dict[str, Any]], command: str) -> list[dict[str, Any]]:
    """Write comparison.json and comparison.md into `folder`; returns the summary rows."""
    rows = summarize(results)
    meta = {"command": command, "target": results[0]["target"], "hardware": results[0]["hardware"]}
    write_json(folder / "comparison.json", {**meta, "rows": rows, "runs": [_brief(r) for r in results]})
    write_text(folder / "comparison.md", to_markdown(rows, meta, results))
    return rows


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "backend",
        "mode",
        "device",
        "seed",
        "reached",
        "steps_to_target",
        "time_to_target_s",
        "first_step_s",
        "ms_per_step_median",
        "final",
        "versions",
    )
    return {k: r[k] for k in keys}
