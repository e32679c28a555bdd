"""`cvae-bench bench`: every measurement in an isolated worker, one at a time, gathered into one document."""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata as md
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cvae_bench import __version__
from cvae_bench.backends import registry
from cvae_bench.backends.registry import BackendInfo
from cvae_bench.bench.jobs import (
    DEFAULT_BATCH_SIZES,
    ORT_PRECISIONS,
    ORT_PROVIDERS,
    export_decoder_job,
    sample_native_job,
    sample_onnxruntime_job,
    train_step_job,
)
from cvae_bench.bench.roofline import CEILING_LIBRARIES, ceiling_job, needed_shapes, summarize_roofline
from cvae_bench.bench.timing import per_call, summarize
from cvae_bench.defaults import DEFAULT_IDLE_TIMEOUT
from cvae_bench.errors import BackendUnavailableError, CvaeBenchError, WorkerError
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec
from cvae_bench.runtime.threads import audit_job, available_cores, thread_env
from cvae_bench.runtime.worker import RemoteBackend, Worker

GROUPS = ("train-step", "sample-native", "sample-onnxruntime")
Event = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class BenchOptions:
    """What `cvae-bench bench` measures and how long.

    Attributes:
        groups: which of GROUPS to run.
        device: "cpu" or "cuda" for the backends (onnxruntime always tries CPU, and CUDA where present).
        threads: threads for every framework (default: the cores this process may use).
        rounds: timed rounds per measurement.
        min_time: seconds a round lasts at least (sets the calls per round).
        warmup: untimed training steps before calibration (decoders get 3, onnxruntime 10).
        batch_sizes: sampling batch sizes.
        precisions: onnxruntime model precisions.
        ort_devices: onnxruntime providers to try, by device kind.
        dataset, data_path, train_subset: the training data of the train-step group.
        ceiling_rounds, ceiling_min_time: rounds of the matmul ceiling.
    """

    groups: tuple[str, ...] = GROUPS
    device: str = "cpu"
    threads: int = field(default_factory=available_cores)
    rounds: int = 15
    min_time: float = 0.1
    warmup: int = 20
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    precisions: tuple[str, ...] = ORT_PRECISIONS
    ort_devices: tuple[str, ...] = ("cpu", "cuda")
    dataset: str = "mnist"
    data_path: str | None = None
    train_subset: int | None = None
    ceiling_rounds: int = 9
    ceiling_min_time: float = 0.01
    spec: ModelSpec = DEFAULT_SPEC
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (the spec is recorded elsewhere)."""
        d = asdict(self)
        d.pop("spec")
        return d


@dataclass(frozen=True)
class Target:
    """One backend in one mode (None: every mode it declares, resolved when its worker starts)."""

    info: BackendInfo
    mode: str | None

    @property
    def label(self) -> str:
        return f"{self.info.name}:{self.mode}" if self.mode else self.info.name


def parse_targets(spec: str) -> list[Target]:
    """Backends to benchmark: 'NAME' (its default mode), 'NAME:MODE', 'NAME:all' (every mode), comma lists,
    or 'all' (every available backend in every mode).

    Raises:
        UnknownBackendError: an unknown name (the message lists the known ones).
        BackendUnavailableError: a named backend whose framework is missing.
    """
    if spec.strip() == "all":
        return [Target(info, "all") for info in registry.resolve("all")]
    out = []
    for item in [p.strip() for p in spec.split(",") if p.strip()]:
        name, _, mode = item.partition(":")
        info = registry.get(name)
        if not info.available:
            raise BackendUnavailableError(info.unavailable_reason())
        out.append(Target(info, mode or None))
    if not out:
        raise CvaeBenchError(f"no backend named in {spec!r}")
    return out


# -- machine state ----------------------------------------------------------------------------------------
def _cpu_times() -> dict[int, tuple[str, int]]:
    out = {}
    for d in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        out[int(d.name)] = (name, int(fields[11]) + int(fields[12]))
    return out


def machine_load(interval: float = 0.5) -> dict[str, Any]:
    """Load averages and the processes using more than 20 % of a core over `interval` seconds.

    Timings on a small machine are distorted by anything else running; this is recorded beside them.
    """
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    before = _cpu_times()
    time.sleep(interval)
    after = _cpu_times()
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = []
    for pid, (name, t1) in after.items():
        if pid in before and pid != os.getpid():
            share = (t1 - before[pid][1]) / tick / interval
            if share > 0.2:
                busy.append({"pid": pid, "name": name, "cpu": round(share, 2)})
    return {"loadavg": load, "cores": os.cpu_count(), "busy": sorted(busy, key=lambda b: -b["cpu"])}


def machine_info(threads: int) -> dict[str, Any]:
    """The machine and versions, in pytest-benchmark's `machine_info` shape plus our own keys."""
    from cvae_bench.training.jobs import environment

    versions = {}
    for info in registry.all_backends().values():
        versions.update({k: v for k, v in info.versions().items() if v != "-"})
    for extra in ("numpy", "onnxruntime", "onnx"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions.setdefault(extra, md.version(extra))
    return {
        "node": platform.node(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "system": platform.system(),
        "release": platform.release(),
        "cpu": {"brand_raw": environment()["cpu"], "count": os.cpu_count()},
        "cvae_bench": __version__,
        "threads": threads,
        "versions": versions,
        "environment": environment(),
    }


# -- the runs ---------------------------------------------------------------------------------------------
def _worker(info: BackendInfo, options: BenchOptions) -> Worker:
    return Worker(info, idle_timeout=options.idle_timeout, extra_env=thread_env(options.threads))


#: A registry entry for workers that load no backend (matmul ceiling, onnxruntime).
BARE_WORKER = BackendInfo(name="bench", target="", requires=())


def measure_ceiling(options: BenchOptions, on_event: Event) -> dict[str, Any]:
    """The matmul ceiling at every shape the chosen groups need, in a worker of its own."""
    sample = options.batch_sizes if {"sample-native", "sample-onnxruntime"} & set(options.groups) else ()
    train = options.spec.batch_size if "train-step" in options.groups else None
    shapes = needed_shapes(options.spec, train, sample)
    on_event({"type": "stage", "what": f"matmul ceiling ({len(shapes)} shapes)"})
    ceiling: dict[str, Any] = {"libraries": {}, "shapes": {}, "medians": {}}
    # One worker per library: a pool of spinning threads left by one (OpenBLAS, onnxruntime) slows the
    # next one's (torch's OpenMP) by orders of magnitude on a small machine.
    for library in CEILING_LIBRARIES:
        with _worker(BARE_WORKER, options) as w:
            part = w.run_job(
                ceiling_job,
                on_event,
                shapes=shapes,
                rounds=options.ceiling_rounds,
                min_time=options.ceiling_min_time,
                threads=options.threads,
                libraries=[library],
            )
        ceiling["libraries"].update(part["libraries"])
        for key in ("shapes", "medians"):
            for shape, per_lib in part[key].items():
                ceiling[key].setdefault(shape, {}).update(per_lib)
    return summarize_roofline(options.spec, ceiling, train, sample)


def backend_record(backend: RemoteBackend) -> dict[str, Any]:
    """What every benchmark record says about the backend that produced it."""
    caps = backend.info["capabilities"]
    return {
        "backend": backend.name,
        "mode": backend.mode,
        "device": backend.device,
        "versions": backend.info["versions"],
        "build_s": backend.info["build_s"],
        "notes": caps.get("notes", {}),
        "onnx_export": caps.get("onnx_export", False),
    }


def _measure_backend(
    info: BackendInfo, mode: str | None, options: BenchOptions, on_event: Event
) -> tuple[dict[str, Any], list[str]]:
    """Audit, train-step and sample-native of one backend in one mode, in a fresh worker.

    Returns:
        (the measurements, every mode the backend declares).
    """
    with _worker(info, options) as w:
        backend = RemoteBackend(w, options.spec, 0, options.device, mode)
        label = f"{info.name}:{backend.mode}"
        on_event({"type": "stage", "what": label})
        rec = backend_record(backend)
        if "train-step" in options.groups:
            rec["train_step"] = backend.run_job(
                train_step_job,
                on_event,
                rounds=options.rounds,
                min_time=options.min_time,
                warmup=options.warmup,
                dataset=options.dataset,
                data_path=options.data_path,
                train_subset=options.train_subset,
            )
        if "sample-native" in options.groups:
            rec["sample_native"] = backend.run_job(
                sample_native_job,
                on_event,
                batch_sizes=list(options.batch_sizes),
                rounds=options.rounds,
                min_time=options.min_time,
            )
        rec["audit"] = backend.run_job(audit_job)
        modes = list(backend.info["capabilities"]["modes"])
    return rec, modes


def measure_onnxruntime(exporter: BackendInfo, options: BenchOptions, workdir: str, on_event: Event) -> dict[str, Any]:
    """Export the decoder in `exporter`'s worker, then time it in onnxruntime in a worker of its own."""
    fp32 = str(Path(workdir) / "decoder.fp32.onnx")
    on_event({"type": "stage", "what": f"ONNX export ({exporter.name})"})
    with _worker(exporter, options) as w:
        backend = RemoteBackend(w, options.spec, 0, "cpu", None)
        export_meta = backend.run_job(
            export_decoder_job,
            path=fp32,
            dataset=options.dataset,
            data_path=options.data_path,
        )
    on_event({"type": "stage", "what": "onnxruntime"})
    with _worker(BARE_WORKER, options) as w:

        def job(func: Callable[..., Any], **kwargs: Any) -> Any:
            return w.run_job(func, on_event, **kwargs)

        models = job(
            variants_job,
            fp32_path=fp32,
            out_dir=workdir,
            precisions=list(options.precisions),
        )
        available = job(ort_providers_job)
        providers = [ORT_PROVIDERS[d] for d in options.ort_devices if ORT_PROVIDERS[d] in available]
        res = job(
            sample_onnxruntime_job,
            models=models,
            providers=providers,
            batch_sizes=list(options.batch_sizes),
            threads=options.threads,
            rounds=options.rounds,
            min_time=options.min_time,
        )
        res["audit"] = job(ort_audit_job)
    res["skipped_providers"] = {
        ORT_PROVIDERS[d]: "not available in this onnxruntime build"
        for d in options.ort_devices
        if ORT_PROVIDERS[d] not in available
    }
    res["exporter"] = {"backend": exporter.name, **export_meta}
    return dict(res)


def variants_job(backend: Any, emit: Any, *, fp32_path: str, out_dir: str, precisions: list[str]) -> dict[str, str]:
    """Worker job: the fp16/int8 variants of the exported decoder."""
    from cvae_bench.bench.jobs import make_variants

    return make_variants(fp32_path, out_dir, precisions)


def ort_providers_job(backend: Any, emit: Any) -> list[str]:
    """Worker job: onnxruntime's available execution providers."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def ort_audit_job(backend: Any, emit: Any) -> dict[str, Any]:
    """Worker job: the fairness audit of the onnxruntime worker."""
    from cvae_bench.runtime.threads import process_audit

    return process_audit()


def _exporter(records: Sequence[dict[str, Any]]) -> BackendInfo:
    """The backend whose decoder is exported: torch when available, else the first measured that exports."""
    torch = registry.all_backends().get("torch")
    if torch is not None and torch.available:
        return torch
    for rec in records:
        if rec.get("onnx_export"):
            return registry.get(rec["backend"])
    raise BackendUnavailableError("sample-onnxruntime needs a backend that exports ONNX (torch); none is available")


def run_bench(targets: Sequence[Target], options: BenchOptions, on_event: Event) -> dict[str, Any]:
    """Measure every target, one worker at a time, and the roofline; returns the raw measurements.

    `bench_report.build_document` turns them into the results document.
    """
    unknown = set(options.groups) - set(GROUPS)
    if unknown:
        raise CvaeBenchError(f"unknown group(s) {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    load_before = machine_load()
    roofline = measure_ceiling(options, on_event)
    records: list[dict[str, Any]] = []
    if {"train-step", "sample-native"} & set(options.groups):
        for target in targets:
            want_all = target.mode == "all"
            rec, modes = _measure_backend(target.info, None if want_all else target.mode, options, on_event)
            records.append(rec)
            if want_all:
                for mode in modes:
                    if mode != rec["mode"]:
                        records.append(_measure_backend(target.info, mode, options, on_event)[0])
    ort = None
    if "sample-onnxruntime" in options.groups:
        with tempfile.TemporaryDirectory(prefix="cvae-bench-onnx-") as tmp:
            ort = measure_onnxruntime(_exporter(records), options, tmp, on_event)
    return {
        "started": started,
        "options": options.to_dict(),
        "spec": options.spec.to_dict(),
        "machine_info": machine_info(options.threads),
        "load": {"before": load_before, "after": machine_load()},
        "roofline": roofline,
        "backends": records,
        "onnxruntime": ort,
    }


# -- time to target -------------------------------------------------------------------------------------
def load_runs(path: str | Path) -> list[dict[str, Any]]:
    """Time-to-target rows from `cvae-bench run` output: a comparison.json, a result.json, or a folder of them.

    Raises:
        CvaeBenchError: nothing readable at `path`.
    """
    from cvae_bench.training.compare import summarize as summarize_runs

    p = Path(path)
    if p.is_dir():
        if (p / "comparison.json").is_file():
            p = p / "comparison.json"
        else:
            results = [json.loads(f.read_text()) for f in sorted(p.rglob("result.json"))]
            if not results:
                raise CvaeBenchError(f"no comparison.json or result.json under {p}")
            return summarize_runs(results)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise CvaeBenchError(f"cannot read runs from {p}: {exc}") from exc
    if "rows" in data:
        return list(data["rows"])
    if "reached" in data:
        return summarize_runs([data])
    raise CvaeBenchError(f"{p} is neither a comparison.json nor a result.json of cvae-bench run")


def with_runs(
    pairs: Sequence[tuple[str, str]],
    repeats: int,
    options: BenchOptions,
    folder: Path,
    on_event: Event,
    command: str,
) -> list[dict[str, Any]]:
    """Train every (backend, mode) `repeats` times to the default target, in sequence; returns the rows."""
    from cvae_bench.training.compare import write_comparison
    from cvae_bench.training.loop import TrainConfig
    from cvae_bench.training.run import RunOptions, run_backend

    base = RunOptions(
        device=options.device,
        dataset=options.dataset,
        data_path=options.data_path,
        threads=options.threads,
        idle_timeout=options.idle_timeout,
    )
    results = []
    for name, mode in pairs:
        for seed in range(repeats):
            on_event({"type": "stage", "what": f"train to target: {name}:{mode} seed {seed}"})
            run_opts = replace(base, mode=mode, config=TrainConfig(seed=seed))
            try:
                results.append(run_backend(registry.get(name), run_opts, folder / f"{name}-{mode}-seed{seed}"))
            except WorkerError as exc:  # a run that crashes is reported; the others go on
                on_event({"type": "stage", "what": f"error: {name}:{mode} seed {seed} failed: {exc}"})
    return write_comparison(folder, results, command) if results else []


def per_call_stats(timing: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark statistics of one timing, per call, with its raw data and iterations."""
    data = per_call(timing["round_s"], timing["iterations"])
    return {**summarize(data), "data": data, "iterations": timing["iterations"]}
