"""Hostile and damaged result files through `compare` and `report`: one `error:` line, no traceback, no verdict.

The fixtures are generated: a good bench.json and result.json, then each broken one way (strings for numbers,
lists for objects, NaN/inf/0/negative medians, missing fields, huge numbers, non-UTF-8 bytes, truncated JSON,
a JSON array at top level).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cvae_bench.cli import main
from cvae_bench.core.records import RecordError
from cvae_bench.report.history import append_history, load_history
from cvae_bench.training.records import RunResult
from tests.test_compare_gate import bench_doc, rounds
from tests.test_report import run_result

GOOD_BENCH = bench_doc({"train-step[x]": rounds(0.010, 1)})


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], Any]:
    def mutate(doc: dict[str, Any]) -> Any:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return doc

    return mutate


ENTRY = ("benchmarks", 0)
BENCH_CASES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "median-string": _set((*ENTRY, "stats", "median"), "fast"),
    "median-nan": _set((*ENTRY, "stats", "median"), float("nan")),
    "median-inf": _set((*ENTRY, "stats", "median"), float("inf")),
    "median-zero": _set((*ENTRY, "stats", "median"), 0),
    "median-negative": _set((*ENTRY, "stats", "median"), -0.01),
    "median-huge": _set((*ENTRY, "stats", "median"), 10**400),
    "data-strings": _set((*ENTRY, "stats", "data"), ["a", "b", "c"]),
    "data-negative": _set((*ENTRY, "stats", "data"), [-1.0, 0.01, 0.01, 0.01]),
    "data-object": _set((*ENTRY, "stats", "data"), {"a": 1}),
    "stats-list": _set((*ENTRY, "stats"), [1, 2, 3]),
    "entry-string": _set(ENTRY, "train-step[x]"),
    "benchmarks-object": _set(("benchmarks",), {"a": 1}),
    "rounds-string": _set((*ENTRY, "stats", "rounds"), "many"),
    "iqr-string": _set((*ENTRY, "stats", "iqr"), "wide"),
    "floor-negative": _set((*ENTRY, "extra_info", "floor_s"), -1),
    "extra-info-list": _set((*ENTRY, "extra_info"), []),
    "name-number": _set((*ENTRY, "name"), 7),
    "machine-info-list": _set(("machine_info",), []),
}


def _invoke(args: list[str]) -> Any:
    return CliRunner().invoke(main, args)


def _one_error_line(result: Any, *names: str) -> str:
    """The output is one `error:` line naming each of `names`; no traceback, no verdict, exit non-zero."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    for verdict in ("tie", "slower", "faster", "passed", "FAILED", " %"):
        assert verdict not in lines[0].replace(names[0], "") if names else verdict not in lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.mark.parametrize("case", sorted(BENCH_CASES))
def test_compare_refuses_a_hostile_bench_json(tmp_path: Path, case: str) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GOOD_BENCH))
    bad = tmp_path / f"{case}.json"
    bad.write_text(json.dumps(BENCH_CASES[case](copy.deepcopy(GOOD_BENCH))))
    line = _one_error_line(_invoke(["compare", str(good), str(bad)]), str(bad))
    # the field is named (NaN and Infinity are refused as not strict JSON, before any field is read)
    assert "benchmarks" in line or "machine_info" in line or "is not strict JSON" in line
    _one_error_line(_invoke(["compare", str(bad), str(good)]), str(bad))


RAW_CASES: dict[str, bytes] = {
    "truncated": json.dumps(GOOD_BENCH).encode()[:40],
    "non-utf8": b'{"benchmarks": [\xff\xfe]}',
    "top-level-array": b"[1, 2, 3]",
    "nan-constant": json.dumps(GOOD_BENCH).replace("0.0", "NaN", 1).encode(),
    "empty": b"",
}


@pytest.mark.parametrize("case", sorted(RAW_CASES))
def test_compare_and_report_refuse_unreadable_json(tmp_path: Path, case: str) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GOOD_BENCH))
    bad = tmp_path / f"{case}.json"
    bad.write_bytes(RAW_CASES[case])
    _one_error_line(_invoke(["compare", str(good), str(bad)]), str(bad))
    _one_error_line(_invoke(["report", str(bad), "-o", str(tmp_path / "r.html")]), str(bad))
    assert not (tmp_path / "r.html").exists()


