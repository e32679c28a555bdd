"""Aggregating matched runs: medians, spreads, non-converged runs counted, ratio to the fastest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cvae_bench.training.compare import summarize, write_comparison


def _result(backend: str, seed: int, ttt: float | None, steps: int | None, ms: float = 3.0) -> dict[str, Any]:
    reached = ttt is not None
    history = [{"epoch": float(e), "step": 100 * e, "val_elbo": 250.0 - e} for e in range(1, 11)]
    return {
        "backend": backend,
        "mode": "eager",
        "device": "cpu",
        "seed": seed,
        "target": 235.0,
        "reached": reached,
        "time_to_target_s": ttt,
        "steps_to_target": steps,
        "first_step_s": 0.1,
        "ms_per_step_median": ms,
        "final": {"val_elbo": 234.9 if reached else 236.0},
        "history": history,
        "versions": {},
        "hardware": {"cpu": "test cpu", "cpu_count": 2},
    }


RESULTS = [
    _result("a", 0, 10.0, 1000),
    _result("a", 1, 14.0, 1400),
    _result("a", 2, 12.0, 1200),
    _result("b", 0, 30.0, 900, ms=9.0),
    _result("b", 1, None, None, ms=9.0),
    _result("b", 2, 20.0, 800, ms=9.0),
]


def test_medians_spreads_and_ratios() -> None:
    rows = {r["backend"]: r for r in summarize(RESULTS)}
    assert rows["a"]["time_to_target_s"] == 12.0
    assert rows["a"]["time_to_target_spread_s"] == [10.0, 14.0]
    assert rows["a"]["steps_to_target"] == 1200
    assert rows["a"]["ratio_to_fastest"] == 1.0
    assert rows["b"]["time_to_target_s"] == 25.0  # median of the converged runs
    assert rows["b"]["ratio_to_fastest"] == 25.0 / 12.0
    assert [x["backend"] for x in summarize(RESULTS)] == ["a", "b"]


def test_non_converged_runs_are_counted_not_dropped() -> None:
    rows = {r["backend"]: r for r in summarize(RESULTS)}
    assert (rows["b"]["runs"], rows["b"]["converged"], rows["b"]["not_converged"]) == (3, 2, 1)
    assert rows["b"]["seeds"] == [0, 1, 2]


def test_a_backend_that_never_converges_ranks_last_without_ratio() -> None:
    rows = summarize([_result("c", 0, None, None), *RESULTS[:1]])
    assert rows[-1]["backend"] == "c" and rows[-1]["time_to_target_s"] is None
    assert rows[-1]["ratio_to_fastest"] is None


def test_written_files(tmp_path: Path) -> None:
    write_comparison(tmp_path, RESULTS, "cvae-bench run --backend a,b --repeats 3")
    doc = json.loads((tmp_path / "comparison.json").read_text())
    assert len(doc["runs"]) == 6 and len(doc["rows"]) == 2
    md = (tmp_path / "comparison.md").read_text()
    assert "`cvae-bench run --backend a,b --repeats 3`" in md
    assert "| b | eager | 2/3 (not converged) | 25.0 (20.0–30.0) | 850 | 9.00 | 234.900 | 2.08× |" in md
    assert "| tutorial (Keras, val_loss) | — | 243.71 | 235.24 | 233.74 |" in md
    assert "| a (eager) | 0 | 249.00 | 245.00 | 240.00 |" in md


def test_fixed_epoch_runs_are_not_called_unconverged(tmp_path: Path) -> None:
    fixed = [{**_result("a", 0, None, None), "target": None, "reached": None}]
    write_comparison(tmp_path, fixed, "cvae-bench run --backend a --epochs 10")
    md = (tmp_path / "comparison.md").read_text()
    assert "n/a (1 fixed-epoch run)" in md and "not converged" not in md
