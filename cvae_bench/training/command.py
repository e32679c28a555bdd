"""The `run` command: check its options, choose the folder, fetch the data, and train (or resume) the runs.

The command line parses and prints; everything between is here, so that another caller (a notebook, a test)
runs exactly what `cvae-bench run` runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cvae_bench.core.defaults import DEFAULT_MAX_EPOCHS, DEFAULT_TARGET, MAX_SEED
from cvae_bench.core.errors import UsageError
from cvae_bench.core.events import RunReporter
from cvae_bench.core.options import device_option, force_option, option, out_option, worker_timeout_option
from cvae_bench.data.specs import data_option, dataset_option, val_subset_option

if TYPE_CHECKING:  # the command line imports this module for the record: it stays light
    from cvae_bench.backends.registry import BackendInfo
    from cvae_bench.training.matched import MatchedOutcome
    from cvae_bench.training.run import RunOptions


@dataclass(frozen=True)
class RunCommand:
    """What `cvae-bench run` was asked: start runs (`backends`) or finish interrupted ones (`resume`).

    Attributes:
        backends: the selection (`NAME`, `NAME:MODE`, a list, `all`), or None with `resume`.
        resume: a run folder to finish, or None.
        mode: the mode of every selected backend that names none.
        command: the command line, recorded in plan.json and the results.
        The others are `cvae-bench run`'s options; those declared with `option` generate its click options.
    """

    backends: str | None = option(
        None,
        "--backend",
        "Backend name, a comma-separated list (NAME or NAME:MODE each), or 'all'. Required unless --resume.",
        aliases=("--backends",),
    )
    resume: str | None = option(
        None,
        "--resume",
        "Finish an interrupted run folder: keep the runs that finished, go on from the last checkpoint.",
        path="folder",
        exists=True,
    )
    mode: str | None = option(None, "--mode", "Backend mode, e.g. eager/compiled (torch) [the backend's default].")
    device: str = device_option()
    target: float = option(DEFAULT_TARGET, "--target", "Stop at val -ELBO <= target (nats).", sweep=True)
    max_epochs: int = option(
        DEFAULT_MAX_EPOCHS, "--max-epochs", "Give up on the target after N epochs.", minimum=1, sweep=True
    )
    epochs: int | None = option(None, "--epochs", "Train exactly N epochs, no target.", minimum=1, sweep=True)
    eval_every: int | None = option(
        None, "--eval-every", "Steps between evaluations [one epoch].", minimum=1, sweep=True
    )
    seed: int = option(
        0,
        "--seed",
        "Seed of the first run (weights, data order, noise); every framework takes 0..2**32-1.",
        minimum=0,
        maximum=MAX_SEED,
    )
    repeats: int = option(1, "--repeats", "Runs per backend, with seeds seed..seed+N-1.", minimum=1)
    dataset: str = dataset_option()
    data_path: str | None = data_option()
    out_dir: str | None = out_option(
        "Run folder [runs/<backend>-<timestamp>, or runs/compare-<timestamp> for several runs].", folder=True
    )
    force: bool = force_option()
    train_subset: int | None = option(
        None, "--train-subset", "Use only the first N training images.", minimum=64, sweep=True
    )
    val_subset: int | None = val_subset_option("Use only the first N validation images.", sweep=True)
    idle_timeout: float = worker_timeout_option()
    threads: int | None = option(
        None, "--threads", "Threads for every framework, at most the cores available [its own default].", minimum=1
    )
    export_onnx: bool = option(False, "--export", "Also export each run's verified decoder to decoder.onnx.")
    command: str = "cvae-bench run"


@dataclass(frozen=True)
class RunCommandOutcome:
    """The runs' outcome and the title their comparison table goes under."""

    matched: MatchedOutcome
    title: str


class Exporter(Protocol):
    """What `--export` needs of the ONNX wing (`cvae_bench.onnx.commands` is one): a sibling of this wing,
    so it is handed in rather than imported."""

    def require_export(self, infos: Sequence[BackendInfo], device: str) -> None:
        """Raise UsageError unless every backend in `infos` exports ONNX on `device`."""

    def export_lines(
        self,
        info: BackendInfo,
        weights: str | Path,
        out: str | Path,
        device: str,
        dataset: str,
        data_path: str | Path | None,
        val_subset: int | None,
    ) -> list[str]:
        """Export and check one run's decoder; the lines to print."""
        ...


