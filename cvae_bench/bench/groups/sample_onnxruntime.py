"""sample-onnxruntime: the exported decoder (fp32, and fp16/int8 variants) in onnxruntime, in a bare worker.

The decoder is exported, normalised to the one interface and verified against the framework by the ONNX
wing's exporter (`onnx.export.export_decoder`) in the exporting backend's worker (torch when available);
its variants are made by `onnx.variants`. They are timed in a worker that loads no framework, with
sessions from `onnx.sessions.session_options` and IO binding to pre-allocated host buffers, so a call is
`run_with_iobinding` alone: no per-call allocation or name lookup, which matters at batch 1.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cvae_bench.backends import registry
from cvae_bench.backends.registry import BackendInfo
from cvae_bench.bench.fairness import AuditEntry
from cvae_bench.bench.groups.base import (
    BARE_WORKER,
    Reference,
    StandaloneGroup,
    decoder_inputs,
    fmt_time,
    rate_cells,
    start_worker,
)
from cvae_bench.bench.groups.sample_native import SampleNative, decode_workloads, plan_key
from cvae_bench.bench.memory import with_memory
from cvae_bench.bench.options import BenchOptions
from cvae_bench.bench.records import BackendIdentity, CallTiming, Entry, MeasuredInfo, measured
from cvae_bench.bench.roofline import DECODE, Roofline, Workload
from cvae_bench.bench.rounds import Plan, Timed
from cvae_bench.bench.timing import time_rounds
from cvae_bench.core.defaults import PRECISIONS
from cvae_bench.core.errors import BackendUnavailableError
from cvae_bench.core.events import SILENT, Reporter, Stage
from cvae_bench.core.memory import MemoryFigures
from cvae_bench.core.records import Record
from cvae_bench.core.versions import dist_version
from cvae_bench.runtime.worker import RemoteBackend, Worker

#: Which onnxruntime providers map to which device kind.
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
#: Short provider names for entry names and tables.
PROVIDER_SHORT = {"CPUExecutionProvider": "CPU", "CUDAExecutionProvider": "CUDA"}
#: Untimed calls before calibration.
ORT_WARMUP = 10


# -- records ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrtSessionSettings(Record):
    """The session settings in force (from `onnx.sessions.session_settings`), and IO binding."""

    intra_op_threads: int | None
    inter_op_threads: int | None
    execution_mode: str
    graph_optimization_level: str
    io_binding: bool = True


@dataclass(frozen=True)
class OrtSession(Record):
    """One model on one provider: the session's build time and each batch size, or why it could not run."""

    session_s: float | None = None
    batches: dict[int, CallTiming] = field(default_factory=dict)
    error: str | None = None
    #: The worker's memory while each batch size was timed (`core.memory`; one process, so no range).
    memory: dict[int, MemoryFigures] = field(default_factory=dict)


@dataclass(frozen=True)
class OrtSamples(Record):
    """What `sample_onnxruntime_job` returns: {provider: {precision: session}}, the version and settings."""

    results: dict[str, dict[str, OrtSession]]
    onnxruntime: str
    session_options: OrtSessionSettings


@dataclass(frozen=True)
class OrtRun(Record):
    """The group's result: the samples, the worker's audit, providers skipped, and the exporter's metadata."""

    samples: OrtSamples
    audit: dict[str, Any] = field(default_factory=dict)
    skipped_providers: dict[str, str] = field(default_factory=dict)
    exporter: dict[str, str] | None = None

    @property
    def unsupported(self) -> dict[str, str]:
        """'CPU-fp16' → why that session could not run."""
        return {
            f"{PROVIDER_SHORT.get(p, p)}-{precision}": s.error
            for p, per in self.samples.results.items()
            for precision, s in per.items()
            if s.error is not None
        }


