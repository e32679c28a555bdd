"""sample-onnxruntime: the exported decoder in onnxruntime (fp32, fp16, int8) on every available provider.

The torch decoder is exported once per session by the group's export step (the ONNX wing's exporter: the
one interface, verified against torch) in the torch worker, and its fp16/int8 variants are made in a worker
that loads no framework, where they are timed. CUDA runs where onnxruntime has the CUDA provider and
skips, with the reason, where it has not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Settings, WorkerSlot, record

from cvae_bench.backends import registry
from cvae_bench.bench.groups.base import BARE_WORKER
from cvae_bench.bench.groups.sample_onnxruntime import ORT_PROVIDERS, OrtModels, OrtRun, SampleOnnxruntime
from cvae_bench.bench.roofline import Roofline
from cvae_bench.core.defaults import PRECISIONS
from cvae_bench.models.spec import DEFAULT_SPEC
from cvae_bench.runtime.worker import RemoteBackend, Worker

pytest.importorskip("onnxruntime", reason="sample-onnxruntime needs onnxruntime: pip install 'cvae-bench[onnx]'")

GROUP = SampleOnnxruntime()


@pytest.fixture(scope="session")
def exported(onnx_dir: Path, slot: WorkerSlot, mnist_path: str, bench_settings: Settings) -> dict[str, str]:
    """The fp32 decoder exported by the torch backend; the exporter's record (with "path")."""
    info = registry.get("torch")
    if not info.available:
        pytest.skip(f"no ONNX exporter: {info.unavailable_reason()}")
    fp32 = str(onnx_dir / "decoder.fp32.onnx")
    slot.release()

    def export(new_worker: Any) -> dict[str, str]:
        backend = RemoteBackend(new_worker(info), DEFAULT_SPEC, 0)
        return GROUP.export(backend, fp32, bench_settings.options(data_path=mnist_path))

    exporter: dict[str, str] = slot.get(("export",), export)
    slot.release()
    return {**exporter, "path": fp32}


@pytest.fixture
def ort_worker(exported: dict[str, str], onnx_dir: Path, slot: WorkerSlot, bench_settings: Settings) -> Any:
    """A worker with onnxruntime and no framework, the variants written, and its providers."""

    def start(new_worker: Any) -> tuple[Worker, OrtModels]:
        w: Worker = new_worker(BARE_WORKER)
        return w, GROUP.prepare(w, exported["path"], str(onnx_dir), bench_settings.options())

    return slot.get(("onnxruntime",), start)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(
    "provider",
    [pytest.param("cpu", id="CPU"), pytest.param("cuda", id="CUDA", marks=pytest.mark.gpu)],
)
@pytest.mark.benchmark(group=GROUP.name)
def test_sample_onnxruntime(
    benchmark: Any,
    ort_worker: tuple[Worker, OrtModels],
    exported: dict[str, str],
    provider: str,
    precision: str,
    batch: int,
    roofline: Roofline,
    bench_settings: Settings,
) -> None:
    worker, prepared = ort_worker
    name = ORT_PROVIDERS[provider]
    if name not in prepared.providers:
        pytest.skip(f"{name} is not available in this onnxruntime build ({', '.join(prepared.providers)})")
    options = bench_settings.options(benchmark, batch_sizes=(batch,))
    models = {precision: prepared.models[precision]}
    samples = GROUP.sample(worker, models, [name], options, lambda event: None)
    session = samples.results[name][precision]
    if session.error is not None:
        pytest.skip(f"{name} cannot run the {precision} decoder: {session.error}")
    exporter = {k: v for k, v in exported.items() if k != "path"}
    (entry,) = GROUP.entries(OrtRun(samples=samples, exporter=exporter), roofline, bench_settings.threads)
    record(benchmark, session.batches[batch].timing, entry, bench_settings)
