"""One training run of one backend in its own worker, written to a run folder."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvae_bench import __version__
from cvae_bench.backends.registry import BackendInfo
from cvae_bench.core.defaults import DEFAULT_IDLE_TIMEOUT
from cvae_bench.core.errors import BackendUnavailableError, CvaeBenchError
from cvae_bench.core.events import SILENT, Reporter
from cvae_bench.core.memory import RunMemory
from cvae_bench.data.specs import DEFAULT_DATASET
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec
from cvae_bench.runtime.files import ensure_dir, fsync_dir, save_weights, write_json
from cvae_bench.runtime.memory import run_memory_job
from cvae_bench.runtime.sentinel import Sentinel, wait_quiet
from cvae_bench.runtime.threads import thread_env
from cvae_bench.runtime.worker import RemoteBackend, Worker
from cvae_bench.training.checkpoint import load_checkpoint, remove_checkpoint, time_lost
from cvae_bench.training.convergence import assess_convergence
from cvae_bench.training.jobs import train_job
from cvae_bench.training.loop import TrainConfig
from cvae_bench.training.records import RunResult, TrainOutcome, WeightsRef

#: Files of an earlier run in the same folder that describe weights this run replaces: removed before it
#: writes anything, so that a run stopped half-way never leaves an old result naming new weights.
DERIVED_FILES = ("result.json", "decoder.onnx")


@dataclass(frozen=True)
class RunOptions:
    """Everything a run needs besides the backend."""

    config: TrainConfig = field(default_factory=TrainConfig)
    device: str = "cpu"
    mode: str | None = None
    dataset: str = DEFAULT_DATASET
    data_path: str | None = None
    train_subset: int | None = None
    val_subset: int | None = None
    spec: ModelSpec = DEFAULT_SPEC
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    #: Seconds to wait for an idle machine before training (0: do not wait).
    wait_quiet: float = 0.0
    #: Threads for every framework in the worker (`runtime.threads.thread_env`); None: the framework's default.
    threads: int | None = None


def default_run_dir(root: str | Path, name: str) -> Path:
    """runs/<backend>-<UTC timestamp>."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{name}-{stamp}"


def run_backend(
    info: BackendInfo,
    options: RunOptions,
    out_dir: str | Path,
    reporter: Reporter = SILENT,
    resume: bool = False,
) -> RunResult:
    """Train `info` in a fresh worker; write weights.safetensors, then result.json naming it, into `out_dir`.

    The two files are one unit: result.json is written last, durably, and names the SHA-256 of the weight
    bytes written; a folder with weights but no result.json is a run that did not finish. The folder is
    not claimed here (see `runtime.files.claim_output_folder`): callers hold it for the whole command.

    The run checkpoints into `out_dir/checkpoint/` at every evaluation (where the backend can); with
    `resume`, it goes on from the checkpoint there (from the start when there is none), and the result
    records the resume and the training time it cost. The checkpoint is removed once result.json is written.
    `reporter` hears the run's events as the worker sends them (`TrainStart`, `TrainProgress`, `Evaluated`, ...).

    Returns:
        The result, as written to result.json.

    Raises:
        BackendUnavailableError: the backend's framework is missing.
        WorkerError: the worker died or hung.
        CvaeBenchError: the results cannot be written (full disk, permissions).
    """
    if not info.available:
        raise BackendUnavailableError(info.unavailable_reason())
    out = ensure_dir(out_dir)
    checkpoint = load_checkpoint(out, options.spec) if resume else None
    resumptions = [time_lost(checkpoint)] if checkpoint is not None else []
    for name in DERIVED_FILES:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    fsync_dir(out)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    extra_env = thread_env(options.threads) if options.threads else None
    if options.wait_quiet > 0:
        wait_quiet(options.wait_quiet)
    # The sentinel samples foreign load while the worker trains; result.json records what it saw.
    with Sentinel() as sentinel, Worker(info, idle_timeout=options.idle_timeout, extra_env=extra_env) as worker:
        backend = RemoteBackend(worker, options.spec, options.config.seed, options.device, options.mode)
        job = backend.run_job(
            train_job,
            reporter,
            config=options.config,
            dataset=options.dataset,
            data_path=options.data_path,
            train_subset=options.train_subset,
            val_subset=options.val_subset,
            checkpoint_to=str(out),
            resume=checkpoint,
        )
        memory = RunMemory.from_json(backend.run_job(run_memory_job))  # the worker's peak over the whole run
    weights_path = out / "weights.safetensors"
    sha256 = save_weights(weights_path, job.weights, metadata={"backend": info.name, "seed": str(options.config.seed)})
    result = RunResult(
        cvae_bench=__version__,
        started=started,
        backend=info.name,
        origin=info.origin,
        mode=backend.mode,
        device=backend.device,
        versions=backend.info["versions"],
        hardware=job.environment,
        seed=options.config.seed,
        config=options.config.to_dict(),
        spec=options.spec.to_dict(),
        build_s=backend.info["build_s"],
        outcome=job.outcome,
        weights=WeightsRef(file=weights_path.name, sha256=sha256),
        convergence=assess_convergence(job.outcome, options.spec, options.dataset),
        resumptions=resumptions,
        load=sentinel.seen(),
        memory=memory,
    )
    try:
        write_json(out / "result.json", result.to_json())
    except CvaeBenchError as exc:
        raise CvaeBenchError(f"{exc}; the trained weights are kept in {weights_path} (sha256 {sha256})") from exc
    remove_checkpoint(out)
    return result