@dataclass(frozen=True)
class OnnxSection(Record):
    """bench.json's `cvae_bench.onnx`."""

    exporter: dict[str, str] | None
    session_options: OrtSessionSettings | None
    unsupported: dict[str, str] = field(default_factory=dict)
    skipped_providers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SampleOrtInfo(MeasuredInfo):
    """The `extra_info` of a sample-onnxruntime entry (`mode` is the precision)."""

    provider: str
    session_options: OrtSessionSettings
    exporter: dict[str, str] | None
    session_s: float | None
    first_call_s: float
    full_floor_s: float | None = None
    fraction_of_full_floor: float | None = None


@dataclass(frozen=True)
class OrtModels(Record):
    """The decoder files by precision, and the providers this onnxruntime build has."""

    models: dict[str, str]
    providers: list[str]


# -- worker jobs --------------------------------------------------------------------------------------------
def _nonzero_biases(backend: Any, seed: int) -> None:
    """Small random biases: an exporter folds away the zero biases of a fresh model, a trained one has none."""
    weights = backend.get_weights()
    rng = np.random.default_rng(seed)
    for name, value in weights.items():
        if name.endswith(".bias"):
            weights[name] = rng.normal(0.0, 0.05, value.shape).astype(np.float32)
    backend.set_weights(weights)


def export_decoder_job(
    backend: Any,
    emit: Any,
    *,
    path: str,
    weights: dict[str, Any] | None = None,
    dataset: str = "mnist",
    data_path: str | None = None,
) -> dict[str, str]:
    """Worker job, next to the exporting backend: its decoder exported and verified; returns the metadata.

    Uses `weights` when given, else the backend's initial weights with non-zero biases.
    """
    from cvae_bench.onnx.export import export_decoder

    if weights is not None:
        backend.set_weights(weights)
    else:
        _nonzero_biases(backend, seed=1)
    meta = export_decoder(backend, path, dataset=dataset, data_path=data_path)
    return {str(k): str(v) for k, v in meta.items()}


