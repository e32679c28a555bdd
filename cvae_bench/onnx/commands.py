"""What `cvae-bench export` and `cvae-bench sample` do, one function each, given their options record
(`onnx.options`); the CLI parses and prints.

`export_lines` and `require_export` are also what `cvae-bench run --export` calls for each run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cvae_bench.core.errors import CvaeBenchError, UsageError
from cvae_bench.core.events import SILENT, Reporter
from cvae_bench.models.spec import DEFAULT_SPEC
from cvae_bench.onnx.options import ExportCommand, SampleCommand

if TYPE_CHECKING:
    from cvae_bench.backends.registry import BackendInfo
    from cvae_bench.deploy import OnnxDecoder


def require_export(infos: Sequence[BackendInfo], device: str) -> None:
    """Refuse, before any training, backends that do not declare ONNX export (for `run --export`).

    Raises:
        CvaeBenchError: one of them does not export; the message names it and the way around.
    """
    from cvae_bench.onnx.export import exports_onnx

    for info in {i.name: i for i in infos}.values():
        if not exports_onnx(info, device):
            raise UsageError(
                f"--export: backend {info.name!r} does not export ONNX; run without --export and export its "
                "weights.safetensors with `cvae-bench export --backend torch`"
            )


def export_lines(
    info: BackendInfo,
    weights: str | Path,
    out: str | Path,
    device: str,
    dataset: str,
    data_path: str | Path | None,
    val_subset: int | None,
) -> list[str]:
    """`run --export`: export and verify one run's decoder (the `Exporter` of `training.command`).

    The run has checked its options and fetched its data already; its export is an `ExportCommand` with the
    command's defaults for the rest.

    Returns:
        The lines to print.
    """
    cmd = ExportCommand(
        backend=info.name,
        weights=str(weights),
        out=str(out),
        device=device,
        dataset=dataset,
        data_path=str(data_path) if data_path else None,
        val_subset=val_subset,
    )
    return _export_lines(cmd)


def _export_lines(cmd: ExportCommand, reporter: Reporter = SILENT) -> list[str]:
    """Export, verify and write one part (`export_part`), and describe it: `ExportResult.lines()` + `written …`."""
    from cvae_bench.onnx.export import export_part

    return [*export_part(cmd, reporter).lines(), f"written {cmd.out}"]


def export_command(cmd: ExportCommand, reporter: Reporter) -> list[str]:
    """`cvae-bench export`: check every option first (`ExportCommand.check`), then read the weights, fetch
    the data set if needed (`reporter` hears its progress), export, verify and write.

    Returns:
        The lines to print.

    Raises:
        UsageError: an option that cannot work (nothing is started or written).
        CvaeBenchError: a missing or unreadable weights file, a refused -o, or any failure of the export.
    """
    return _export_lines(cmd.check(), reporter)


def describe_source(decoder: OnnxDecoder) -> str:
    """E.g. `decoder.onnx: torch, fp32, val -ELBO 234.91 (CPUExecutionProvider)` from the file's metadata."""
    meta = decoder.metadata
    parts = [meta.get("backend", ""), meta.get("precision", "")]
    if "val_elbo_onnx" in meta:
        with contextlib.suppress(ValueError):  # someone else's metadata: leave the score out of the title
            parts.append(f"val -ELBO {float(meta['val_elbo_onnx']):.2f}")
    return f"{Path(decoder.path).name}: {', '.join(p for p in parts if p)} ({', '.join(decoder.providers)})"


def sample_command(cmd: SampleCommand) -> list[str]:
    """`cvae-bench sample`: the three pictures of an ONNX decoder or of a backend with weights.

    Every option is checked first (`SampleCommand.check`); the decoder's own classes (for `--digit`) and the
    providers are checked when the file is opened, before anything is written.

    Returns:
        The paths written, one per line.

    Raises:
        UsageError: a bad combination of options, or a value that cannot work.
        CvaeBenchError: a missing file, a file that is not a decoder, or an unavailable provider.
    """
    from cvae_bench.onnx.figures import write_figures

    cmd = cmd.check()
    if cmd.onnx is not None:
        from cvae_bench.deploy import DecoderError, OnnxDecoder

        chosen = [p.strip() for p in cmd.providers.split(",") if p.strip()] if cmd.providers else None
        try:
            decoder = OnnxDecoder(cmd.onnx, chosen)
            paths = write_figures(
                decoder.decode,
                cmd.out,
                latent_dim=decoder.latent_dim,
                num_classes=decoder.num_classes,
                seed=cmd.seed,
                digit=cmd.digit,
                source=describe_source(decoder),
            )
        except DecoderError as exc:
            raise CvaeBenchError(str(exc)) from None
        return [str(p) for p in paths]

    from cvae_bench.backends import registry
    from cvae_bench.runtime.files import load_weights
    from cvae_bench.runtime.worker import RemoteBackend, Worker

    assert cmd.backend is not None and cmd.weights is not None  # as `check` leaves a backend's record
    info = registry.get(cmd.backend)
    spec = DEFAULT_SPEC
    arrays = load_weights(cmd.weights, spec)
    with Worker(info) as worker:
        remote = RemoteBackend(worker, spec, 0, cmd.device)
        remote.set_weights(arrays)
        paths = write_figures(
            remote.decode,
            cmd.out,
            latent_dim=spec.latent_dim,
            num_classes=spec.num_classes,
            seed=cmd.seed,
            digit=cmd.digit,
            source=f"{Path(cmd.weights).name} on {info.name}",
        )
    return [str(p) for p in paths]
