"""`cvae-bench loadtest`: the decoder through `deploy.OnnxDecoder` under MLPerf's three load scenarios.

For every precision, provider and threading choice: single-stream latency, the server scenario's highest
rate within the latency bound (searched), and offline throughput at a few batch sizes. The load generator
is MLPerf LoadGen where it imports, else the built-in scheduler, and the report says which.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cvae_bench.core.errors import CvaeBenchError
from cvae_bench.core.events import Message, Reporter
from cvae_bench.deploy import OnnxDecoder
from cvae_bench.onnx.sessions import make_session
from cvae_bench.runtime.files import claim_output_folder, file_sha256, write_json, write_text
from cvae_bench.runtime.machine import LoadWindow, environment, machine_load
from cvae_bench.serving.loadgen import LoadgenScheduler, import_loadgen
from cvae_bench.serving.options import PROVIDERS, LoadtestCommand, serving_counts
from cvae_bench.serving.records import (
    ConfigResult,
    LoadtestOptions,
    LoadtestReport,
    ScenarioResult,
    ServerProbe,
    ServerSearch,
    ServingMemory,
    Threading,
)
from cvae_bench.serving.report import render_markdown
from cvae_bench.serving.scheduler import BuiltinScheduler, ScenarioRun, Serve, WorkerPool
from cvae_bench.serving.search import find_max_qps
from cvae_bench.serving.stats import summarize

#: Seconds of load sampling before and after each configuration.
LOAD_INTERVAL_S = 0.2
#: Distinct inputs the queries draw from (LoadGen's sample library).
SAMPLES = 1024


class Scheduler(Protocol):
    """What `BuiltinScheduler` and `LoadgenScheduler` both provide."""

    name: str
    label: str

    def single_stream(self, serve: Serve, samples: int, duration_s: float, min_queries: int) -> ScenarioRun: ...

    def server(
        self, pool: WorkerPool, samples: int, qps: float, bound_s: float, duration_s: float, min_queries: int
    ) -> ScenarioRun: ...

    def offline(self, pool: WorkerPool, samples: int, batch: int, total: int) -> ScenarioRun: ...


def _progress(reporter: Reporter, text: str) -> None:
    reporter.report(Message(text, "progress"))


def pick_scheduler(choice: str, reporter: Reporter, log_dir: Path | None = None) -> Scheduler:
    """LoadGen for 'loadgen' or 'auto' where it imports; the built-in scheduler otherwise, said in one line.

    Raises:
        CvaeBenchError: 'loadgen' asked for and not importable.
    """
    lg = import_loadgen() if choice in ("auto", "loadgen") else None
    if lg is not None:
        return LoadgenScheduler(lg, log_dir)
    if choice == "loadgen":
        raise CvaeBenchError("--scheduler loadgen: mlperf_loadgen does not import; pip install 'cvae-bench[serve]'")
    if choice == "auto":
        _progress(
            reporter, "MLPerf LoadGen is not importable (pip install mlcommons-loadgen): using the built-in scheduler"
        )
    return BuiltinScheduler()


def default_threadings(cores: int | None = None) -> list[Threading]:
    """One session with one thread, one session with a thread per core, one single-thread session per core."""
    n = cores or os.cpu_count() or 1
    out = [Threading(1, 1), Threading(1, n), Threading(n, 1)]
    return list(dict.fromkeys(out))


def serving_decoder(path: str, provider: str, threads: int) -> OnnxDecoder:
    """An `OnnxDecoder` whose session has `threads` intra-op threads.

    deploy.py builds its session with onnxruntime's default threading and has no option for it (it must
    stay standalone); the threading choice is the point of the load test, so the session is rebuilt here
    with `onnx.sessions.make_session`, and every call still goes through `OnnxDecoder.decode`.
    """
    decoder = OnnxDecoder(path, [provider])
    decoder.session = make_session(path, [provider], threads)
    return decoder


def make_variants(
    path: str, precisions: Sequence[str], folder: Path, reporter: Reporter
) -> tuple[dict[str, str], dict[str, str]]:
    """The decoder at each precision (files in `folder`), and why any could not be made."""
    import onnx

    from cvae_bench.onnx.variants import make_variant

    model = onnx.load(path)
    own = next((p.value for p in model.metadata_props if p.key == "precision"), "fp32")
    made: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for precision in precisions:
        if precision == own:
            made[precision] = path
        elif own != "fp32":
            skipped[precision] = f"the input file is {own}; variants are made from an fp32 decoder"
        else:
            _progress(reporter, f"making the {precision} variant")
            try:
                target = folder / f"decoder.{precision}.onnx"
                onnx.save(make_variant(model, precision), str(target))
                made[precision] = str(target)
            except Exception as exc:  # a missing converter or an unsupported graph: report and go on
                skipped[precision] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return made, skipped


def _result(scenario: str, run: ScenarioRun, **extra: Any) -> ScenarioResult:
    return ScenarioResult(
        scenario=scenario,
        queries=run.samples,
        duration_s=run.duration_s,
        throughput_qps=run.samples / run.duration_s if run.duration_s > 0 else 0.0,
        latency=summarize(run.latencies_s),
        issue_lateness_p99_s=run.issue_lateness_p99_s,
        loadgen=run.extra,
        **extra,
    )


def measure_config(
    path: str,
    precision: str,
    provider: str,
    threading: Threading,
    options: LoadtestOptions,
    scheduler: Scheduler,
    reporter: Reporter,
) -> ConfigResult:
    """The three scenarios for one model, provider and threading choice."""
    spec = OnnxDecoder(path, [provider])
    rng = np.random.default_rng(0)
    z = rng.standard_normal((options.samples, spec.latent_dim)).astype(np.float32)
    y = np.eye(spec.num_classes, dtype=np.float32)[rng.integers(0, spec.num_classes, options.samples)]
    decoders = [serving_decoder(path, provider, threading.intra_op_threads) for _ in range(threading.sessions)]

    def server_of(decoder: OnnxDecoder) -> Serve:
        return lambda idx: decoder.decode(z[idx], y[idx])

    serves = [server_of(d) for d in decoders]
    for serve in serves:  # warm-up: the first calls allocate and pick kernels
        for batch in (1, *options.offline_batches):
            serve(np.arange(min(batch, options.samples)))
    before = machine_load(LOAD_INTERVAL_S)
    what = f"{precision} {provider.removesuffix('ExecutionProvider')} {threading.label}"
    single = None
    if threading.sessions == 1 and "single-stream" in options.scenarios:
        _progress(reporter, f"{what}: single-stream")
        single = _result(
            "single-stream",
            scheduler.single_stream(serves[0], options.samples, options.duration_s, options.min_queries),
        )
    with WorkerPool(serves) as pool:
        server = None
        if "server" in options.scenarios:
            reporter.report(
                Message(
                    f"{what}: server, searching the highest rate with p99 ≤ {options.latency_bound_s * 1e3:g} ms",
                    "progress",
                )
            )

            def probe(qps: float) -> ScenarioResult:
                r = _result(
                    "server",
                    scheduler.server(
                        pool, options.samples, qps, options.latency_bound_s, options.duration_s, options.min_queries
                    ),
                    target_qps=qps,
                )
                reporter.report(
                    Message(
                        f"  {qps:,.0f} QPS: p99 {r.latency.at(99.0).seconds * 1e3:.3f} ms over {r.queries} queries",
                        "progress",
                    )
                )
                return r

            p50 = single.latency.at(50.0).seconds if single else None
            start = 0.5 * threading.sessions / p50 if p50 else 1000.0
            outcome = find_max_qps(
                probe,
                lambda r: r.latency.at(99.0).seconds <= options.latency_bound_s,
                start,
                max_probes=options.max_probes,
            )
            server = ServerSearch(
                latency_bound_s=options.latency_bound_s,
                best_qps=outcome.best.qps if outcome.best else None,
                at_best=outcome.best.result if outcome.best else None,
                probes=[
                    ServerProbe(
                        qps=p.qps, p99_s=p.result.latency.at(99.0).seconds, queries=p.result.queries, passed=p.passed
                    )
                    for p in outcome.probes
                ],
            )
        offline = []
        for batch in options.offline_batches if "offline" in options.scenarios else ():
            _progress(reporter, f"{what}: offline, batch {batch}")
            offline.append(
                _result(
                    "offline", scheduler.offline(pool, options.samples, batch, options.offline_queries), batch=batch
                )
            )
    return ConfigResult(
        precision=precision,
        provider=provider,
        threading=threading,
        single_stream=single,
        server=server,
        offline=offline,
        load=LoadWindow(before=before, after=machine_load(LOAD_INTERVAL_S)),
    )


class _Memory:
    """What `measure_memory` fills in when its block ends."""

    value: ServingMemory | None = None


@contextlib.contextmanager
def measure_memory() -> Iterator[_Memory]:
    """This process's resident memory before the block and its peak during it (`runtime.memory.PeakMeter`)."""
    from cvae_bench.runtime.memory import PeakMeter, rss

    out = _Memory()
    before = rss()
    meter = PeakMeter()
    meter.start()
    try:
        yield out
    finally:
        out.value = ServingMemory(rss_before=before, peak_rss=meter.stop(), method=meter.method)


