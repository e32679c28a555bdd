"""What `cvae-bench bench` measures and how long: one options object, read by the runner and every group."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from cvae_bench.core.defaults import DEFAULT_BATCH_SIZES, DEFAULT_IDLE_TIMEOUT, MAX_BATCH_SIZE, MAX_MIN_TIME, PRECISIONS
from cvae_bench.core.stats import DEFAULT_TIE
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
    device: str = "cpu"
    threads: int | None = None
    epochs: int = 5
    rounds: int = 10
    min_time: float = 0.1
    warmup: int = 20
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    precisions: tuple[str, ...] = PRECISIONS
    ort_devices: tuple[str, ...] = ("cpu", "cuda")
    dataset: str = "mnist"
    data_path: str | None = None
    train_subset: int | None = None
    ceiling_rounds: int = 9
    ceiling_min_time: float = 0.01
    spec: ModelSpec = DEFAULT_SPEC
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    tie: float = DEFAULT_TIE
    rel_precision: float | None = None
    max_time: float = 300.0
    self_check: bool = True
    wait_quiet: float = 0.0
    plain_loops: bool = False
    under_load: bool = False
    seed: int = 0

    def check(self, prefix: str = "--") -> BenchOptions:
        """This record with its device parsed, when every value can work; else one `UsageError` line.

        The command line and the sweep file both come through here, so that a sweep cell is held to the rules
        of `cvae-bench bench` (`prefix`: `--` names options, '' names sweep keys). The device is probed.
        """
        from cvae_bench.core import checks

        def name(option: str) -> str:
            return f"--{option}" if prefix == "--" else option.replace("-", "_")

        device = checks.check_device(name("device"), self.device)
        checks.check_threads(name("threads"), self.threads)
        checks.check_precisions(name("precisions"), self.precisions)
        for size in self.batch_sizes:
            checks.check_int(name("batch-sizes"), size, minimum=1, maximum=MAX_BATCH_SIZE)
        checks.check_float(name("min-time"), self.min_time, minimum=0, maximum=MAX_MIN_TIME)
        checks.check_float(name("max-time"), self.max_time, minimum=0)
        checks.check_float(name("wait-quiet"), self.wait_quiet, minimum=0)
        checks.check_float(name("worker-timeout"), self.idle_timeout, minimum=1)
        checks.check_float(name("tie"), self.tie, minimum=0, maximum=0.5)
        checks.check_seed(name("seed"), self.seed)
        checks.check_subsets(self.dataset, self.train_subset, None, prefix=prefix)
        return replace(self, device=device)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for bench.json's `cvae_bench.options` (the spec is recorded beside it)."""
        d = asdict(self)
        d.pop("spec")
        return d
