"""anatomy: where a training step and a decoder call spend their time, by category.

`cvae-bench bench --anatomy` adds this group. Each backend/mode measured gets a fresh worker in which its
training step and its decoder at batch 1 and 1024 are profiled with the framework's own profiler
(`bench.anatomy.jobs.anatomy_job`); the torch export of the decoder is profiled in onnxruntime in a bare
worker. Each entry is the call timed
without the profiler (its pytest-benchmark statistics), with the anatomy in `extra_info`: seconds per call
by category (`bench.anatomy.categories`), the remainder that no profiler event explains, and each
category's floor from the byte-aware roofline.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvae_bench.backends import registry
from cvae_bench.bench.anatomy.categories import CATEGORIES, LABELS
from cvae_bench.bench.anatomy.jobs import AnatomyResult, anatomy_job, ort_anatomy_job
from cvae_bench.bench.anatomy.records import Anatomy, OpTime
from cvae_bench.bench.groups.base import BARE_WORKER, StandaloneGroup, fmt_time, start_worker
from cvae_bench.bench.groups.sample_onnxruntime import export_decoder_job, exporter_for
from cvae_bench.bench.options import BenchOptions
from cvae_bench.bench.records import BackendIdentity, Entry, MeasuredInfo, measured
from cvae_bench.bench.roofline import (
    TRAIN_STEP,
    Roofline,
    Workload,
    decode_workload,
    train_step_workload,
)
from cvae_bench.bench.timing import Timing
from cvae_bench.core.errors import BackendUnavailableError, WorkerError
from cvae_bench.core.events import SILENT, Reporter, Stage
from cvae_bench.core.records import Record
from cvae_bench.core.tuning import Tuning
from cvae_bench.runtime.worker import RemoteBackend

#: Decoder batch sizes of the anatomy.
ANATOMY_BATCHES = (1, 1024)


@dataclass(frozen=True, kw_only=True)
class AnatomyInfo(MeasuredInfo):
    """The `extra_info` of an anatomy entry: the anatomy, with each category's floor."""

    workload: str
    framework: str
    profiler: str
    calls: int
    profiled_s: float
    categories: dict[str, float]
    remainder_s: float
    category_floor_s: dict[str, float] = field(default_factory=dict)
    full_floor_s: float | None = None
    fraction_of_full_floor: float | None = None
    top: list[OpTime] = field(default_factory=list)
    note: str = ""


def _entry(
    group: str, key: str, params: dict[str, Any], info_base: dict[str, Any], a: Anatomy, roofline: Roofline
) -> Entry:
    floor = roofline.floor(a.workload, a.batch)
    timing = a.timing or Timing(round_s=[a.measured_s], iterations=1, warmup=0, warmup_s=0.0)
    derived = measured(timing, a.batch, floor)
    info = AnatomyInfo(
        **info_base,
        workload=a.workload,
        framework=a.framework,
        profiler=a.profiler,
        calls=a.calls,
        profiled_s=a.profiled_s,
        categories=a.categories,
        remainder_s=a.remainder_s,
        category_floor_s=dict(floor.category_floor_s) if floor else {},
        top=a.top,
        note=a.note,
        **derived,
    )
    return Entry.make(group, key, {**params, "workload": a.workload, "batch": a.batch}, timing, info)


def anatomy_row(x: AnatomyInfo) -> list[str]:
    """Measured and profiled call, each category (with its floor), the remainder and the full floor."""

    def cell(c: str) -> str:
        s = x.categories.get(c)
        floor = x.category_floor_s.get(c)
        return "—" if s is None else fmt_time(s) + (f" ({fmt_time(floor)})" if floor else "")

    workload = "step" if x.workload == TRAIN_STEP else f"decode b{x.batch_size}"
    ratio = f"{x.median_s / x.full_floor_s:.1f}×" if x.full_floor_s else "—"
    return [
        x.backend,
        x.mode,
        workload,
        fmt_time(x.median_s),
        fmt_time(x.profiled_s),
        *(cell(c) for c in CATEGORIES),
        fmt_time(x.remainder_s),
        fmt_time(x.full_floor_s),
        ratio,
    ]


ANATOMY_HEADERS = (
    "backend",
    "mode",
    "call",
    "measured",
    "profiled",
    *(f"{LABELS[c]} (floor)" for c in CATEGORIES),
    "remainder",
    "full floor",
    "measured ÷ full floor",
)


def anatomy_notes(entries: Sequence[Entry]) -> list[str]:
    """What each profiler could and could not see, once per profiler."""
    seen: dict[str, str] = {}
    for e in entries:
        seen.setdefault(str(e.extra_info.get("profiler")), str(e.extra_info.get("note", "")))
    lines = [
        "",
        "Seconds per call by category from the framework's own profiler (op → category: "
        "bench/anatomy/categories.py), each with its floor from the byte-aware roofline in brackets; "
        "profiled = the mean call under the profiler, which the categories and the remainder add up to; "
        "measured = the median call without the profiler.",
    ]
    return lines + [f"- {name}: {note}" for name, note in seen.items()]