def check_decoder(model: str) -> None:
    """Open `model` as a decoder once, on the CPU, before anything is made.

    Raises:
        CvaeBenchError: `model` is not a decoder (`deploy.DecoderError`'s message).
    """
    from cvae_bench.deploy import DecoderError

    try:
        OnnxDecoder(model, ["CPUExecutionProvider"])
    except DecoderError as exc:
        raise CvaeBenchError(str(exc)) from None


def run_loadtest(model: str, options: LoadtestOptions, scheduler: Scheduler, reporter: Reporter) -> LoadtestReport:
    """Every configuration of `options` on the decoder `model` (checked by `check_decoder`), its queries
    issued by `scheduler`."""
    _progress(reporter, f"load generator: {scheduler.label}")
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = [p for p in options.providers if p in available]
    skipped = {p: "not available in this onnxruntime build" for p in options.providers if p not in available}
    load_before = machine_load(LOAD_INTERVAL_S)
    configs = []
    with tempfile.TemporaryDirectory(prefix="cvae-bench-loadtest-") as tmp:
        models, skipped_precisions = make_variants(model, options.precisions, Path(tmp), reporter)
        skipped.update(skipped_precisions)
        for precision, path in models.items():
            for provider in providers:
                for threading in options.threadings:
                    try:
                        with measure_memory() as memory:  # the decoder process's peak over this configuration
                            config = measure_config(path, precision, provider, threading, options, scheduler, reporter)
                        configs.append(dataclasses.replace(config, memory=memory.value))
                    except Exception as exc:  # one provider lacking a kernel must not end the others
                        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
                        reporter.report(
                            Message(f"{precision} {provider} {threading.label}: failed: {first}", "progress")
                        )
                        configs.append(ConfigResult(precision, provider, threading, error=first))
    return LoadtestReport(
        model=str(model),
        model_sha256=file_sha256(model),
        scheduler=scheduler.label,
        options=options,
        environment=environment(),
        load_before=load_before,
        load_after=machine_load(LOAD_INTERVAL_S),
        configs=configs,
        skipped=skipped,
    )


