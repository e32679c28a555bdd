"""Output that fits where it goes: Markdown tables in pipes, versioned JSON documents for programs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cvae_bench.cli import main
from cvae_bench.cli.output import markdown_table, schema, show_blocks, show_table
from tests.test_compare_gate import bench_doc, rounds, write


def test_a_table_in_a_pipe_is_markdown_and_never_cut() -> None:
    long = "train-step[keras-tensorflow:graph+threads=2,flush-denormal=on] | batch 8192"
    out = io.StringIO()  # not a terminal
    show_table("anatomy", ["backend", "mode", "precision"], [[long, "eager", "fp32"]], stream=out)
    text = out.getvalue()
    assert text.startswith("**anatomy**\n\n| backend | mode | precision |\n|---|---|---|\n")
    assert long.replace("|", "\\|") in text  # whole, with its pipe escaped
    assert markdown_table(["a"], [["x|y"]]) == ["| a |", "|---|", "| x\\|y |"]


def test_the_fairness_blocks_in_a_pipe_are_markdown_and_never_cut() -> None:
    """The audit's blocks (a key per line, too many for one table) are Markdown bullets in a pipe, rich text on a
    terminal; a value longer than any terminal stays on its line, whole."""
    long = "OMP_NUM_THREADS=unset, MKL_NUM_THREADS=unset, " * 6
    blocks = [("torch:eager", [("intra-op threads", "2"), ("env", long)]), ("keras-jax:jit", [("xla", "cpu|fast")])]
    out = io.StringIO()
    show_blocks("fairness audit", blocks, stream=out)
    assert out.getvalue().splitlines() == [
        "**fairness audit**",
        "",
        "- **torch:eager**",
        "  - intra-op threads: 2",
        f"  - env: {long}",
        "- **keras-jax:jit**",
        "  - xla: cpu\\|fast",
        "",
    ]
    shown = io.StringIO()
    show_blocks("fairness audit", blocks, stream=shown, markdown=False)
    assert f"    env: {long}" in shown.getvalue().splitlines() and "**" not in shown.getvalue()


def test_compare_json_is_a_versioned_document(tmp_path: Path) -> None:
    base = write(tmp_path / "base.json", bench_doc({"train-step[x]": rounds(0.010, 1), "gone": rounds(0.01, 3)}))
    slow = write(tmp_path / "slow.json", bench_doc({"train-step[x]": rounds(0.011, 2)}))
    result = CliRunner().invoke(main, ["compare", str(base), str(slow), "--json"])
    assert result.exit_code == 1  # the gate still fails
    doc = json.loads(result.stdout)
    assert doc["schema"] == schema("compare") == "cvae-bench/compare/1"
    assert doc["failed"] is True and doc["only_base"] == ["gone"] and doc["only_new"] == []
    (entry,) = doc["changes"]
    assert entry["name"] == "train-step[x]" and entry["regression"] is True
    assert 1.05 < entry["ratio"]["estimate"] < 1.15


def test_compare_markdown_is_ready_for_a_pull_request(tmp_path: Path) -> None:
    base = write(tmp_path / "base.json", bench_doc({"train-step[x]": rounds(0.010, 1)}))
    same = write(tmp_path / "same.json", bench_doc({"train-step[x]": rounds(0.010, 2)}))
    result = CliRunner().invoke(main, ["compare", str(base), str(same), "--markdown"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[2].startswith("| entry | base | new | change [95 % CI] | verdict | notes |")
    assert lines[4].startswith("| train-step[x] |") and lines[-1].startswith("**") and lines[-1].endswith("**")


def test_backends_json_lists_modes_and_devices() -> None:
    result = CliRunner().invoke(main, ["backends", "--json"])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["schema"] == "cvae-bench/backends/1"
    torch = next(b for b in doc["backends"] if b["name"] == "torch")
    assert torch["modes"] == ["eager", "compiled"] and "cuda" in torch["devices"]


def test_run_json_is_the_only_thing_on_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cvae_bench.backends import registry

    if "numpy" not in registry.all_backends():
        pytest.skip("the numpy test plugin is not installed")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CVAE_BENCH_HISTORY", str(tmp_path / "history"))
    args = ["run", "--backend", "numpy", "--epochs", "1", "--train-subset", "64", "--val-subset", "64"]
    result = CliRunner().invoke(main, [*args, "-o", "r", "--json", "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # the summary line went to stderr
    assert doc["schema"] == "cvae-bench/run/1" and doc["folder"] == "r" and doc["failures"] == []
    (run,) = doc["results"]
    assert run["backend"] == "numpy" and run == json.loads((tmp_path / "r" / "result.json").read_text())
    # The history default is the one the docs name (here moved by $CVAE_BENCH_HISTORY); --no-history: none.
    entries = list((tmp_path / "history").rglob("*.json"))
    assert len(entries) == 1
    again = CliRunner().invoke(main, [*args, "-o", "r2", "--quiet", "--no-report", "--no-history"])
    assert again.exit_code == 0, again.output
    assert list((tmp_path / "history").rglob("*.json")) == entries


def test_compare_leaves_out_the_a_a_twin(tmp_path: Path) -> None:
    """The A/A twin measures the noise floor; comparing a bench with itself lists the contestants only."""
    doc = bench_doc({"train-step[torch:eager]": rounds(0.010, 1), "train-step[torch:eager (A/A)]": rounds(0.01, 2)})
    path = write(tmp_path / "b.json", doc)
    result = CliRunner().invoke(main, ["compare", str(path), str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert [c["name"] for c in json.loads(result.stdout)["changes"]] == ["train-step[torch:eager]"]


def test_wire_events_become_records_and_unknown_ones_are_kept() -> None:
    from cvae_bench.core.events import (
        BandwidthMeasured,
        CeilingMeasured,
        Diverged,
        Evaluated,
        Measured,
        Other,
        Stage,
        TrainProgress,
        read_event,
    )

    assert read_event({"type": "stage", "what": "bench matmul ceiling"}) == Stage("bench matmul ceiling")
    assert read_event({"type": "bench", "what": "x", "median_s": 0.5}) == Measured("x", 0.5)
    assert read_event({"type": "progress", "step": 3, "loss": 1.5, "steps_per_s": 10}) == TrainProgress(3, 1.5, 10.0)
    ev = {"type": "eval", "epoch": 1, "step": 9, "val_elbo": 240.0, "kl": 5.0, "nll": 235.0, "train_time_s": 2.0}
    assert isinstance(read_event(ev), Evaluated)
    ceiling = {"type": "ceiling", "shape": "64x784x512", "numpy": 1e-4}
    assert read_event(ceiling) == CeilingMeasured("64x784x512", {"numpy": 1e-4})
    stream = {"type": "ceiling", "bandwidth": "torch", "4096": 2e10}
    assert read_event(stream) == BandwidthMeasured("torch", {"4096": 2e10})
    diverged = {"type": "diverged", "step": 7, "what": "val -ELBO", "value": "nan"}
    assert read_event(diverged) == Diverged(7, "val -ELBO", "nan")
    assert read_event({"type": "novel", "x": [1]}) == Other("novel", {"x": [1]})  # unknown: kept whole
    assert read_event({"type": "eval", "epoch": "x"}) == Other("eval", {"epoch": "x"})  # incomplete: kept
    assert read_event({"step": 3}) == Other("", {"step": 3})  # no type at all
    assert read_event({"type": 5}) == Other("", {"type": 5})  # a type that is not a name stays a field
    assert read_event("not a dict") == Other("", {"data": "not a dict"})


def test_console_reporter_sends_each_kind_where_it_belongs() -> None:
    from cvae_bench.cli.console import ConsoleReporter
    from cvae_bench.core.events import Message, Stage

    runner = CliRunner()

    @click.command()
    def show() -> None:
        quiet = ConsoleReporter(quiet=True)
        quiet.report(Stage("muted"))
        quiet.report(Message("result line"))
        quiet.report(Message("careful", "warning"))
        ConsoleReporter(to_stderr=True).report(Message("beside a JSON document"))

    result = runner.invoke(show)
    assert result.stdout == "result line\n"
    assert result.stderr == "careful\nbeside a JSON document\n"


def test_a_runs_display_hears_records_and_shows_evaluations_and_a_divergence() -> None:
    from cvae_bench.cli.console import ConsoleReporter
    from cvae_bench.core.events import Diverged, Evaluated, Event, Stage, TrainProgress, TrainStart

    runner = CliRunner()
    events: list[Event] = [
        Stage("data load"),  # a worker's stage: the bar says nothing of it
        TrainStart(total_steps=20),
        TrainProgress(step=10, loss=180.0, steps_per_s=50.0),
        Evaluated(epoch=1.0, step=20, val_elbo=150.25, kl=5.0, nll=145.25, train_time_s=0.4),
        Diverged(step=20, what="val -ELBO", value="nan"),
    ]

    @click.command()
    @click.option("--quiet", is_flag=True)
    def show(quiet: bool) -> None:
        with ConsoleReporter(quiet).run("torch seed 0") as run:
            for event in events:
                run.report(event)

    shown = runner.invoke(show)
    assert shown.exit_code == 0 and shown.stdout == ""
    assert "torch seed 0  epoch   1.00  step     20  val -ELBO  150.250" in shown.stderr
    assert "torch seed 0  diverged at step 20: val -ELBO = nan" in shown.stderr
    assert "data load" not in shown.stderr
    assert runner.invoke(show, ["--quiet"]).stderr == ""
