"""Aggregating matched runs: medians, spreads, non-converged, diverged and deviant runs counted, ratios."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from cvae_bench.training.compare import load_comparison_rows, summarize, write_comparison
from cvae_bench.training.records import (
    ConvergenceVerdict,
    Divergence,
    EvalPoint,
    FinalEval,
    RunResult,
    TrainOutcome,
)


def _result(
    backend: str, seed: int, ttt: float | None, steps: int | None, ms: float = 3.0, status: str | None = None
) -> RunResult:
    reached = ttt is not None
    history = [EvalPoint(step=100 * e, epoch=float(e), val_elbo=250.0 - e, kl=5.0, nll=245.0 - e) for e in range(1, 11)]
    final = 234.9 if reached else 236.0
    outcome = TrainOutcome(
        status=status or ("reached" if reached else "not-reached"),
        target=235.0,
        reached=reached,
        steps_to_target=steps,
        epochs_to_target=None,
        time_to_target_s=ttt,
        wall_time_to_target_s=ttt,
        first_step_s=0.1,
        data_load_s=0.0,
        ms_per_step_median=ms,
        steps=1000,
        epochs=10.0,
        steps_per_epoch=100,
        train_time_s=10.0,
        eval_time_s=1.0,
        final=FinalEval(step=1000, epoch=10.0, val_elbo=final, kl=5.0, nll=final - 5.0),
        history=history,
    )
    return RunResult(
        cvae_bench="0",
        started="2026-01-01T00:00:00+00:00",
        backend=backend,
        origin="builtin",
        mode="eager",
        device="cpu",
        versions={},
        hardware={"cpu": "test cpu", "cpu_count": 2},
        seed=seed,
        config={},
        spec={},
        build_s=0.5,
        outcome=outcome,
        convergence=ConvergenceVerdict("consistent"),
    )


RESULTS = [
    _result("a", 0, 10.0, 1000),
    _result("a", 1, 14.0, 1400),
    _result("a", 2, 12.0, 1200),
    _result("b", 0, 30.0, 900, ms=9.0),
    _result("b", 1, None, None, ms=9.0),
    _result("b", 2, 20.0, 800, ms=9.0),
]


def test_medians_spreads_and_ratios() -> None:
    rows = {r.backend: r for r in summarize(RESULTS)}
    assert rows["a"].time_to_target_s == 12.0
    assert rows["a"].time_to_target_spread_s == [10.0, 14.0]
    assert rows["a"].steps_to_target == 1200
    assert rows["a"].ratio_to_fastest == 1.0
    assert rows["b"].time_to_target_s == 25.0  # median of the converged runs
    assert rows["b"].ratio_to_fastest == 25.0 / 12.0
    assert [x.backend for x in summarize(RESULTS)] == ["a", "b"]


def test_non_converged_runs_are_counted_not_dropped() -> None:
    rows = {r.backend: r for r in summarize(RESULTS)}
    assert (rows["b"].runs, rows["b"].converged, rows["b"].not_converged) == (3, 2, 1)
    assert rows["b"].seeds == [0, 1, 2]


def test_a_backend_that_never_converges_ranks_last_without_ratio() -> None:
    rows = summarize([_result("c", 0, None, None), *RESULTS[:1]])
    assert rows[-1].backend == "c" and rows[-1].time_to_target_s is None
    assert rows[-1].ratio_to_fastest is None


def test_a_deviant_backend_is_shown_but_never_ranked_as_the_winner(tmp_path: Path) -> None:
    cheat = replace(
        _result("cheat", 0, 1.0, 100),
        convergence=ConvergenceVerdict("deviant", ["epoch 1: val -ELBO 230.00 is below the reference band"]),
    )
    rows = summarize([cheat, *RESULTS])
    assert [r.backend for r in rows] == ["a", "b", "cheat"]
    assert rows[0].ratio_to_fastest == 1.0  # a, not the deviant, is the fastest
    assert rows[-1].deviant == 1 and rows[-1].ratio_to_fastest is None
    assert rows[-1].time_to_target_s == 1.0  # its time is shown beside the verdict
    write_comparison(tmp_path, [cheat, *RESULTS], "cmd")
    md = (tmp_path / "comparison.md").read_text()
    assert "| cheat | eager | 1/1 | DEVIANT 1/1 | 1.0 |" in md and "not ranked" in md
    assert "## Deviant runs" in md and "below the reference band" in md


def test_a_diverged_run_counts_as_not_converged() -> None:
    outcome = replace(
        _result("d", 0, None, None).outcome,
        status="diverged",
        divergence=Divergence(step=32, what="training loss", value="nan"),
    )
    (row,) = summarize([replace(_result("d", 0, None, None), outcome=outcome)])
    assert (row.runs, row.converged, row.not_converged, row.diverged) == (1, 0, 1, 1)


def test_written_files_read_back_as_records(tmp_path: Path) -> None:
    write_comparison(tmp_path, RESULTS, "cvae-bench run --backend a,b --repeats 3")
    doc = json.loads((tmp_path / "comparison.json").read_text())
    assert len(doc["runs"]) == 6 and len(doc["rows"]) == 2
    md = (tmp_path / "comparison.md").read_text()
    assert "`cvae-bench run --backend a,b --repeats 3`" in md
    assert "| b | eager | 2/3 (not converged) | consistent | 25.0 (20.0–30.0) | 850 | 9.00 | 234.900 | 2.08× |" in md
    assert "| tutorial (Keras, val_loss) | — | 243.71 | 235.24 | 233.74 |" in md
    assert "| a (eager) | 0 | 249.00 | 245.00 | 240.00 |" in md
    assert load_comparison_rows(tmp_path) == summarize(RESULTS)


def test_result_json_round_trips_and_stays_flat(tmp_path: Path) -> None:
    doc = RESULTS[0].to_json()
    assert doc["reached"] is True and doc["steps_to_target"] == 1000 and "outcome" not in doc
    assert RunResult.from_json(json.loads(json.dumps(doc, allow_nan=False))) == RESULTS[0]
    legacy = {k: v for k, v in doc.items() if k not in ("status", "convergence")}
    assert RunResult.from_json(legacy).outcome.status == "reached"


def test_fixed_epoch_runs_are_not_called_unconverged(tmp_path: Path) -> None:
    r = _result("a", 0, None, None)
    fixed = [replace(r, outcome=replace(r.outcome, target=None, reached=None, status="fixed-epochs"))]
    write_comparison(tmp_path, fixed, "cvae-bench run --backend a --epochs 10")
    md = (tmp_path / "comparison.md").read_text()
    assert "n/a (1 fixed-epoch run)" in md and "not converged" not in md