def parse_threadings(text: str | None) -> list[Threading]:
    """'1x1,1x2,2x1' (sessions x intra-op threads) as `Threading`s; None or '' gives `default_threadings()`.

    Raises:
        UsageError: an item that is not two positive integers joined by 'x'.
    """
    return [Threading(*pair) for pair in serving_counts(text)] or default_threadings()


def loadtest_command(cmd: LoadtestCommand, reporter: Reporter) -> list[Path]:
    """The `loadtest` command: run every configuration and write loadtest.json and loadtest.md into `cmd.out`.

    Everything is checked before the output folder is made (the options, the decoder, the load generator),
    so that a refused command leaves nothing behind.

    Args:
        cmd: the command's options.
        reporter: hears each progress line (a `Message` at level "progress").

    Returns:
        The paths written.

    Raises:
        UsageError: a bad option or a missing model file.
        CvaeBenchError: a file that is not a decoder, LoadGen required and missing, or an unwritable folder.
    """
    cmd = cmd.check()
    check_decoder(cmd.model)
    out = Path(cmd.out)
    scheduler = pick_scheduler(cmd.scheduler, reporter, log_dir=out / "loadgen")  # its logs' folder is made when used
    options = LoadtestOptions(
        precisions=list(cmd.precisions),
        providers=[PROVIDERS[d] for d in cmd.devices],
        threadings=parse_threadings(cmd.serving),
        latency_bound_s=cmd.latency_bound_ms / 1e3,
        duration_s=cmd.duration_s,
        min_queries=cmd.min_queries,
        max_probes=cmd.max_probes,
        offline_batches=list(cmd.offline_batches),
        offline_queries=cmd.offline_queries,
        samples=SAMPLES,
        scheduler=cmd.scheduler,
        scenarios=list(cmd.scenarios),
    )
    with claim_output_folder(out, cmd.force):  # never over an earlier load test's files unless --force
        report = run_loadtest(cmd.model, options, scheduler, reporter)
        json_path, md_path = out / "loadtest.json", out / "loadtest.md"
        write_json(json_path, report.to_json())
        write_text(md_path, "\n".join(render_markdown(report)) + "\n")
    return [json_path, md_path]
