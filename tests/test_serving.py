"""The serving wing's load test: statistics on synthetic data, the scheduler's queue model, the QPS search on
a synthetic system, and one tiny end-to-end run per load generator (no timing is asserted)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cvae_bench.core.errors import CvaeBenchError, UsageError
from cvae_bench.core.events import Collect
from cvae_bench.serving import stats
from cvae_bench.serving.loadgen import LoadgenScheduler, import_loadgen, read_detail
from cvae_bench.serving.loadtest import parse_threadings, pick_scheduler
from cvae_bench.serving.options import LoadtestCommand
from cvae_bench.serving.records import LoadtestReport, Threading
from cvae_bench.serving.report import render_markdown
from cvae_bench.serving.scheduler import BuiltinScheduler, WorkerPool, poisson_arrivals, queue_latencies
from cvae_bench.serving.search import find_max_qps


# -- statistics ---------------------------------------------------------------------------------------------
def test_percentiles_are_loadgen_order_statistics() -> None:
    lat = np.arange(1, 1001) / 1e6  # 1 … 1000 µs
    s = stats.summarize(lat)
    assert s.queries == 1000 and s.min_s == 1e-6 and s.max_s == 1e-3
    assert s.at(50.0).seconds == pytest.approx(500e-6)
    assert s.at(99.0).seconds == pytest.approx(990e-6)
    assert s.at(99.9).seconds == pytest.approx(999e-6)
    assert s.at(99.0).supported and not s.at(99.9).supported
    assert stats.queries_needed(99.0) == 1000 and stats.queries_needed(99.9) == 10_000
    assert sum(s.histogram.counts) == 1000 and len(s.histogram.edges_s) == len(s.histogram.counts) + 1


def test_p99_interval_covers_the_true_quantile() -> None:
    """Over 200 samples of 2,000 exponential latencies the 95 % interval holds the true p99 about 95 % of the time."""
    true = -math.log(0.01)  # p99 of Exp(1)
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(200):
        p = stats.summarize(rng.exponential(1.0, 2000)).at(99.0)
        assert p.ci_low_s is not None and p.ci_high_s is not None and p.ci_low_s <= p.seconds <= p.ci_high_s
        hits += p.ci_low_s <= true <= p.ci_high_s
    assert 0.88 <= hits / 200 <= 0.995


def test_small_samples_leave_the_tail_unbounded() -> None:
    p = stats.summarize(np.linspace(1e-4, 2e-4, 50)).at(99.0)
    assert p.ci_high_s is None and not p.supported
    with pytest.raises(ValueError, match="at least one"):
        stats.summarize([])
    with pytest.raises(ValueError, match="finite"):
        stats.summarize([1e-3, float("nan")])


# -- the scheduler and the search ---------------------------------------------------------------------------
def test_queue_model_by_hand() -> None:
    # Two servers; arrivals 0, 0, 0, 1; service 2 each: the third waits for the first free server at 2.
    assert queue_latencies([0, 0, 0, 1], [2, 2, 2, 2], servers=2).tolist() == [2, 2, 4, 3]
    assert queue_latencies([0, 5], [1, 1], servers=1).tolist() == [1, 1]
    with pytest.raises(ValueError):
        queue_latencies([0], [1, 2], servers=1)


def test_poisson_arrivals_have_the_rate() -> None:
    a = poisson_arrivals(1000.0, 20_000, seed=0)
    assert np.all(np.diff(a) > 0)
    assert 20_000 / a[-1] == pytest.approx(1000.0, rel=0.03)


def _mm1_p99(qps: float, service_s: float = 1e-4, n: int = 4000) -> float:
    """The p99 of a simulated single-server queue with exponential service of mean `service_s`."""
    rng = np.random.default_rng(1)
    lat = queue_latencies(poisson_arrivals(qps, n, seed=2), rng.exponential(service_s, n), servers=1)
    return stats.summarize(lat).at(99.0).seconds


def test_search_finds_the_rate_where_the_bound_breaks() -> None:
    bound = 1e-3
    # M/M/1 with mean service 0.1 ms: p99 ≈ ln(100)/(μ − λ) = 1 ms at λ ≈ 5,400 QPS.
    outcome = find_max_qps(_mm1_p99, lambda p99: p99 <= bound, start_qps=500, max_probes=12, precision=0.05)
    assert outcome.best is not None and outcome.best.passed
    assert 4000 < outcome.best.qps < 7000
    failing = [p.qps for p in outcome.probes if not p.passed]
    assert (failing and min(failing) <= outcome.best.qps * 1.05 * 1.0001) or len(outcome.probes) == 12
    # A system that never meets the bound: no best, and the search stops at the floor.
    never = find_max_qps(lambda q: 1.0, lambda r: r <= bound, start_qps=8, max_probes=10, min_qps=1)
    assert never.best is None and [p.qps for p in never.probes] == [8, 4, 2, 1]
    # Probes stop at max_probes.
    assert len(find_max_qps(lambda q: 0.0, lambda r: True, 1, max_probes=3).probes) == 3


def test_builtin_scheduler_counts_queries() -> None:
    calls: list[int] = []
    serve = lambda idx: calls.append(len(idx))  # noqa: E731
    sch = BuiltinScheduler()
    run = sch.single_stream(serve, samples=16, duration_s=0.0, min_queries=25)
    assert run.samples == 25 == len(run.latencies_s) and set(calls) == {1}
    with WorkerPool([serve, serve]) as pool:
        run = sch.server(pool, samples=16, qps=5000, bound_s=1e-3, duration_s=0.001, min_queries=30)
        assert run.samples == 30 and np.all(run.latencies_s >= 0) and run.issue_lateness_p99_s is not None
        calls.clear()
        run = sch.offline(pool, samples=16, batch=8, total=20)
        assert run.samples == 20 == len(run.latencies_s) and sorted(calls) == [4, 8, 8]


def test_loadgen_verdict_is_read_from_its_detail_log(tmp_path: Path) -> None:
    log = tmp_path / "mlperf_log_detail.txt"
    log.write_text(
        ':::MLLOG {"key": "result_validity", "value": "VALID"}\n'
        ':::MLLOG {"key": "result_99.00_percentile_latency_ns", "value": 12345}\nnoise\n:::MLLOG {broken\n'
    )
    assert read_detail(log) == {"validity": "VALID", "p99_ns": 12345}


def test_threadings_and_scheduler_choice() -> None:
    assert parse_threadings("1x2, 2x1,1x2") == [Threading(1, 2), Threading(2, 1)]
    assert parse_threadings(None)[0] == Threading(1, 1)
    from cvae_bench.core.errors import CvaeBenchError

    with pytest.raises(CvaeBenchError, match="SESSIONSxTHREADS"):
        parse_threadings("two")
    heard = Collect()
    assert pick_scheduler("builtin", heard).name == "built-in" and heard.events == []


# -- end to end, tiny -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheduler", ["builtin", "loadgen"])
def test_loadtest_command_writes_records_and_table(decoder_file: Path, tmp_path: Path, scheduler: str) -> None:
    if scheduler == "loadgen" and import_loadgen() is None:
        pytest.skip("mlperf_loadgen is not installed (pip install mlcommons-loadgen)")
    from cvae_bench.cli import main

    out = tmp_path / "lt"
    args = [
        "loadtest", str(decoder_file), "--out", str(out), "--precisions", "fp32", "--devices", "cpu",
        "--serving", "1x1", "--duration", "0.02", "--min-queries", "20", "--max-probes", "2",
        "--offline-batches", "8", "--offline-queries", "64", "--scheduler", scheduler,
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = LoadtestReport.from_json(json.loads((out / "loadtest.json").read_text()))
    assert LoadtestReport.from_json(report.to_json()) == report
    (config,) = report.configs
    assert config.error is None and config.single_stream and config.single_stream.queries >= 20
    assert config.server and 1 <= len(config.server.probes) <= 2
    assert config.offline[0].queries == 64 and config.load is not None
    # The decoder process's peak over the configuration: at least what it held before it began.
    assert config.memory is not None and config.memory.peak_rss >= config.memory.rss_before > 0
    assert report.scheduler.startswith("MLPerf LoadGen") == (scheduler == "loadgen")
    table = (out / "loadtest.md").read_text()
    assert "| fp32 | CPU | 1 session × 1 thread |" in table and report.scheduler in table
    assert render_markdown(report)[0].startswith("# Load test")
    if scheduler == "loadgen":  # LoadGen's own logs are kept beside the results, one folder per scenario run
        assert sorted(p.name for p in (out / "loadgen").glob("*/mlperf_log_summary.txt"))
        assert (out / "loadgen" / "001-singlestream" / "mlperf_log_detail.txt").is_file()
    # The same command again would replace these results: refused in one line, the files untouched.
    kept = (out / "loadtest.json").read_bytes()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and again.stderr.startswith(f"error: output folder {out} is not empty")
    assert (out / "loadtest.json").read_bytes() == kept


def test_loadtest_refuses_a_file_that_is_not_a_decoder(tmp_path: Path) -> None:
    """A failure (exit 1), found before the output folder is made: nothing is left behind."""
    from cvae_bench.cli import main

    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not onnx")
    result = CliRunner().invoke(main, ["loadtest", str(bad), "--out", str(tmp_path / "o"), "--scheduler", "builtin"])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and not result.stdout.strip()
    assert lines[0].startswith("error: ") and "expected an ONNX decoder" in lines[0]
    assert not (tmp_path / "o").exists()


def test_loadtest_requiring_a_missing_loadgen_leaves_no_folder(
    decoder_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cvae_bench.cli import main

    monkeypatch.setattr("cvae_bench.serving.loadtest.import_loadgen", lambda: None)  # as where it is not installed

    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["loadtest", str(decoder_file), "-o", str(out), "--scheduler", "loadgen"])
    assert result.exit_code == 1 and result.stderr.startswith("error: --scheduler loadgen: mlperf_loadgen does not")
    assert not out.exists()


def test_loadtest_options_are_the_records(decoder_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line's defaults are the record's own (written once, in `LoadtestCommand`); gpu reads as cuda."""
    from cvae_bench.cli import main
    from cvae_bench.core.events import Reporter
    from cvae_bench.serving import loadtest

    asked: list[LoadtestCommand] = []

    def record(cmd: LoadtestCommand, reporter: Reporter) -> list[Path]:
        asked.append(cmd.check())
        return []

    monkeypatch.setattr(loadtest, "loadtest_command", record)
    assert CliRunner().invoke(main, ["loadtest", str(decoder_file)]).exit_code == 0
    assert asked.pop() == LoadtestCommand(model=str(decoder_file))
    args = ["loadtest", str(decoder_file), "--device", "GPU,cpu,cuda", "--scenarios", "Offline", "--precision", "FP16"]
    assert CliRunner().invoke(main, args).exit_code == 0
    cmd = asked.pop()
    assert (cmd.devices, cmd.scenarios, cmd.precisions) == (("cuda", "cpu"), ("offline",), ("fp16",))


