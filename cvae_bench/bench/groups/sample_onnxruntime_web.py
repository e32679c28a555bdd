"""sample-onnxruntime-web: the exported decoder in headless Chromium with onnxruntime-web (WASM).

The decoder is exported and verified by the exporting backend's worker, as for sample-onnxruntime; the site
of `cvae-bench web` is written to a temporary folder, served on localhost and opened in Debian's chromium
through Playwright (`serving.browser_bench`); the page times each batch size in rounds itself
(`cvaeBench.timeRounds`, `performance.now()`), so no browser round trip is in the figures. One WASM thread
unless the options ask for more (the page is served cross-origin isolated, so threads are possible).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvae_bench.bench.groups.base import (
    RATE_HEADERS,
    StandaloneGroup,
    fmt_time,
    rate_cells,
    start_worker,
)
from cvae_bench.bench.groups.sample_native import decode_workloads
from cvae_bench.bench.groups.sample_onnxruntime import exporter_for
from cvae_bench.bench.options import BenchOptions
from cvae_bench.bench.records import BackendIdentity, Entry, MeasuredInfo, measured
from cvae_bench.bench.roofline import DECODE, Roofline, Workload
from cvae_bench.bench.timing import Timing
from cvae_bench.core.events import SILENT, Measured, Reporter, Stage
from cvae_bench.core.records import Record
from cvae_bench.runtime.worker import RemoteBackend
from cvae_bench.serving.browser import browser_missing
from cvae_bench.serving.browser_bench import BrowserSamples, browser_sample
from cvae_bench.serving.ort_web import HOW, find_dist


@dataclass(frozen=True)
class WebRun(Record):
    """The group's result: what the page measured and the exporter's record, or why it could not run."""

    samples: BrowserSamples | None
    exporter: dict[str, str] | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class WebSection(Record):
    """bench.json's `cvae_bench.onnxruntime_web`."""

    exporter: dict[str, str] | None
    browser: str | None
    skipped: str | None = None


@dataclass(frozen=True, kw_only=True)
class SampleWebInfo(MeasuredInfo):
    """The `extra_info` of a sample-onnxruntime-web entry (`mode` is the execution provider, 'wasm')."""

    browser: str
    wasm_threads: int
    cross_origin_isolated: bool
    exporter: dict[str, str] | None
    first_call_s: float
    full_floor_s: float | None = None
    fraction_of_full_floor: float | None = None


class SampleOnnxruntimeWeb(StandaloneGroup[WebRun]):
    """sample-onnxruntime-web: see the module docstring."""

    name = "sample-onnxruntime-web"
    by_default = False  # needs a browser or Node, and minutes
    title = "sample-onnxruntime-web: the exported decoder in headless Chromium (onnxruntime-web, WASM)"
    headers = (
        "batch",
        "provider",
        "threads",
        "median / call",
        "IQR",
        *RATE_HEADERS,
    )
    info_type = SampleWebInfo
    needs_data = True  # the export is verified on the validation set
    section = "onnxruntime_web"

    def workloads(self, options: BenchOptions) -> list[Workload]:
        return decode_workloads(options)

    def measure(
        self, options: BenchOptions, backends: Sequence[BackendIdentity], reporter: Reporter = SILENT
    ) -> WebRun:
        missing = browser_missing() or (None if find_dist() else HOW)
        if missing:  # a machine without a browser still benchmarks everything else; the report says why
            reporter.report(Stage(f"sample-onnxruntime-web skipped: {missing}"))
            return WebRun(samples=None, skipped=missing)
        from cvae_bench.bench.groups.sample_onnxruntime import export_decoder_job

        exporter = exporter_for(backends)
        with tempfile.TemporaryDirectory(prefix="cvae-bench-web-") as workdir:
            path = str(Path(workdir) / "decoder.onnx")
            reporter.report(Stage(f"ONNX export ({exporter.name})"))
            with start_worker(exporter, options) as w:
                backend = RemoteBackend(w, options.spec, 0, "cpu", None)
                meta = backend.run_job(
                    export_decoder_job, path=path, dataset=options.dataset, data_path=options.data_path
                )
            reporter.report(Stage("onnxruntime-web in headless Chromium"))
            samples = browser_sample(
                path, list(options.batch_sizes), rounds=options.rounds, min_time_s=options.min_time, threads=1
            )
        for b in samples.batches:
            reporter.report(Measured(f"onnxruntime-web wasm batch {b.batch}", min(b.round_s) / b.iterations))
        return WebRun(samples=samples, exporter={"backend": exporter.name, **meta})

    def entries(self, result: WebRun, roofline: Roofline, threads: int | None) -> list[Entry]:
        s = result.samples
        if s is None:
            return []
        out = []
        for b in s.batches:
            timing = Timing(round_s=b.round_s, iterations=b.iterations, warmup=b.warmup, warmup_s=b.warmup_s)
            floor = roofline.floor(DECODE, b.batch)
            info = SampleWebInfo(
                backend="onnxruntime-web",
                mode=s.ep,
                device="cpu",
                versions={"onnxruntime-web": s.ort_web, "browser": s.browser},
                threads=threads,
                browser=s.browser,
                wasm_threads=s.threads,
                cross_origin_isolated=s.cross_origin_isolated,
                exporter=result.exporter,
                first_call_s=b.first_call_s,
                **measured(timing, b.batch, floor),
            )
            params = {"provider": s.ep, "batch": b.batch}
            out.append(Entry.make(self.name, f"{s.ep}-b{b.batch}", params, timing, info))
        return out

    def row(self, entry: Entry, ratio: float) -> list[str]:
        x: SampleWebInfo = self.info(entry)
        st = entry.stats
        return [
            str(x.batch_size),
            x.mode.upper(),
            str(x.wasm_threads),
            fmt_time(st.median),
            fmt_time(st.iqr),
            *rate_cells(x, ratio),
        ]

    def section_json(self, result: WebRun | None) -> dict[str, Any] | None:
        if result is None:
            return None
        browser = result.samples.browser if result.samples else None
        return WebSection(exporter=result.exporter, browser=browser, skipped=result.skipped).to_json()

    def notes(self, section: dict[str, Any] | None) -> list[str]:
        if not section:
            return []
        web = WebSection.from_json(section)
        return ["", f"Not measured: {web.skipped}"] if web.skipped else []
