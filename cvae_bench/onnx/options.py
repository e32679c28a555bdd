"""What `cvae-bench export` and `cvae-bench sample` are asked: one frozen options record each.

Each field users set is declared with `core.options.option` (its flag, help, bounds, choices); the commands'
click options are generated from these declarations. `check` holds a record to every rule before any work:
the command functions in `onnx.commands` run nothing for a record that would fail. This module imports
neither onnx nor numpy: the command line imports it for the records.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, replace

from cvae_bench.core.defaults import MAX_SEED, PRECISIONS
from cvae_bench.core.errors import UsageError
from cvae_bench.core.options import (
    check_declared,
    device_option,
    force_option,
    option,
    out_option,
    worker_timeout_option,
)
from cvae_bench.data.specs import DEFAULT_DATASET, data_option, dataset_option, val_subset_option
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec

#: The networks an export writes.
PARTS: tuple[str, ...] = ("decoder", "encoder")
#: Supported by every exporter used here and by onnxruntime ≥ 1.14.
DEFAULT_OPSET = 18
#: The oldest default-domain opset the interface's operators exist in.
MIN_OPSET = 7


@dataclass(frozen=True)
class ExportSettings:
    """How a part is exported and checked, wherever its backend runs (`onnx.export.export_verified` reads it).

    The part of an `ExportCommand` that the export itself needs; the benchmarks' exporter, which runs beside a
    backend in its worker, builds one directly.

    Attributes:
        part: "decoder" or "encoder".
        precision: "fp32", or a variant ("fp16", "int8") checked at its own tolerance.
        opset: the default-domain opset of the file (None: whatever the exporter writes).
        dataset: the data set of the val −ELBO and the real-input checks.
        val_subset: evaluate on the first N validation images only (None: all).
        measure_speed: time onnxruntime at batch 1024.
        spec: the model.
    """

    part: str = "decoder"
    precision: str = "fp32"
    opset: int | None = DEFAULT_OPSET
    dataset: str = DEFAULT_DATASET
    val_subset: int | None = None
    measure_speed: bool = True
    spec: ModelSpec = DEFAULT_SPEC


@dataclass(frozen=True, kw_only=True)
class ExportCommand:
    """What `cvae-bench export` was asked: export one part of a weights file with a backend's exporter.

    `cvae-bench run --export` builds one per run (`onnx.commands.export_lines`). Every field is an option
    of the command; `backend`, `weights` and `out` have no default (the record cannot be built without them).
    """

    backend: str = option(MISSING, "--backend", "Backend whose exporter writes the file.", required=True)
    weights: str = option(
        MISSING, "--weights", "Canonical weights (safetensors) to export.", path="file", required=True
    )
    out: str = out_option("ONNX file to write.", folder=False, required=True)
    part: str = option("decoder", "--part", "Which network to export.", choices=PARTS)
    precision: str = option(
        "fp32",
        "--precision",
        "fp16: onnxconverter-common, float32 inputs/outputs kept; int8: onnxruntime dynamic quantisation.",
        aliases=("--precisions",),
        choices=PRECISIONS,
    )
    opset: int = option(DEFAULT_OPSET, "--opset", "ONNX opset of the file.", minimum=MIN_OPSET)
    device: str = device_option(
        "Where the backend runs (the check's reference). cpu, cuda, cuda:N (gpu reads as cuda)."
    )
    dataset: str = dataset_option()
    data_path: str | None = data_option()
    val_subset: int | None = val_subset_option()
    idle_timeout: float = worker_timeout_option()
    force: bool = force_option("Replace an existing -o file.")

    def check(self) -> ExportCommand:
        """This record with its names made canonical and its device parsed, once every value can work.

        The usage errors come first (exit 2), then the files (exit 1): the weights must exist, and `-o` may
        be neither the weights nor (without `force`) an existing file. Nothing is started or written here; the
        device is probed.

        Raises:
            UsageError: a part, precision, opset, timeout, data set, subset, device or backend name that cannot
                work (a misspelt name is answered with the closest known one).
            CvaeBenchError: the backend's framework is missing, the weights file is missing, or `-o` is refused.
        """
        from cvae_bench.core.checks import check_output
        from cvae_bench.data.evaluate_command import check_scoring

        checked = check_declared(self)
        backend, device = check_scoring(
            checked.backend, checked.weights, checked.device, checked.dataset, checked.val_subset
        )
        check_output(checked.out, [checked.weights], force=checked.force)
        return replace(checked, backend=backend, device=device)

    def settings(self, *, measure_speed: bool = True, spec: ModelSpec = DEFAULT_SPEC) -> ExportSettings:
        """What the export itself reads of this record (with the two things no option sets)."""
        return ExportSettings(
            part=self.part,
            precision=self.precision,
            opset=self.opset,
            dataset=self.dataset,
            val_subset=self.val_subset,
            measure_speed=measure_speed,
            spec=spec,
        )


@dataclass(frozen=True, kw_only=True)
class SampleCommand:
    """What `cvae-bench sample` was asked: draw a decoder, an exported one (`onnx`, in onnxruntime with
    `providers`) or a backend's (`backend` with `weights`, in its framework on `device`)."""

    onnx: str | None = option(None, "--onnx", "An exported decoder, drawn in onnxruntime.", path="file")
    providers: str | None = option(
        None,
        "--providers",
        "Comma-separated onnxruntime providers, in order [CUDAExecutionProvider if present, CPUExecutionProvider].",
        aliases=("--provider",),
    )
    backend: str | None = option(None, "--backend", "Decode with this backend instead (needs --weights).")
    weights: str | None = option(None, "--weights", "Canonical weights, with --backend.", path="file")
    device: str = device_option("Where --backend runs. cpu, cuda, cuda:N (gpu reads as cuda).")
    out: str = out_option("Folder for the PNGs.", folder=True, default="samples")
    seed: int = option(0, "--seed", "Seed of the prior draws.", minimum=0, maximum=MAX_SEED)
    digit: int = option(0, "--digit", "Digit of the latent manifold.", minimum=0)
    force: bool = force_option("Write into an --out folder that already holds files (the PNGs are replaced).")

    def check(self) -> SampleCommand:
        """This record with its backend's name made canonical and its device parsed, once every value can work.

        What depends on the decoder file (its classes, for `digit`; the providers onnxruntime has) is checked
        when the file is opened, still before anything is written.

        Raises:
            UsageError: `onnx` and `backend` both or neither, an option that goes with the other one, a seed,
                digit, device or backend name that cannot work.
            CvaeBenchError: the backend's framework is missing, the input file is missing, or the output folder
                holds files (without `force`).
        """
        from cvae_bench.backends.selection import check_backend
        from cvae_bench.core import checks

        if (self.onnx is None) == (self.backend is None):
            raise UsageError("give either --onnx FILE or --backend NAME --weights FILE")
        check_declared(self)  # the seed's and digit's bounds, as the command line holds them
        device = checks.check_device("--device", self.device)
        if self.onnx is not None:
            if self.weights is not None:
                raise UsageError("--weights goes with --backend; an --onnx file carries its own weights")
            checks.check_input_file("--onnx", self.onnx)
            checks.check_output_folder(self.out, self.force)
            return replace(self, device=device)
        assert self.backend is not None
        if self.weights is None:
            raise UsageError("--backend needs --weights FILE (canonical weights, e.g. a run's weights.safetensors)")
        if self.providers is not None:
            raise UsageError("--providers goes with --onnx (onnxruntime); --backend decodes in its framework")
        spec = DEFAULT_SPEC
        if not 0 <= self.digit < spec.num_classes:
            raise UsageError(
                f"--digit: expected a class 0-{spec.num_classes - 1} of this decoder; received {self.digit}"
            )
        info = check_backend("--backend", self.backend, device)
        checks.check_input_file("--weights", self.weights)
        checks.check_output_folder(self.out, self.force)
        return replace(self, backend=info.name, device=device)
