"""One typed event channel: what a bench or a training run reports reaches its reporter as records, never dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cvae_bench.backends import registry
from cvae_bench.backends.selection import parse_selection
from cvae_bench.bench.groups.sample_native import SampleNative
from cvae_bench.bench.options import BenchOptions
from cvae_bench.core.events import (
    Collect,
    Evaluated,
    Event,
    Message,
    Stage,
    TrainProgress,
    TrainStart,
)
from cvae_bench.training.loop import TrainConfig
from cvae_bench.training.matched import MatchedRuns, run_matched
from cvae_bench.training.run import RunOptions

pytestmark = pytest.mark.skipif(not registry.get("numpy").available, reason="the numpy backend is not installed")


def test_a_bench_engine_run_reports_records_only(mnist: tuple[Any, ...]) -> None:
    """The rounds engine's stages (parent side) and its workers' events (read at the edge) are all records."""
    from cvae_bench.bench.runner import measure_backends

    options = BenchOptions(batch_sizes=(1,), epochs=1, rounds=2, min_time=0.0, self_check=False, under_load=True)
    reporter = Collect()
    selections = parse_selection("numpy", tunable=True)
    runs, _ = measure_backends(selections, [SampleNative()], options, None, reporter)
    assert [r.identity.backend for r in runs] == ["numpy"]
    assert reporter.events and all(isinstance(e, Event) for e in reporter.events)
    assert Stage("epoch 1: starting 1 workers") in reporter.events


def test_a_matched_training_run_reports_records_only(tmp_path: Path, mnist: tuple[Any, ...]) -> None:
    """Each run's events go to the reporter of that run (`run(label)`), its summary line to the reporter: records,
    in the order they happened."""
    (numpy,) = parse_selection("numpy")
    options = RunOptions(
        config=TrainConfig(epochs=1, recipe_check=False, audit=False), train_subset=640, val_subset=200
    )
    reporter = Collect()
    outcome = run_matched(MatchedRuns((numpy,), options), tmp_path / "run", reporter)
    assert outcome.single and len(outcome.results) == 1
    events = reporter.events
    assert all(isinstance(e, Event) for e in events)
    kinds = [type(e) for e in events]
    assert kinds.index(TrainStart) < kinds.index(TrainProgress) < kinds.index(Evaluated)
    assert Stage("data load") in events
    summary = events[-1]
    assert isinstance(summary, Message) and summary.level == "info" and str(tmp_path / "run") in summary.text
