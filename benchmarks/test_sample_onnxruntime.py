"""sample-onnxruntime: the exported decoder in onnxruntime (fp32, fp16, int8) on every available provider.

The torch decoder is exported once per session by the harness's exporter (`onnx_export.export_decoder`:
the one interface, verified against torch) in the torch worker, and its fp16/int8 variants made by the
exporter's `onnx_variants`; they are timed in a worker that loads no framework. CUDA runs where
onnxruntime has the CUDA provider and skips, with the reason, where it has not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Settings, WorkerSlot, job_kwargs, record

from cvae_bench.backends import registry
from cvae_bench.bench.jobs import ORT_PRECISIONS, ORT_PROVIDERS, export_decoder_job, sample_onnxruntime_job
from cvae_bench.bench.report import ort_entries
from cvae_bench.bench.runner import BARE_WORKER, ort_providers_job, variants_job
from cvae_bench.models.spec import DEFAULT_SPEC
from cvae_bench.runtime.worker import RemoteBackend, Worker

pytest.importorskip("onnxruntime", reason="sample-onnxruntime needs onnxruntime: pip install 'cvae-bench[onnx]'")


@pytest.fixture(scope="session")
def onnx_models(onnx_dir: Path, slot: WorkerSlot, mnist_path: str) -> dict[str, Any]:
    """The fp32 decoder exported by the torch backend, and its fp16/int8 variants; paths and exporter."""
    info = registry.get("torch")
    if not info.available:
        pytest.skip(f"no ONNX exporter: {info.unavailable_reason()}")
    fp32 = str(onnx_dir / "decoder.fp32.onnx")
    slot.release()

    def export(new_worker: Any) -> dict[str, Any]:
        w = new_worker(info)
        meta = RemoteBackend(w, DEFAULT_SPEC, 0).run_job(export_decoder_job, path=fp32, data_path=mnist_path)
        return {"exporter": {"backend": info.name, **meta}}

    exported = slot.get(("export",), export)
    slot.release()
    return {"fp32": fp32, **exported}


@pytest.fixture
def ort_worker(onnx_models: dict[str, Any], onnx_dir: Path, slot: WorkerSlot) -> dict[str, Any]:
    """A worker with onnxruntime and no framework, the variants written, and its providers."""

    def start(new_worker: Any) -> dict[str, Any]:
        w: Worker = new_worker(BARE_WORKER)

        def job(func: Callable[..., Any], **kwargs: Any) -> Any:
            return w.run_job(func, **kwargs)

        models = job(
            variants_job,
            fp32_path=onnx_models["fp32"],
            out_dir=str(onnx_dir),
            precisions=list(ORT_PRECISIONS),
        )
        return {"job": job, "models": models, "providers": job(ort_providers_job)}

    return slot.get(("onnxruntime",), start)  # type: ignore[no-any-return]


@pytest.mark.parametrize("precision", ORT_PRECISIONS)
@pytest.mark.parametrize(
    "provider",
    [pytest.param("cpu", id="CPU"), pytest.param("cuda", id="CUDA", marks=pytest.mark.gpu)],
)
@pytest.mark.benchmark(group="sample-onnxruntime")
def test_sample_onnxruntime(
    benchmark: Any,
    ort_worker: dict[str, Any],
    onnx_models: dict[str, Any],
    provider: str,
    precision: str,
    batch: int,
    roofline: dict[str, Any],
    bench_settings: Settings,
) -> None:
    name = ORT_PROVIDERS[provider]
    if name not in ort_worker["providers"]:
        pytest.skip(f"{name} is not available in this onnxruntime build ({', '.join(ort_worker['providers'])})")
    res = ort_worker["job"](
        sample_onnxruntime_job,
        models={precision: ort_worker["models"][precision]},
        providers=[name],
        batch_sizes=[batch],
        threads=bench_settings.threads,
        **job_kwargs(benchmark, bench_settings),
    )
    outcome = res["results"][name][precision]
    if "error" in outcome:
        pytest.skip(f"{name} cannot run the {precision} decoder: {outcome['error']}")
    res["exporter"] = onnx_models["exporter"]
    (entry,) = ort_entries(res, roofline, bench_settings.threads)
    record(benchmark, outcome["batches"][batch], entry["extra_info"], bench_settings)