def summary_line(result: RunResult, out_dir: str | Path) -> str:
    """The one human line printed at the end of a run."""
    o = result.outcome
    speed = f"{o.ms_per_step_median:.2f} ms/step median" if o.ms_per_step_median is not None else "n/a ms/step"
    timing = f"build {result.build_s:.2f} s, first step {o.first_step_s:.2f} s, {speed}"
    what = outcome_phrase(o)
    final = f"final val -ELBO {o.final.val_elbo:.2f}" if o.final else "no finite evaluation"
    if o.audit is not None:
        timing += f", {o.audit.points} steps audited ({o.audit.seconds:.2f} s apart)"
    verdict = result.convergence
    deviant = f"; DEVIANT: {'; '.join(verdict.reasons)}" if verdict is not None and verdict.deviant else ""
    resumed = "".join(
        f"; resumed from step {r.from_step} ({r.lost_train_s:.1f} s of training redone)" for r in result.resumptions
    )
    load = result.load
    busy = (
        f"; the machine was BUSY ({load.line()}): this time-to-target is not comparable with a quiet run"
        if load is not None and load.busy
        else ""
    )
    return f"{result.label}: {what}; {final}; {timing}{deviant}{resumed}{busy} -> {out_dir}"


def outcome_phrase(o: TrainOutcome) -> str:
    """How a run ended, in words (the summary line's first part); a diverged run says so first."""
    if o.status == "diverged":
        d = o.divergence
        return "diverged" + (f": {d.what} was {d.value} at step {d.step}" if d is not None else "") + ", stopped"
    if o.status == "fixed-epochs":
        return f"trained {o.epochs:.0f} epochs ({o.steps} steps) in {o.train_time_s:.1f} s"
    if o.status == "reached":
        assert o.epochs_to_target is not None and o.time_to_target_s is not None
        return (
            f"reached val -ELBO <= {o.target} at step {o.steps_to_target} "
            f"(epoch {o.epochs_to_target:.2f}) in {o.time_to_target_s:.1f} s"
        )
    return f"did NOT reach val -ELBO <= {o.target} in {o.epochs:.0f} epochs ({o.steps} steps)"


def options_to_json(options: RunOptions) -> dict[str, Any]:
    """RunOptions as plain JSON (for a run folder's plan.json)."""
    doc = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    doc["config"] = options.config.to_dict()
    doc["spec"] = options.spec.to_dict()
    return doc


def options_from_json(doc: dict[str, Any]) -> RunOptions:
    """Inverse of `options_to_json`."""
    kw = dict(doc)
    kw["config"] = TrainConfig(**kw["config"])
    kw["spec"] = ModelSpec.from_dict(kw["spec"])
    return RunOptions(**kw)