def test_a_loadtest_record_built_in_python_is_held_to_the_options_rules(decoder_file: Path) -> None:
    model = str(decoder_file)
    for wrong, says in (
        ({"offline_batches": (64, 0)}, "--offline-batches: 0 is below the minimum 1"),
        ({"scenarios": ("server", "multi")}, "--scenarios: 'multi' is not one of single-stream, server, offline"),
        ({"devices": ()}, "--devices: name at least one value"),
        ({"latency_bound_ms": float("nan")}, "--latency-bound: nan is not a finite number"),
        ({"serving": "1x0"}, "--serving: expected positive counts; received '1x0'"),
    ):
        with pytest.raises(UsageError) as info:
            replace(LoadtestCommand(model=model), **wrong).check()
        assert says in str(info.value)
    with pytest.raises(CvaeBenchError, match="MODEL: no such file") as missing:  # a file problem: exit 1
        LoadtestCommand(model=model + ".missing").check()
    assert not isinstance(missing.value, UsageError)
    checked = LoadtestCommand(model=model, devices=("gpu",), scheduler="BUILTIN").check()
    assert (checked.devices, checked.scheduler) == (("cuda",), "builtin")


def test_loadgen_scheduler_label() -> None:
    lg = import_loadgen()
    if lg is None:
        pytest.skip("mlperf_loadgen is not installed")
    assert LoadgenScheduler(lg).label.startswith("MLPerf LoadGen")


def test_loadtest_runs_only_the_scenarios_asked_for(decoder_file: Path, tmp_path: Path) -> None:
    from cvae_bench.cli import main

    out = tmp_path / "lt"
    args = [
        "loadtest", str(decoder_file), "-o", str(out), "--precision", "fp32", "--device", "cpu",
        "--serving", "1x1", "--offline-batches", "8", "--offline-queries", "64", "--scheduler", "builtin",
        "--scenario", "Offline",
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = LoadtestReport.from_json(json.loads((out / "loadtest.json").read_text()))
    (config,) = report.configs
    assert report.options.scenarios == ["offline"]
    assert config.single_stream is None and config.server is None and config.offline[0].queries == 64
    assert "# Load test" in (out / "loadtest.md").read_text()
    bad = CliRunner().invoke(main, ["loadtest", str(decoder_file), "-o", str(tmp_path / "x"), "--scenario", "multi"])
    assert bad.exit_code == 2 and "--scenarios: 'multi' is not one of single-stream, server, offline" in bad.stderr
    assert not (tmp_path / "x").exists()
