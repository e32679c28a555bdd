"""Tuning knobs: how a selection writes them, what reaches a worker, and that they act on the framework."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cvae_bench.backends import registry
from cvae_bench.backends.selection import parse_selection
from cvae_bench.bench.groups.base import start_worker
from cvae_bench.bench.options import BenchOptions
from cvae_bench.core.errors import TuningError
from cvae_bench.core.tuning import KNOBS, TUNING_ENV, UNTUNED, Tuning
from cvae_bench.models import DEFAULT_SPEC
from cvae_bench.runtime.worker import RemoteBackend
from tests.worker_jobs import tuned_state

ROOT = str(Path(__file__).resolve().parent.parent)
needs_torch = pytest.mark.skipif(not registry.get("torch").available, reason="torch is not installed")


def test_a_tuning_reads_back_as_written_in_order() -> None:
    tuning = Tuning.parse("+threads=1+flush-denormal=on+env:XLA_FLAGS=--xla_cpu_use_thunk_runtime=false")
    assert tuning.settings == (
        ("threads", "1"),
        ("flush-denormal", "on"),
        ("env:XLA_FLAGS", "--xla_cpu_use_thunk_runtime=false"),
    )
    assert tuning.threads == 1
    assert Tuning.parse(tuning.label) == tuning
    assert not Tuning.parse("") and UNTUNED.label == "" and UNTUNED.threads is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("turbo=on", "no tuning knob 'turbo'; known: threads, flush-denormal"),
        ("flush-denormal=yes", "takes on|off"),
        ("threads=0", "a whole number >= 1"),
        ("threads=two", "a whole number >= 1"),
        ("mkldnn", "has no value"),
        ("onednn=off+onednn=on", "given twice"),
        ("env:1BAD=x", "not an environment variable name"),
        ("env:FOO=", "needs a value"),
    ],
)
def test_bad_tunings_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(TuningError) as err:
        Tuning.parse(text)
    assert says in str(err.value)


def test_environment_knobs_extend_flag_lists_and_name_the_tuning() -> None:
    tuning = Tuning.parse("onednn=off+env:XLA_FLAGS=--b+torch-compile-mode=max-autotune-no-cudagraphs+threads=1")
    env = tuning.environment({"XLA_FLAGS": "--a"})
    assert env == {
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "XLA_FLAGS": "--a --b",  # extended: thread flags set before it are kept
        "CVAE_BENCH_TORCH_COMPILE_MODE": "max-autotune-no-cudagraphs",
        TUNING_ENV: tuning.label.removeprefix("+"),
    }
    assert UNTUNED.environment() == {}


def test_every_named_knob_documents_itself() -> None:
    design = (Path(ROOT) / "docs" / "design.md").read_text()
    for name, knob in KNOBS.items():
        assert knob.summary
        assert f"`{name}" in design, f"knob {name!r} is not in docs/design.md's 'Tuning knobs'"


def test_selections_carry_tuning_only_where_it_is_asked_for() -> None:
    name = next(n for n, i in registry.all_backends().items() if i.available)
    (sel,) = parse_selection(f"{name}+threads=1", tunable=True)
    assert sel.tuning == Tuning((("threads", "1"),)) and sel.label == f"{name}+threads=1"
    plain, tuned = parse_selection(f"{name}, {name}+threads=1", tunable=True)
    assert plain != tuned, "a tuned item is a second entry beside the untuned one"
    with pytest.raises(TuningError, match="for `cvae-bench bench` only"):
        parse_selection(f"{name}+threads=1")


needs_numpy_plugin = pytest.mark.skipif("numpy" not in registry.all_backends(), reason="example plugin not installed")


@needs_numpy_plugin
def test_an_in_process_knob_on_a_framework_the_backend_does_not_load_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The NumPy example backend never imports torch: torch's flush-to-zero would act on nothing.
    tuning = Tuning.parse("flush-denormal=on")
    with (
        start_worker(registry.get("numpy"), BenchOptions(threads=1), tuning) as worker,
        pytest.raises(TuningError, match="acts on torch, which this backend does not load"),
    ):
        RemoteBackend(worker, DEFAULT_SPEC, 0)


@needs_torch
def test_a_tuned_worker_runs_with_its_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    options = BenchOptions(threads=2)
    names = ["CVAE_BENCH_THREADS", "TF_ENABLE_ONEDNN_OPTS", "CVAE_BENCH_EXAMPLE"]
    tuning = Tuning.parse("threads=1+mkldnn=off+flush-denormal=on+onednn=off+env:CVAE_BENCH_EXAMPLE=42")
    with start_worker(registry.get("torch"), options, tuning) as worker:
        remote = RemoteBackend(worker, DEFAULT_SPEC, 0)
        assert remote.info["tuning"] == tuning.label
        tuned = remote.run_job(tuned_state, names=names)
    assert tuned["env"] == {"CVAE_BENCH_THREADS": "1", "TF_ENABLE_ONEDNN_OPTS": "0", "CVAE_BENCH_EXAMPLE": "42"}
    assert tuned["mkldnn"] is False and tuned["denormal_survives"] is False
    # Untuned, torch keeps both as it ships (asked here, in this process, which no knob has touched).
    untuned = tuned_state(None, None, names=names)
    assert untuned["mkldnn"] is True and untuned["denormal_survives"] is True
    if tuned["cores"] is not None and untuned["cores"] > 1:
        assert tuned["cores"] == 1, "threads=1 pins the worker to one core"