@dataclass(frozen=True)
class BackendAnatomy(Record):
    """The anatomies of one backend in one mode."""

    identity: BackendIdentity
    result: AnatomyResult


@dataclass(frozen=True)
class AnatomyRun(Record):
    """What the anatomy group measured: each backend/mode, the onnxruntime decoder, and what failed (why)."""

    backends: list[BackendAnatomy] = field(default_factory=list)
    onnxruntime: AnatomyResult | None = None
    errors: dict[str, str] = field(default_factory=dict)


class AnatomyGroup(StandaloneGroup[AnatomyRun]):
    """anatomy: see the module docstring.

    A standalone group: after the timed groups, each backend/mode measured before gets a fresh worker of
    its own for its profile (so a profiler never runs beside the timed rounds), then onnxruntime a bare one.
    """

    name = "anatomy"
    by_default = False  # a profile, not a timing: `--anatomy` asks for it
    title = "anatomy: where each backend's step and decoder call spend their time"
    headers = ANATOMY_HEADERS
    info_type = AnatomyInfo
    needs_data = True  # the train step reads the data set; the export is verified on the validation set

    def workloads(self, options: BenchOptions) -> list[Workload]:
        return [train_step_workload(options.spec), *(decode_workload(options.spec, b) for b in ANATOMY_BATCHES)]

    def measure(
        self, options: BenchOptions, backends: Sequence[BackendIdentity], reporter: Reporter = SILENT
    ) -> AnatomyRun:
        runs: list[BackendAnatomy] = []
        errors: dict[str, str] = {}
        for identity in backends:
            reporter.report(Stage(f"anatomy {identity.label}"))
            try:
                tuning = Tuning.parse(identity.tuning)
                with start_worker(registry.get(identity.backend), options, tuning) as w:
                    backend = RemoteBackend(w, options.spec, 0, identity.device, identity.mode)
                    result: AnatomyResult = backend.run_job(
                        anatomy_job,
                        reporter,
                        decode_batches=ANATOMY_BATCHES,
                        dataset=options.dataset,
                        data_path=options.data_path,
                        train_subset=options.train_subset,
                    )
                runs.append(BackendAnatomy(identity, result))
            except WorkerError as exc:  # one backend's profiler failing leaves the others' anatomies
                errors[identity.label] = str(exc).splitlines()[0][:300]
        ort: AnatomyResult | None = None
        try:
            exporter = exporter_for(backends)
        except BackendUnavailableError as exc:
            errors["onnxruntime"] = str(exc)
        else:
            reporter.report(Stage("anatomy onnxruntime"))
            with tempfile.TemporaryDirectory(prefix="cvae-bench-anatomy-onnx-") as workdir:
                path = str(Path(workdir) / "decoder.fp32.onnx")
                with start_worker(exporter, options) as w:
                    RemoteBackend(w, options.spec, 0, "cpu", None).run_job(
                        export_decoder_job, path=path, dataset=options.dataset, data_path=options.data_path
                    )
                with start_worker(BARE_WORKER, options) as w:
                    ort = w.run_job(
                        ort_anatomy_job, reporter, path=path, threads=options.threads, decode_batches=ANATOMY_BATCHES
                    )
        return AnatomyRun(backends=runs, onnxruntime=ort, errors=errors)

    def entries(self, result: AnatomyRun, roofline: Roofline, threads: int | None) -> list[Entry]:
        out = []
        for run in result.backends:
            ident = run.identity
            base = {
                "backend": ident.backend,
                "mode": ident.variant,
                "device": ident.device,
                "versions": ident.versions,
                "threads": threads,
            }
            params = ident.params
            for a in run.result.anatomies:
                key = f"{ident.backend}-{ident.variant}-{a.workload}-b{a.batch}"
                out.append(_entry(self.name, key, params, base, a, roofline))
        if result.onnxruntime is not None:
            base = {"backend": "onnxruntime", "mode": "fp32", "device": "cpu", "versions": {}, "threads": threads}
            params = {"backend": "onnxruntime", "mode": "fp32"}
            for a in result.onnxruntime.anatomies:
                out.append(_entry(self.name, f"onnxruntime-fp32-{a.workload}-b{a.batch}", params, base, a, roofline))
        return out

    def row(self, entry: Entry, ratio: float) -> list[str]:
        return anatomy_row(self.info(entry))

    def entry_notes(self, entries: Sequence[Entry]) -> list[str]:
        return anatomy_notes(entries)


__all__ = ["AnatomyGroup", "AnatomyInfo", "AnatomyRun"]
