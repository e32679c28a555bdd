"""Memory figures: a worker's peak per phase against a known allocation; the records' logic on synthetic figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cvae_bench.bench.groups.base import BARE_WORKER
from cvae_bench.bench.memory import attach, by_call, memory_key
from cvae_bench.bench.rounds import Contestant, Plan, close_job, open_job, rounds_job
from cvae_bench.core.memory import MemoryFigures, ProcessMemory, figures, of_extra_info
from cvae_bench.runtime import memory
from cvae_bench.runtime.worker import Worker
from tests.worker_jobs import BIG_ARRAY_BYTES, big_array_setup

MIB = 1024 * 1024


def test_a_worker_s_peak_over_rounds_holds_an_array_it_allocated() -> None:
    with Worker(BARE_WORKER, idle_timeout=300) as w:
        w.run_job(open_job, key="big", setup=big_array_setup, min_time=0.0, setup_kwargs={}, iterations=1)
        w.run_job(rounds_job, key="big", rounds=1)
        w.run_job(close_job, key="big")
        reported = ProcessMemory.of(w.run_job(memory.memory_job))
        base = w.run_job(memory.baseline_job)
    assert reported.peaks["big"] >= BIG_ARRAY_BYTES
    # The array was freed before the report: the peak is the rounds', not the process's resident set now.
    assert reported.marks["after_build"] < reported.peaks["big"]
    assert 0 < base < reported.peaks["big"]
    assert reported.method in (memory.METHOD_HWM, memory.METHOD_SAMPLED)


@pytest.mark.parametrize("method", [memory.METHOD_HWM, memory.METHOD_SAMPLED])
def test_a_phase_s_peak_is_at_least_what_it_allocated_by_either_method(method: str) -> None:
    meter = memory.PeakMeter()
    if method == memory.METHOD_HWM and meter.method != method:
        pytest.skip("this kernel refuses to reset VmHWM (clear_refs)")
    meter.method = method
    meter.start()
    a = np.ones(BIG_ARRAY_BYTES, dtype=np.uint8)
    if method == memory.METHOD_SAMPLED:
        # Held until the sampling thread has seen it (it samples every few ms; the wait is not timed).
        import threading

        seen = threading.Event()
        for _ in range(2000):
            if meter._peak >= BIG_ARRAY_BYTES or seen.wait(0.005):
                break
    peak = meter.stop()
    del a
    assert peak >= BIG_ARRAY_BYTES


def test_device_peak_is_none_without_an_accelerator() -> None:
    # No accelerator here (and on a GPU machine a framework not yet on the device is not asked either).
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert memory.device_peak() is None


def _process(peak: int, build: int = 300 * MIB, key: str = "train-step") -> ProcessMemory:
    return ProcessMemory(
        marks={"start": 40 * MIB, "after_import": 250 * MIB, "after_build": build},
        peaks={key: peak},
        device_peaks={},
        method=memory.METHOD_HWM,
    )


def test_figures_are_the_median_over_worker_processes_with_their_range() -> None:
    procs = [_process(500 * MIB), _process(520 * MIB), _process(900 * MIB)]
    f = figures(procs, "train-step", 40 * MIB)
    assert f is not None
    assert f.peak_rss == 520 * MIB
    assert f.peak_rss_interval == (500 * MIB, 900 * MIB)
    assert f.processes == 3
    assert f.rss_after_import == 250 * MIB and f.rss_after_build == 300 * MIB
    assert f.framework_share == 480 * MIB
    assert figures(procs[:1], "train-step", 40 * MIB).peak_rss_interval is None  # type: ignore[union-attr]
    assert figures(procs, "sample-native/b64", 40 * MIB) is None


def test_the_contract_s_fields_round_trip_through_json() -> None:
    f = figures([_process(500 * MIB), _process(600 * MIB)], "train-step", 40 * MIB)
    assert f is not None
    data = f.to_json()
    for name in (
        "baseline_rss",
        "rss_after_import",
        "rss_after_build",
        "peak_rss",
        "peak_rss_interval",
        "device_peak",
        "method",
    ):
        assert name in data
    assert data["peak_rss_interval"] == [500 * MIB, 600 * MIB]
    assert MemoryFigures.from_json(data) == f
    assert of_extra_info({"memory": data}) == f
    assert of_extra_info({}) is None
    assert of_extra_info({"memory": {"nonsense": 1}}) is None


def test_entries_get_the_figures_of_their_group_and_batch() -> None:
    from cvae_bench.bench.records import Entry, Stats
    from cvae_bench.bench.timing import Timing

    plans = [
        Plan("sample-native/b1", "sample-native", 1, big_array_setup, {}, 0.1),
        Plan("sample-native/b64", "sample-native", 64, big_array_setup, {}, 0.1),
    ]
    contestants = [Contestant(label=p.key, host=None, plan=p) for p in plans]
    procs = [_process(400 * MIB, key="sample-native/b1"), _process(410 * MIB, key="sample-native/b1")]
    procs[0].peaks["sample-native/b64"] = 700 * MIB
    mem = by_call(contestants, procs, 40 * MIB)
    assert set(mem) == {memory_key("sample-native", 1), memory_key("sample-native", 64)}
    stats = Stats.of(Timing(round_s=[0.1, 0.1, 0.1], iterations=1, warmup=0, warmup_s=0.0))

    def entry(b: int) -> Entry:
        return Entry("sample-native", f"x[b{b}]", f"cvae-bench::x[b{b}]", {"batch": b}, f"b{b}", {}, {}, stats)

    e1, e64, e8 = attach([entry(1), entry(64), entry(8)], mem)
    assert e1.extra_info["memory"]["peak_rss"] == 405 * MIB
    assert e64.extra_info["memory"]["peak_rss"] == 700 * MIB  # one process ran it: no interval
    assert e64.extra_info["memory"]["peak_rss_interval"] is None
    assert "memory" not in e8.extra_info


def test_a_run_s_peak_is_the_worker_s_peak_over_its_whole_life() -> None:
    from cvae_bench.core.memory import RunMemory
    from tests.worker_jobs import allocate

    with Worker(BARE_WORKER, idle_timeout=300) as w:
        w.run_job(allocate, nbytes=BIG_ARRAY_BYTES)
        run = RunMemory.from_json(w.run_job(memory.run_memory_job))
    assert run.peak_rss >= BIG_ARRAY_BYTES > run.baseline_rss > 0
    assert run.device_peak is None or run.device_peak > 0


def test_result_json_carries_the_run_s_memory_and_older_files_read_without_it() -> None:
    import dataclasses

    from cvae_bench.core.memory import RunMemory
    from cvae_bench.training.records import RunResult

    fields = {f.name for f in dataclasses.fields(RunResult)}
    assert "memory" in fields
    hint = RunResult.__dataclass_fields__["memory"]
    assert hint.default is None  # an older result.json (no memory) still reads
    doc = {"peak_rss": 300 * MIB, "baseline_rss": 40 * MIB, "method": "vmhwm"}
    assert RunMemory.from_json(doc).to_json()["peak_rss"] == 300 * MIB


def test_sample_onnxruntime_records_each_precision_and_batch_s_peak(decoder_file: Path) -> None:
    from cvae_bench.bench.groups.sample_onnxruntime import sample_onnxruntime_job

    with Worker(BARE_WORKER, idle_timeout=300) as w:
        samples = w.run_job(
            sample_onnxruntime_job,
            models={"fp32": str(decoder_file)},
            providers=["CPUExecutionProvider"],
            batch_sizes=[1, 64],
            threads=1,
            rounds=2,
            min_time=0.0,
            warmup=1,
        )
    session = samples.results["CPUExecutionProvider"]["fp32"]
    assert set(session.memory) == {1, 64}
    for f in session.memory.values():
        assert f.peak_rss >= f.rss_after_build > 0 and f.peak_rss_interval is None
        assert f.rss_after_import >= f.baseline_rss


def test_the_audit_says_what_each_loaded_framework_pre_allocates() -> None:
    import onnxruntime  # noqa: F401 - loaded, so it is audited
    import torch

    from cvae_bench.onnx.sessions import session_options
    from cvae_bench.runtime.allocators import allocator_audit
    from cvae_bench.runtime.threads import process_audit

    lines = allocator_audit()
    assert "arena on" in lines["onnxruntime"]  # the default the sessions keep (never changed by cvae-bench)
    ours = session_options(1)
    assert ours.enable_cpu_mem_arena and ours.enable_mem_pattern  # what the audit reads is what is in force
    assert ("caching allocator" in lines["torch"]) == torch.cuda.is_available()
    assert process_audit()["allocators"] == lines


def test_a_refused_reset_falls_back_to_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "reset_hwm", lambda pid=None: False)  # a container's read-only /proc
    assert memory._method_for(None) == memory.METHOD_SAMPLED
    monkeypatch.setattr(memory, "hwm", lambda pid=None: None)  # no VmHWM at all (not Linux)
    assert memory._method_for(None) == memory.METHOD_SAMPLED
