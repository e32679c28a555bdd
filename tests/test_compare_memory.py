"""The memory side of the gate on synthetic bench.json and result.json files: a grown peak fails, noise passes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from cvae_bench.bench.compare_memory import compare_memory, read_memory, with_memory
from cvae_bench.cli import main
from tests.test_compare_gate import bench_doc, rounds

MIB = 1024 * 1024


def with_peaks(doc: dict[str, Any], peaks: dict[str, tuple[int, int, int] | None]) -> dict[str, Any]:
    """`doc` with `extra_info["memory"]` (median, lowest, highest peak in MiB) on the entries named."""
    for e in doc["benchmarks"]:
        p = peaks.get(e["name"])
        if p is not None:
            e["extra_info"]["memory"] = {
                "baseline_rss": 40 * MIB,
                "rss_after_import": 250 * MIB,
                "rss_after_build": 300 * MIB,
                "peak_rss": p[0] * MIB,
                "peak_rss_interval": [p[1] * MIB, p[2] * MIB],
                "device_peak": None,
                "method": "vmhwm",
            }
    return doc


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


def pair(tmp_path: Path, base_peak: tuple[int, int, int], new_peak: tuple[int, int, int]) -> tuple[Path, Path]:
    times = {"train-step[x]": rounds(0.010, 1)}
    base = write(tmp_path / "base.json", with_peaks(bench_doc(times), {"train-step[x]": base_peak}))
    new = write(
        tmp_path / "new.json", with_peaks(bench_doc({"train-step[x]": rounds(0.010, 2)}), {"train-step[x]": new_peak})
    )
    return base, new


def test_a_grown_peak_fails_the_memory_gate_and_noise_does_not(tmp_path: Path) -> None:
    base, grown = pair(tmp_path, (500, 495, 505), (650, 640, 660))
    gate = compare_memory(base, grown, fail_above=0.10)
    (c,) = gate.changes
    assert gate.failed and c.regression and c.separated and c.verdict == "more"
    assert not compare_memory(base, grown, fail_above=0.50).failed  # under the threshold
    assert not compare_memory(base, grown).failed  # no threshold: shown, never failing
    _, noisy = pair(tmp_path, (500, 450, 700), (600, 560, 720))  # +20 %, but the processes' ranges overlap
    assert not compare_memory(base, noisy, fail_above=0.10).failed


def test_the_cli_shows_memory_beside_time_and_exits_1_on_a_memory_regression(tmp_path: Path) -> None:
    base, grown = pair(tmp_path, (500, 495, 505), (650, 640, 660))
    runner = CliRunner()
    shown = runner.invoke(main, ["compare", str(base), str(grown)])
    assert shown.exit_code == 0, shown.output
    assert "peak memory" in shown.output and "+30.0 %" in shown.output
    failed = runner.invoke(main, ["compare", str(base), str(grown), "--fail-above-memory", "0.1"])
    assert failed.exit_code == 1
    assert "peak-memory regression" in failed.output and "MEMORY REGRESSION" in failed.output
    same = runner.invoke(main, ["compare", str(base), str(base), "--fail-above-memory", "0.1"])
    assert same.exit_code == 0 and "memory passed" in same.output


def test_files_without_memory_give_no_memory_column(tmp_path: Path) -> None:
    base = write(tmp_path / "a.json", bench_doc({"train-step[x]": rounds(0.010, 1)}))
    gate = compare_memory(base, base, fail_above=0.0)
    assert gate.changes == [] and not gate.failed
    headers, rows = with_memory(["entry", "verdict"], [["train-step[x]", "tie"]], ["train-step[x]"], gate)
    assert headers == ["entry", "verdict"] and rows == [["train-step[x]", "tie"]]


def test_runs_are_compared_by_their_peak_over_the_run(tmp_path: Path) -> None:
    def run(peak_mib: int, seed: int) -> dict[str, Any]:
        return {
            "backend": "torch",
            "mode": "eager",
            "device": "cpu",
            "hardware": {"cpu": "EPYC", "cpu_count": 2},
            "time_to_target_s": 10.0 + seed,
            "memory": {"peak_rss": peak_mib * MIB, "baseline_rss": 40 * MIB, "method": "vmhwm"},
        }

    for side, peak in (("a", 400), ("b", 480)):
        for seed in range(3):
            d = tmp_path / side / f"s{seed}"
            d.mkdir(parents=True)
            write(d / "result.json", run(peak + seed, seed))
    found = read_memory(tmp_path / "a")
    assert found["peak-rss[torch-eager-cpu]"].peak_rss == 401 * MIB
    assert found["peak-rss[torch-eager-cpu]"].interval == (400 * MIB, 402 * MIB)
    assert compare_memory(tmp_path / "a", tmp_path / "b", fail_above=0.1).failed


RECORDED = Path(__file__).parent / "data" / "memory" / "bench.json"  # a real bench (4 backends, 2-vCPU EPYC)


def test_a_recorded_bench_against_itself_passes_and_a_grown_copy_fails(tmp_path: Path) -> None:
    doc = json.loads(RECORDED.read_text())
    grown = next(e for e in doc["benchmarks"] if e["name"] == "train-step[torch-eager]")
    grown["extra_info"]["memory"]["peak_rss"] = int(grown["extra_info"]["memory"]["peak_rss"] * 1.25)
    new = write(tmp_path / "grown.json", doc)
    runner = CliRunner()
    same = runner.invoke(main, ["compare", str(RECORDED), str(RECORDED), "--fail-above-memory", "0.1"])
    assert same.exit_code == 0 and "memory passed" in same.output
    gate = compare_memory(RECORDED, new, fail_above=0.1)
    assert [c.name for c in gate.changes if c.regression] == ["train-step[torch-eager]"]
    assert len(gate.changes) == len(read_memory(RECORDED)) > 10


def test_the_report_draws_memory_against_batch_size_from_a_recorded_bench() -> None:
    from cvae_bench.report.charts import Colours
    from cvae_bench.report.inputs import load_inputs
    from cvae_bench.report.memory_chart import memory_vs_batch

    fig = memory_vs_batch(load_inputs([RECORDED]).benches, Colours())
    assert fig is not None
    native = [t for t in fig.data if t.name == "torch:eager"]
    assert native and list(native[0].x) == [1, 64, 1024, 8192] and min(native[0].y) > 0
    assert memory_vs_batch([], Colours()) is None


def test_bench_md_has_a_memory_table_from_a_recorded_bench_and_none_without_figures() -> None:
    from cvae_bench.bench.document import BenchDocument
    from cvae_bench.bench.report import to_markdown

    doc = json.loads(RECORDED.read_text())
    md = to_markdown(BenchDocument.from_json(doc))
    assert "## Memory" in md and "| train-step[torch-eager] | 220 MiB | 775 MiB | 895 MiB |" in md
    for e in doc["benchmarks"]:
        e["extra_info"].pop("memory", None)
    assert "## Memory" not in to_markdown(BenchDocument.from_json(doc))


def test_the_report_s_verdict_block_reads_the_recorded_peaks() -> None:
    from cvae_bench.report.inputs import load_inputs
    from cvae_bench.report.verdict import build_block

    rows = {r.label: r.memory for r in build_block(load_inputs([RECORDED])).rows}
    assert rows["torch:eager"] == "895 MiB" and rows["keras-jax:jit"] == "1591 MiB"


def test_unreadable_memory_figures_are_said_not_dropped(tmp_path: Path) -> None:
    """An entry whose memory figures are there but malformed is left out of the memory side by name."""
    base, new = pair(tmp_path, (500, 495, 505), (510, 500, 520))
    doc = json.loads(new.read_text())
    doc["benchmarks"][0]["extra_info"]["memory"]["peak_rss"] = "a lot"
    write(new, doc)
    gate = compare_memory(base, new, fail_above=0.10)
    assert gate.changes == [] and gate.left_out == ["train-step[x] (NEW)"]
    result = CliRunner().invoke(main, ["compare", str(base), str(new), "--fail-above-memory", "0.1"])
    assert "left out, unreadable: train-step[x] (NEW)" in result.output
    payload = json.loads(CliRunner().invoke(main, ["compare", str(base), str(new), "--json"]).output)
    assert payload["memory"]["left_out"] == ["train-step[x] (NEW)"]
