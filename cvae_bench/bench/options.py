"""What `cvae-bench bench` measures and how long: one options object, read by the runner and every group.

Each field users set is declared with `core.options.option`: its flag, help, bounds and whether a sweep file
may set it; the command line and the sweep file's [bench] table are generated from these declarations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cvae_bench.core.defaults import DEFAULT_BATCH_SIZES, DEFAULT_FAIL_ABOVE, MAX_BATCH_SIZE, MAX_MIN_TIME, PRECISIONS
from cvae_bench.core.options import device_option, force_option, option, out_option, worker_timeout_option
from cvae_bench.core.stats import DEFAULT_TIE
from cvae_bench.data.specs import data_option, dataset_option
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec


@dataclass(frozen=True)
class BenchOptions:
    """What `cvae-bench bench` measures and how long.

    Attributes:
        groups: names of the benchmark groups to run; empty (the default): every registered group.
        device: "cpu" or "cuda" for the backends (onnxruntime always tries CPU, and CUDA where present).
        threads: threads for every framework; None (the default): each framework's own default, as its users
            run it (no thread variable is set).
        epochs: epochs of fresh worker processes per contestant; every interval is taken across them (the level
            where timings vary most: `core.replication`).
        rounds: timed rounds (interleaved sweeps) per epoch.
        min_time: seconds a round lasts at least (sets the calls per round).
        warmup: untimed training steps before calibration (decoders get 3, onnxruntime 10).
        batch_sizes: sampling batch sizes.
        precisions: onnxruntime model precisions.
        ort_devices: onnxruntime providers to try, by device kind.
        dataset, data_path, train_subset: the training data of the train-step group.
        ceiling_rounds, ceiling_min_time: rounds of the matmul ceiling.
        spec: the model; idle_timeout: seconds a silent worker is given before it counts as hung.
        tie: ratios within ±tie read as a tie (the verdict's band).
        rel_precision: keep adding interleaved sweeps until every ratio's 95 % interval is within ±this
            (relative half-width), or `max_time` has passed (None: the fixed `rounds`).
        max_time: seconds of timed sweeps at most when `rel_precision` is set.
        self_check: add the A/A pair (the first backend/mode in a second worker) for the noise floor.
        wait_quiet: seconds to wait for an idle machine before timing (0: do not wait).
        plain_loops: time a plain loop per selected framework beside train-step (torch: nn.Module and
            torch.optim.Adam; Keras: the tutorial's `fit`), as reference rows: the harness must not be slower.
        under_load: judge a run that the machine's load made BUSY anyway (its verdicts are withheld otherwise).
        seed: the seed of the sweeps' shuffled order.
    """

    groups: tuple[str, ...] = ()
    device: str = device_option("cpu, cuda or cuda:N (gpu reads as cuda), for the backends.")
    threads: int | None = option(None, "--threads", "Threads for every framework [its own default].", minimum=1)
    epochs: int = option(
        5,
        "--epochs",
        "Epochs of fresh worker processes per contestant; every interval is taken across them.",
        minimum=1,
        maximum=100,
        sweep=True,
    )
    rounds: int = option(10, "--rounds", "Interleaved timed rounds per epoch.", minimum=1, sweep=True)
    min_time: float = option(
        0.1, "--min-time", "Seconds per round, at least.", minimum=0, maximum=MAX_MIN_TIME, sweep=True
    )
    warmup: int = option(20, "--warmup", "Untimed training steps.", minimum=0, sweep=True)
    batch_sizes: tuple[int, ...] = option(
        DEFAULT_BATCH_SIZES,
        "--batch-sizes",
        "Sampling batch sizes.",
        aliases=("--batch-size",),
        minimum=1,
        maximum=MAX_BATCH_SIZE,
        sweep=True,
    )
    precisions: tuple[str, ...] = option(
        PRECISIONS,
        "--precisions",
        "onnxruntime model precisions.",
        choices=PRECISIONS,
        aliases=("--precision",),
        sweep=True,
    )
    ort_devices: tuple[str, ...] = ("cpu", "cuda")
    dataset: str = dataset_option()
    data_path: str | None = data_option()
    train_subset: int | None = option(
        None, "--train-subset", "Train steps on the first N images.", minimum=64, sweep=True
    )
    ceiling_rounds: int = 9
    ceiling_min_time: float = 0.01
    spec: ModelSpec = DEFAULT_SPEC
    idle_timeout: float = worker_timeout_option()
    tie: float = option(DEFAULT_TIE, "--tie", "Ratios within ±TIE are a tie.", minimum=0, maximum=0.5)
    rel_precision: float | None = option(
        None,
        "--rel-precision",
        "Add interleaved sweeps until every ratio's 95 % CI half-width is within this (e.g. 0.02), or --max-time.",
        minimum=0.001,
        maximum=0.5,
    )
    max_time: float = option(300.0, "--max-time", "Seconds of timed sweeps at most with --rel-precision.", minimum=1)
    self_check: bool = option(
        True,
        "--self-check",
        "Time the first backend/mode twice, in two workers (A/A): its ratio gives this machine's noise floor.",
        negatable=True,
    )
    wait_quiet: float = option(0.0, "--wait-quiet", "Wait up to SECONDS for an idle machine before timing.", minimum=0)
    plain_loops: bool = option(
        False,
        "--plain-loops",
        "Also time each selected framework's own plain training loop beside train-step (torch: nn.Module + "
        "torch.optim.Adam; Keras: the tutorial's fit), to show the harness does not slow a framework down.",
    )
    under_load: bool = option(
        False,
        "--under-load",
        "Judge even when foreign load overlapped too many sweeps (BUSY runs otherwise get no verdict).",
    )
    seed: int = 0

    def check(self, prefix: str = "--") -> BenchOptions:
        """This record with its device parsed, when every value can work; else one `UsageError` line.

        The command line and the sweep file both come through here, so that a sweep cell is held to the rules
        of `cvae-bench bench` (`prefix`: `--` names options, '' names sweep keys). The device is probed.
        """
        from cvae_bench.core import checks
        from cvae_bench.core.options import check_declared
        from cvae_bench.data.specs import check_subsets

        # The declared bounds and choices, as the command line holds them; then what no declaration can say.
        checked = check_declared(self, prefix)
        name = "--" if prefix == "--" else ""
        device = checks.check_device(f"{name}device", checked.device)
        checks.check_threads(f"{name}threads", checked.threads)
        checks.check_seed(f"{name}seed", checked.seed)
        check_subsets(checked.dataset, checked.train_subset, None, prefix=prefix)
        return replace(checked, device=device)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for bench.json's `cvae_bench.options` (the spec is recorded beside it)."""
        d = asdict(self)
        d.pop("spec")
        return d


@dataclass(frozen=True)
class BenchCommand:
    """What `cvae-bench bench` was asked: which backends, what to measure (`options`), where the results go.

    Attributes:
        options: what to measure and how long (`data_path` is filled in by the command).
        backends: `NAME`, `NAME:MODE`, `NAME:all`, a comma-separated list, or `all`; each item may end in
            `+KNOB=VALUE...` (a tuned worker beside the untuned one).
        command: the command line, recorded in the results.
        out_dir: the results folder (None: runs/bench-<timestamp>).
        force: write into an `out_dir` that already holds files.
        runs_path: time-to-target from `cvae-bench run` output, shown beside the benchmark.
        with_runs: also train every benchmarked backend/mode this many times to the target.
        replicate: run the bench this many times, independently and back to back, into `rep-01`, `rep-02`…
            of the results folder, and write calibration.json/.md beside them (`bench.calibration`).
    """

    options: BenchOptions = field(default_factory=BenchOptions)
    backends: str = option(
        "all",
        "--backend",
        "NAME (its default mode), NAME:MODE, NAME:all (every mode), a comma-separated list, or 'all'; each item "
        "may end in +KNOB=VALUE... to time a tuned worker beside the untuned one (knobs: threads, "
        "flush-denormal, mkldnn, torch-compile-mode, onednn, env:VAR; docs/design.md, 'Tuning knobs').",
        aliases=("--backends",),
    )
    command: str = "cvae-bench bench"
    out_dir: str | None = out_option("Results folder [runs/bench-<timestamp>].", folder=True)
    force: bool = force_option()
    runs_path: str | None = option(
        None,
        "--runs",
        "Time-to-target from `cvae-bench run --repeats N` output (comparison.json, result.json or a folder).",
        path="either",
        exists=True,
    )
    with_runs: int | None = option(
        None,
        "--with-runs",
        "Also train every benchmarked backend/mode N times to the target, for time-to-target.",
        minimum=1,
    )
    replicate: int = option(
        1,
        "--replicate",
        "Run the bench N times, independently, and write calibration.md: how often each interval holds the "
        "pooled estimate, and how often the A/A check fails.",
        minimum=1,
        maximum=100,
    )


@dataclass(frozen=True)
class CompareCommand:
    """What `cvae-bench compare` was asked: the regression gate from `base` to `new`.

    Attributes:
        base, new: bench.json, pytest-benchmark JSON (or a .benchmarks folder), comparison.json, result.json, or
            folders of them.
        fail_above: a significant slowdown larger than this fails the gate.
        tie: changes within ±tie read as a tie, never a regression (the bench's own band by default).
        fail_above_memory: a peak resident memory growth larger than this fails the gate (None: not gated).
    """

    base: str = ""
    new: str = ""
    fail_above: float = option(
        DEFAULT_FAIL_ABOVE,
        "--fail-above",
        "Exit 1 when an entry is significantly slower by more than this (0.05: 5 %).",
        minimum=0,
    )
    tie: float = option(
        DEFAULT_TIE, "--tie", "Changes within ±TIE are a tie, never a regression (0.03: 3 %).", minimum=0, maximum=0.5
    )
    fail_above_memory: float | None = option(
        None,
        "--fail-above-memory",
        "Exit 1 when an entry's peak resident memory grew by more than this (0.10: 10 %) [default: not gated].",
        minimum=0,
    )
