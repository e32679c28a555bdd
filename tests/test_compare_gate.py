"""The regression gate on synthetic result files: fails on a 10 % slowdown, passes an A/A pair."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cvae_bench.bench.compare import compare_files, gate_rows, gate_summary, read_samples
from cvae_bench.cli import main
from cvae_bench.core.errors import CvaeBenchError


def bench_doc(per_call: dict[str, list[float]], cpu: str = "AMD EPYC", floor_s: float = 0.004) -> dict[str, Any]:
    """A bench.json (pytest-benchmark's layout) with one entry per name."""
    return {
        "machine_info": {"cpu": {"brand_raw": cpu, "count": 2}},
        "benchmarks": [
            {
                "group": "train-step",
                "name": name,
                "stats": {
                    "median": float(np.median(data)),
                    "iqr": float(np.subtract(*np.percentile(data, [75, 25]))),
                    "rounds": len(data),
                    "data": data,
                },
                "extra_info": {"floor_s": floor_s},
            }
            for name, data in per_call.items()
        ],
    }


def rounds(median: float, seed: int, n: int = 15, spread: float = 0.01) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(v) for v in median * (1 + spread * rng.standard_normal(n))]


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_a_ten_percent_slowdown_fails_and_an_a_a_pair_passes(tmp_path: Path) -> None:
    base = write(tmp_path / "base.json", bench_doc({"train-step[x]": rounds(0.010, 1)}))
    slow = write(tmp_path / "slow.json", bench_doc({"train-step[x]": rounds(0.011, 2)}))
    same = write(tmp_path / "same.json", bench_doc({"train-step[x]": rounds(0.010, 3)}))
    failed = compare_files(base, slow)
    (c,) = failed.changes
    assert failed.failed and c.regression and c.verdict == "slower" and c.ratio.low is not None and c.ratio.low > 1
    assert "REGRESSION" in gate_rows(failed)[0][4] and gate_summary(failed).startswith("FAILED")
    passed = compare_files(base, same)
    assert not passed.failed and passed.changes[0].verdict == "tie" and passed.changes[0].ratio.contains(1.0)
    assert not compare_files(base, slow, fail_above=0.2).failed  # significant, but under the threshold
    runner = CliRunner()
    assert runner.invoke(main, ["compare", str(base), str(slow)]).exit_code == 1
    ok = runner.invoke(main, ["compare", str(base), str(same)])
    assert ok.exit_code == 0 and "passed" in ok.output


def test_machines_differ_normalised_by_the_floor(tmp_path: Path) -> None:
    base = write(tmp_path / "a.json", bench_doc({"e": rounds(0.010, 1)}, cpu="old", floor_s=0.004))
    # a machine twice as fast, where the backend kept its share of the floor: no change after normalising
    new = write(tmp_path / "b.json", bench_doc({"e": rounds(0.005, 2)}, cpu="new", floor_s=0.002))
    (c,) = compare_files(base, new).changes
    assert c.normalised and c.ratio.contains(1.0) and "floors' ratio 0.500" in c.notes[0]


def test_summaries_only_and_runs(tmp_path: Path) -> None:
    doc = bench_doc({"e": rounds(0.010, 1)})
    del doc["benchmarks"][0]["stats"]["data"]  # a pytest-benchmark save without --benchmark-save-data
    saved = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    saved.mkdir(parents=True)
    write(saved / "0001_base.json", doc)
    (s,) = read_samples(tmp_path / ".benchmarks")
    assert s.values is None and s.iqr is not None
    slower = bench_doc({"e": rounds(0.012, 2)})
    del slower["benchmarks"][0]["stats"]["data"]
    (c,) = compare_files(saved / "0001_base.json", write(tmp_path / "n.json", slower)).changes
    assert c.ratio.method == "iqr-notch" and c.verdict == "slower"

    def comparison(times: list[float], busy: bool = False) -> dict[str, Any]:
        runs = [
            {"backend": "torch", "mode": "eager", "device": "cpu", "time_to_target_s": t, "ms_per_step_median": 10.0}
            | ({"load": {"busy": True}} if busy else {})
            for t in times
        ]
        return {"rows": [], "runs": runs, "hardware": {"cpu": "AMD EPYC", "cpu_count": 2}}

    a = write(tmp_path / "ca.json", comparison([100.0, 102.0, 98.0, 101.0]))
    b = write(tmp_path / "cb.json", comparison([130.0, 128.0, 133.0, 131.0], busy=True))
    result = compare_files(a, b)
    ttt = next(c for c in result.changes if c.name.startswith("time-to-target"))
    assert ttt.regression and "BUSY" in "; ".join(ttt.notes)
    with pytest.raises(CvaeBenchError, match="no entry in common"):
        compare_files(a, write(tmp_path / "x.json", bench_doc({"other": rounds(0.01, 1)})))