def prepare_job(backend: Any, emit: Any, *, fp32_path: str, out_dir: str, precisions: list[str]) -> OrtModels:
    """Worker job (no backend): the precisions of the fp32 decoder written next to it, and the providers.

    The variants are the exporter's (`onnx.variants.make_variant`): fp16 weights and arithmetic with
    float32 inputs and output; int8 per-channel weights with activations quantised per call.
    """
    import onnx
    import onnxruntime

    from cvae_bench.onnx.variants import make_variant

    model = onnx.load(fp32_path)
    out: dict[str, str] = {}
    for p in precisions:
        if p not in PRECISIONS:
            raise ValueError(f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")
        if p == "fp32":
            out[p] = fp32_path
            continue
        path = str(Path(out_dir) / f"decoder.{p}.onnx")
        onnx.save(make_variant(model, p), path)
        out[p] = path
    return OrtModels(models=out, providers=list(onnxruntime.get_available_providers()))


def ort_audit_job(backend: Any, emit: Any) -> dict[str, Any]:
    """Worker job: the fairness audit of the onnxruntime worker."""
    from cvae_bench.runtime.threads import process_audit

    return process_audit()


def bound_call(
    sess: Any, spec: Any, batch: int, provider: str
) -> tuple[Callable[[], Any], Callable[[], Any], float, np.ndarray]:
    """One decoder call of `sess` at `batch`, IO-bound to host buffers: (call, sync, first call's seconds, the
    output buffer, which the caller keeps alive while it calls).

    Inputs are bound once and the output goes into a pre-allocated host array, so a call is
    `run_with_iobinding` alone: no per-call allocation or name lookup, which matters at batch 1.
    """
    z, y = decoder_inputs(spec, batch)
    out = np.empty((batch, *spec.image_shape), np.float32)
    io = sess.io_binding()
    io.bind_cpu_input("z", z)
    io.bind_cpu_input("label", y)
    io.bind_output("x_mean", "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
    t0 = time.perf_counter()
    sess.run_with_iobinding(io)
    first = time.perf_counter() - t0
    wait = io.synchronize_outputs if provider == ORT_PROVIDERS["cuda"] else (lambda: None)

    def sync() -> None:
        # The round ends on the work's own result: one value of the output buffer is read on the host.
        wait()
        float(out.reshape(-1)[-1])

    return functools.partial(sess.run_with_iobinding, io), sync, first, out


def reference_setup(backend: Any, emit: Any, *, path: str, batch: int, threads: int | None) -> tuple[Timed, float]:
    """Rounds-engine setup in a bare worker: the fp32 decoder on onnxruntime's CPU provider at `batch`, bound
    as the group binds it, for the sweeps of sample-native (its first call timed apart)."""
    from cvae_bench.models.spec import DEFAULT_SPEC
    from cvae_bench.onnx.sessions import make_session

    sess = make_session(path, [ORT_PROVIDERS["cpu"]], threads)
    spec = DEFAULT_SPEC if backend is None else backend.spec
    run, sync, first, out = bound_call(sess, spec, batch, ORT_PROVIDERS["cpu"])
    return Timed(fn=run, warmup=ORT_WARMUP, sync=sync, keep=out), first


def sample_onnxruntime_job(
    backend: Any,
    emit: Any,
    *,
    models: dict[str, str],
    providers: list[str],
    batch_sizes: list[int],
    threads: int | None,
    rounds: int = 15,
    min_time: float = 0.1,
    warmup: int = ORT_WARMUP,
) -> OrtSamples:
    """Worker job (no backend needed): time each ONNX model on each provider at each batch size.

    Inputs are bound once per batch size (`io_binding` with host arrays, output into a pre-allocated host
    array). A provider that cannot run a precision is recorded with the reason, and the others go on.
    """
    import onnxruntime as ort

    from cvae_bench.models.spec import DEFAULT_SPEC
    from cvae_bench.onnx.sessions import make_session, session_settings
    from cvae_bench.runtime import memory

    spec = backend.spec if backend is not None else DEFAULT_SPEC
    results: dict[str, dict[str, OrtSession]] = {}
    memory.mark(memory.AFTER_IMPORT)
    for provider in providers:
        results[provider] = {}
        for precision, path in models.items():
            t0 = time.perf_counter()
            try:
                sess = make_session(path, [provider], threads)
            except Exception as exc:  # a provider that lacks a kernel for this precision: report, go on
                results[provider][precision] = OrtSession(
                    error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                )
                continue
            session_s = time.perf_counter() - t0
            batches: dict[int, CallTiming] = {}
            figures: dict[int, MemoryFigures] = {}
            built = memory.rss()
            for b in batch_sizes:
                run, sync, first, _out = bound_call(sess, spec, b, provider)  # _out: alive while it is timed
                with memory.track(f"ort/{provider}/{precision}/b{b}"):
                    timing = time_rounds(run, rounds=rounds, min_time=min_time, warmup=warmup, sync=sync)
                batches[b] = CallTiming(timing=timing, first_call_s=first)
                found = memory.phase_figures(built)
                if found is not None:
                    figures[b] = found
                emit(
                    {"type": "bench", "what": f"ort {provider} {precision} batch {b}", "median_s": timing.median_call()}
                )
            results[provider][precision] = OrtSession(session_s=session_s, batches=batches, memory=figures)
    settings = session_settings(threads)
    return OrtSamples(
        results=results,
        onnxruntime=ort.__version__,
        session_options=OrtSessionSettings(
            intra_op_threads=settings.intra_op_threads,
            inter_op_threads=settings.inter_op_threads,
            execution_mode=settings.execution_mode,
            graph_optimization_level=settings.graph_optimization_level,
        ),
    )


# -- the group ----------------------------------------------------------------------------------------------
def exporter_for(backends: Sequence[BackendIdentity]) -> BackendInfo:
    """The backend whose decoder is exported: torch when available, else the first measured that exports.

    Raises:
        BackendUnavailableError: no backend that exports ONNX is available.
    """
    torch = registry.all_backends().get("torch")
    if torch is not None and torch.available:
        return torch
    for identity in backends:
        if identity.onnx_export:
            return registry.get(identity.backend)
    raise BackendUnavailableError("sample-onnxruntime needs a backend that exports ONNX (torch); none is available")


class SampleOnnxruntime(StandaloneGroup[OrtRun]):
    """sample-onnxruntime: see the module docstring."""

    name = "sample-onnxruntime"
    title = "sample-onnxruntime: the exported decoder in onnxruntime (IO binding)"
    headers = (
        "batch",
        "provider",
        "precision",
        "median / call",
        "IQR",
        "images/s",
        "GFLOP/s",
        "of floor",
        "of full floor",
        "vs fastest",
        "session",
    )
    info_type = SampleOrtInfo
    needs_data = True  # the export is verified on the validation set
    section = "onnx"

    def workloads(self, options: BenchOptions) -> list[Workload]:
        return decode_workloads(options)

    def references(
        self, options: BenchOptions, group_names: set[str], stack: ExitStack, reporter: Reporter = SILENT
    ) -> list[Reference]:
        """onnxruntime's fp32 CPU decoder as a row of sample-native, timed in the native decoders' sweeps.

        This group's own table times every precision and provider in a worker of its own, after the backends'
        sweeps, so a native decoder against it is an unpaired ratio, which on a drifting machine moves by tens
        of percent from run to run. The reference row gives sample-native a paired verdict against the
        deployed decoder. Only on the CPU (a GPU-resident native decoder against a CPU session would compare
        devices) and only with an exporter that needs no measured backend (torch; exported here as `measure`
        exports it).
        """
        if SampleNative.name not in group_names or options.device != "cpu":
            return []
        try:
            exporter = exporter_for(())
        except BackendUnavailableError:
            return []
        reporter.report(Stage("onnxruntime reference for sample-native (export)"))
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="cvae-bench-reference-"))
        path = str(Path(workdir) / "decoder.fp32.onnx")
        t0 = time.perf_counter()
        with start_worker(exporter, options) as w:
            exported = self.export(RemoteBackend(w, options.spec, 0, "cpu", None), path, options)
        host = stack.enter_context(start_worker(BARE_WORKER, options))
        identity = BackendIdentity(
            backend="onnxruntime",
            mode="fp32",
            device="cpu",
            versions={"onnxruntime": dist_version("onnxruntime")},
            build_s=time.perf_counter() - t0,
            notes={"fp32": f"reference: the {exported['backend']} decoder exported to ONNX, CPU provider, IO binding"},
        )
        plans = [
            Plan(
                plan_key(b),
                SampleNative.name,
                b,
                reference_setup,
                {"path": path, "batch": b, "threads": options.threads},
                options.min_time,
            )
            for b in options.batch_sizes
        ]
        return [Reference(identity, host, plans)]

    # The steps of `measure`, which the pytest suite also runs one by one.
    def export(self, backend: RemoteBackend, path: str, options: BenchOptions) -> dict[str, str]:
        """The decoder of `backend` exported to `path`; returns the exporter's record (backend + metadata)."""
        meta = backend.run_job(export_decoder_job, path=path, dataset=options.dataset, data_path=options.data_path)
        return {"backend": backend.name, **meta}

    def prepare(self, worker: Worker, fp32_path: str, out_dir: str, options: BenchOptions) -> OrtModels:
        """The variants written into `out_dir`, and the available providers, in the bare `worker`."""
        return worker.run_job(prepare_job, fp32_path=fp32_path, out_dir=out_dir, precisions=list(options.precisions))

    def sample(
        self, worker: Worker, models: dict[str, str], providers: list[str], options: BenchOptions, reporter: Reporter
    ) -> OrtSamples:
        """Every model on every provider at every batch size, in the bare `worker`."""
        return worker.run_job(
            sample_onnxruntime_job,
            reporter,
            models=models,
            providers=providers,
            batch_sizes=list(options.batch_sizes),
            threads=options.threads,
            rounds=options.rounds,
            min_time=options.min_time,
        )

    def measure(
        self, options: BenchOptions, backends: Sequence[BackendIdentity], reporter: Reporter = SILENT
    ) -> OrtRun:
        exporter = exporter_for(backends)
        with tempfile.TemporaryDirectory(prefix="cvae-bench-onnx-") as workdir:
            fp32 = str(Path(workdir) / "decoder.fp32.onnx")
            reporter.report(Stage(f"ONNX export ({exporter.name})"))
            with start_worker(exporter, options) as w:
                exported = self.export(RemoteBackend(w, options.spec, 0, "cpu", None), fp32, options)
            reporter.report(Stage("onnxruntime"))
            with start_worker(BARE_WORKER, options) as w:
                prepared = self.prepare(w, fp32, workdir, options)
                wanted = [ORT_PROVIDERS[d] for d in options.ort_devices]
                providers = [p for p in wanted if p in prepared.providers]
                samples = self.sample(w, prepared.models, providers, options, reporter)
                audit = w.run_job(ort_audit_job)
        skipped = {p: "not available in this onnxruntime build" for p in wanted if p not in prepared.providers}
        return OrtRun(samples=samples, audit=audit, skipped_providers=skipped, exporter=exported)

    def entries(self, result: OrtRun, roofline: Roofline, threads: int | None) -> list[Entry]:
        out = []
        samples = result.samples
        for provider, per_precision in samples.results.items():
            short = PROVIDER_SHORT.get(provider, provider)
            for precision, session in per_precision.items():
                for b, call in sorted(session.batches.items()):
                    floor = roofline.floor(DECODE, b)
                    info = SampleOrtInfo(
                        backend="onnxruntime",
                        mode=precision,
                        provider=provider,
                        device="cuda" if provider == ORT_PROVIDERS["cuda"] else "cpu",
                        versions={"onnxruntime": samples.onnxruntime},
                        threads=threads,
                        session_options=samples.session_options,
                        exporter=result.exporter,
                        session_s=session.session_s,
                        first_call_s=call.first_call_s,
                        **measured(call.timing, b, floor),
                    )
                    params = {"provider": short, "precision": precision, "batch": b}
                    entry = Entry.make(self.name, f"{short}-{precision}-b{b}", params, call.timing, info)
                    out.append(with_memory(entry, session.memory.get(b)))
        return out

    def row(self, entry: Entry, ratio: float) -> list[str]:
        x: SampleOrtInfo = self.info(entry)
        s = entry.stats
        return [
            str(x.batch_size),
            PROVIDER_SHORT.get(x.provider, x.provider),
            x.mode,
            fmt_time(s.median),
            fmt_time(s.iqr),
            *rate_cells(x, ratio),
            fmt_time(x.session_s),
        ]

    def audit_entries(self, result: OrtRun, threads: int | None) -> list[AuditEntry]:
        so = result.samples.session_options
        audit = {
            **result.audit,
            "ort": {
                "intra_op_threads": so.intra_op_threads,
                "inter_op_threads": so.inter_op_threads,
                "precisions": sorted({p for per in result.samples.results.values() for p in per}),
            },
        }
        providers = ", ".join(PROVIDER_SHORT.get(p, p) for p in result.samples.results)
        return [
            AuditEntry(
                label=f"onnxruntime ({providers})",
                threads=threads,
                audit=audit,
                compile=f"{so.graph_optimization_level}, {so.execution_mode}; session build reported apart",
                sync="run_with_iobinding returns with the output in a host array",
                data_on_device="inputs bound once per batch size (host); IO binding, pre-allocated output",
                warmup=f"{ORT_WARMUP} calls + calibration rounds excluded",
            )
        ]

    def section_json(self, result: OrtRun | None) -> dict[str, Any] | None:
        if result is None:
            return None
        return OnnxSection(
            exporter=result.exporter,
            session_options=result.samples.session_options,
            unsupported=result.unsupported,
            skipped_providers=result.skipped_providers,
        ).to_json()

    def notes(self, section: dict[str, Any] | None) -> list[str]:
        if not section:
            return []
        onnx = OnnxSection.from_json(section)
        missing = {**onnx.unsupported, **onnx.skipped_providers}
        return ["", "Not measured: " + "; ".join(f"{k}: {v}" for k, v in missing.items())] if missing else []