def _result_doc() -> dict[str, Any]:
    return run_result("torch", "eager", seed=1, speed=1.0).to_json()


RESULT_CASES: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "ms-per-step-string": (_set(("ms_per_step_median",), "fast"), "outcome.ms_per_step_median"),
    "steps-string": (_set(("steps",), "100"), "outcome.steps"),
    "steps-float": (_set(("steps",), 1.5), "outcome.steps"),
    "final-list": (_set(("final",), [1, 2]), "outcome.final"),
    "history-object": (_set(("history",), {"a": 1}), "outcome.history"),
    "val-elbo-string": (_set(("final", "val_elbo"), "low"), "val_elbo"),
    "reached-string": (_set(("reached",), "yes"), "outcome.reached"),
    "seed-string": (_set(("seed",), "one"), "seed"),
    "time-huge": (_set(("time_to_target_s",), 10**400), "time_to_target_s"),
    "backend-number": (_set(("backend",), 3), "backend"),
}


@pytest.mark.parametrize("case", sorted(RESULT_CASES))
def test_a_hostile_result_json_is_refused_naming_the_field(tmp_path: Path, case: str) -> None:
    mutate, field = RESULT_CASES[case]
    doc = mutate(_result_doc())
    with pytest.raises(RecordError, match=field.split(".")[-1]):
        RunResult.from_json(doc)
    bad = tmp_path / "result.json"
    bad.write_text(json.dumps(doc))
    _one_error_line(_invoke(["report", str(bad), "-o", str(tmp_path / "r.html")]), str(bad), field.split(".")[-1])
    _one_error_line(_invoke(["compare", str(bad), str(bad)]), str(bad))


def test_report_over_a_folder_skips_a_bad_result_with_a_note(tmp_path: Path) -> None:
    good, bad = tmp_path / "runs" / "good", tmp_path / "runs" / "bad"
    good.mkdir(parents=True)
    bad.mkdir()
    (good / "result.json").write_text(json.dumps(_result_doc()))
    (bad / "result.json").write_text(json.dumps(_set(("steps",), "100")(_result_doc())))
    out = tmp_path / "r.html"
    result = _invoke(["report", str(tmp_path / "runs"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "Traceback" not in result.output
    (note,) = [line for line in result.output.splitlines() if line.startswith("skipped:")]
    assert str(bad / "result.json") in note and "steps" in note


def test_a_hostile_history_entry_is_skipped_with_a_note(tmp_path: Path) -> None:
    history = tmp_path / "history"
    entry = append_history(run_result("torch", "eager", seed=1, speed=1.0), history)
    doc = json.loads(entry.read_text())
    doc["metrics"][0]["value"] = "slow"
    broken = history / "broken.json"
    broken.write_text(json.dumps(doc))
    skipped: list[str] = []
    assert [x.path for x in load_history(history, skipped)] == [entry]
    (note,) = skipped
    assert str(broken) in note and "value" in note


def test_two_results_of_one_commit_get_two_history_entries(tmp_path: Path) -> None:
    history = tmp_path / "history"
    first = append_history(run_result("torch", "eager", seed=1, speed=1.0), history)
    second = append_history(run_result("torch", "eager", seed=2, speed=1.0), history)
    assert first != second and first.is_file() and second.is_file()
    assert append_history(run_result("torch", "eager", seed=1, speed=1.0), history) == first  # the same result: itself
    assert len(load_history(history)) == 2
    assert not list(history.glob(".*"))  # no temporary file left


def test_report_never_writes_over_an_input_and_needs_force_for_an_existing_file(tmp_path: Path) -> None:
    run = tmp_path / "run1"
    run.mkdir()
    result_json = run / "result.json"
    result_json.write_text(json.dumps(_result_doc()))
    before = result_json.read_bytes()
    for extra in ([], ["--force"]):
        line = _one_error_line(_invoke(["report", str(run), "-o", str(result_json), *extra]), str(result_json))
        assert "is the input" in line
        line = _one_error_line(_invoke(["report", str(result_json), "-o", str(result_json), *extra]))
        assert result_json.read_bytes() == before
    out = tmp_path / "r.html"
    out.write_text("keep me")
    line = _one_error_line(_invoke(["report", str(run), "-o", str(out)]), str(out))
    assert "--force" in line and out.read_text() == "keep me"
    result = _invoke(["report", str(run), "-o", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!DOCTYPE html") or "<html" in out.read_text()