def run_command(cmd: RunCommand, reporter: RunReporter, exporter: Exporter | None = None) -> RunCommandOutcome:
    """Check every option (and probe the device) before any work, then train or resume the runs.

    Args:
        cmd: the command's options.
        reporter: hears each run's summary line and warnings, the data set's download or verification (as
            progress messages), and each run's own events through `reporter.run(label)`.
        exporter: the ONNX export, needed with `cmd.export_onnx`.

    Raises:
        UsageError: a bad option, selection, mode, knob or device (nothing is started, nothing written).
        CvaeBenchError: the data set, a worker, a run folder.
    """
    from cvae_bench.backends.selection import check_selections, parse_selection
    from cvae_bench.core import checks
    from cvae_bench.data.loading import load_dataset
    from cvae_bench.data.specs import check_subsets
    from cvae_bench.training.matched import MatchedRuns, default_folder, resume_matched, run_matched

    if (cmd.backends is None) == (cmd.resume is None):
        raise UsageError("give --backend NAME to start runs, or --resume FOLDER to finish interrupted ones")
    if cmd.export_onnx and exporter is None:
        raise UsageError("--export needs the ONNX exporter (cvae_bench.onnx.commands)")

    data_path = cmd.data_path  # the verified local copy once the data set is fetched below

    def export_after(selection: Any, result: Any, sub: Path) -> list[str]:
        weights, onnx_path = sub / "weights.safetensors", sub / "decoder.onnx"
        device = result.device.split(":")[0]
        assert exporter is not None
        return exporter.export_lines(selection.info, weights, onnx_path, device, cmd.dataset, data_path, cmd.val_subset)

    after_run = export_after if cmd.export_onnx else None
    if cmd.resume is not None:
        outcome = resume_matched(Path(cmd.resume), reporter, after_run=after_run)
        target = cmd.target
        if outcome.results and outcome.results[0].outcome.target is not None:
            target = outcome.results[0].outcome.target
        return RunCommandOutcome(outcome, f"matched runs: val -ELBO <= {target}")
    assert cmd.backends is not None
    # Every value is checked, and the device probed, before a folder is made or a worker started.
    checks.check_threads("--threads", cmd.threads)
    check_subsets(cmd.dataset, cmd.train_subset, cmd.val_subset)
    checks.check_seed("--seed", cmd.seed, cmd.repeats)
    device = checks.check_device("--device", cmd.device)
    selections = parse_selection(cmd.backends)
    if cmd.mode is not None:
        selections = [s if s.mode else replace(s, mode=cmd.mode) for s in selections]
    check_selections(selections, device)
    if exporter is not None and cmd.export_onnx:
        exporter.require_export([s.info for s in selections], device)
    # Fetch (and cache) the data here, so that the workers only ever read a verified local copy.
    data_path = str(load_dataset(cmd.dataset, cmd.data_path, reporter=reporter).path)
    base = run_options(replace(cmd, device=device, data_path=data_path))
    runs = MatchedRuns(tuple(selections), base, cmd.repeats, cmd.command)
    folder = Path(cmd.out_dir) if cmd.out_dir else default_folder(runs)
    outcome = run_matched(runs, folder, reporter, after_run=after_run, force=cmd.force)
    title = f"matched runs: val -ELBO <= {cmd.target}" if cmd.epochs is None else f"{cmd.epochs} epochs"
    return RunCommandOutcome(outcome, title)


def run_options(cmd: RunCommand) -> RunOptions:
    """What each run of `cmd` is given (its training config, device, data, threads), read from the record once,
    for `run_command` and for a sweep's run cell alike.

    `cmd.device` and `cmd.data_path` are taken as they are: the caller has checked the device and fetched
    the data set (to a verified local copy) before.
    """
    from cvae_bench.training.loop import TrainConfig
    from cvae_bench.training.run import RunOptions

    config = TrainConfig(
        target=cmd.target, max_epochs=cmd.max_epochs, epochs=cmd.epochs, eval_every=cmd.eval_every, seed=cmd.seed
    )
    return RunOptions(
        config=config,
        device=cmd.device,
        dataset=cmd.dataset,
        data_path=cmd.data_path,
        train_subset=cmd.train_subset,
        val_subset=cmd.val_subset,
        idle_timeout=cmd.idle_timeout,
        threads=cmd.threads,
    )
