"""What `cvae-bench export` and `cvae-bench sample` do, one function each; the CLI parses and prints.

`export_lines` and `require_export` are also what `cvae-bench run --export` calls for each run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvae_bench.core.defaults import DEFAULT_IDLE_TIMEOUT
from cvae_bench.core.errors import CvaeBenchError, UsageError
from cvae_bench.data.specs import DEFAULT_DATASET
from cvae_bench.models.spec import DEFAULT_SPEC

if TYPE_CHECKING:
    from cvae_bench.backends.registry import BackendInfo
    from cvae_bench.deploy import OnnxDecoder

Progress = Callable[[str], None]


def _available(name: str) -> BackendInfo:
    from cvae_bench.backends import registry

    info = registry.get(name)
    if not info.available:
        raise CvaeBenchError(info.unavailable_reason())
    return info


def _same_file(a: Path, b: Path) -> bool:
    """The same file, through links and relative paths too."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output(out: str | Path, inputs: Iterable[str | Path] = (), *, force: bool = False) -> None:
    """Refuse an output file that is one of the inputs, or that exists already unless `force`.

    Called before any work, so that nothing is computed for a file that would not be written.

    Raises:
        CvaeBenchError: `out` is an input (always refused: the export reads it) or exists without `force`.
    """
    target = Path(out)
    for source in inputs:
        if _same_file(target, Path(source)):
            raise CvaeBenchError(f"-o {target} is the input {source}; it is read, so write to another file")
    if target.is_dir():
        raise CvaeBenchError(f"-o {target} is a folder; expected a file path such as {target / 'decoder.onnx'}")
    if target.exists() and not force:
        raise CvaeBenchError(f"-o {target} exists; pass --force to replace it, or choose another file")


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
    **kwargs: Any,
) -> list[str]:
    """Export, verify and write one part (`export_part`), and describe it: `ExportResult.lines()` + `written …`.

    Args:
        info, weights, out, device, dataset, data_path, val_subset: as for `export_part`.
        kwargs: the rest of `export_part`'s options (part, precision, opset, idle_timeout, …).

    Returns:
        The lines to print.
    """
    from cvae_bench.onnx.export import export_part

    result = export_part(
        info,
        weights,
        out,
        device=device,
        dataset=dataset,
        data_path=str(data_path) if data_path else None,
        val_subset=val_subset,
        **kwargs,
    )
    return [*result.lines(), f"written {out}"]


def export_command(
    backend: str,
    weights: str | Path,
    out: str | Path,
    *,
    part: str = "decoder",
    precision: str = "fp32",
    opset: int | None = None,
    device: str = "cpu",
    dataset: str = DEFAULT_DATASET,
    data_path: str | None = None,
    val_subset: int | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    force: bool = False,
    progress: Progress | None = None,
) -> list[str]:
    """`cvae-bench export`: refuse a bad -o first, fetch the data set if needed, then `export_lines`.

    Raises:
        CvaeBenchError: an unknown or unavailable backend, a refused -o, or any failure of the export.
    """
    from cvae_bench.data.loading import load_dataset
    from cvae_bench.onnx.interface import DEFAULT_OPSET

    check_output(out, [weights], force=force)
    info = _available(backend)
    ds = load_dataset(dataset, data_path, progress=progress)
    return export_lines(
        info,
        Path(weights),
        Path(out),
        device,
        dataset,
        ds.path,
        val_subset,
        part=part,
        precision=precision,
        opset=DEFAULT_OPSET if opset is None else opset,
        idle_timeout=idle_timeout,
    )


def describe_source(decoder: OnnxDecoder) -> str:
    """E.g. `decoder.onnx: torch, fp32, val -ELBO 234.91 (CPUExecutionProvider)` from the file's metadata."""
    meta = decoder.metadata
    parts = [meta.get("backend", ""), meta.get("precision", "")]
    if "val_elbo_onnx" in meta:
        with contextlib.suppress(ValueError):  # someone else's metadata: leave the score out of the title
            parts.append(f"val -ELBO {float(meta['val_elbo_onnx']):.2f}")
    return f"{Path(decoder.path).name}: {', '.join(p for p in parts if p)} ({', '.join(decoder.providers)})"


def sample_command(
    *,
    onnx_path: str | None = None,
    providers: str | None = None,
    backend: str | None = None,
    weights: str | None = None,
    device: str = "cpu",
    out_dir: str | Path = "samples",
    seed: int = 0,
    digit: int = 0,
) -> list[str]:
    """`cvae-bench sample`: the three pictures of an ONNX decoder or of a backend with weights.

    Args:
        onnx_path: an exported decoder (with `providers`, comma-separated), or
        backend, weights, device: a backend that decodes the weights in its framework.

    Returns:
        The paths written, one per line.

    Raises:
        CvaeBenchError: a bad combination of options, a file that is not a decoder, or a digit out of range.
    """
    from cvae_bench.onnx.figures import write_figures

    if (onnx_path is None) == (backend is None):
        raise UsageError("give either --onnx FILE or --backend NAME --weights FILE")
    if onnx_path is not None:
        if weights is not None:
            raise UsageError("--weights goes with --backend; an --onnx file carries its own weights")
        from cvae_bench.deploy import DecoderError, OnnxDecoder

        chosen = [p.strip() for p in providers.split(",") if p.strip()] if providers else None
        try:
            decoder = OnnxDecoder(onnx_path, chosen)
            paths = write_figures(
                decoder.decode,
                out_dir,
                latent_dim=decoder.latent_dim,
                num_classes=decoder.num_classes,
                seed=seed,
                digit=digit,
                source=describe_source(decoder),
            )
        except DecoderError as exc:
            raise CvaeBenchError(str(exc)) from None
        return [str(p) for p in paths]

    from cvae_bench.runtime.files import load_weights
    from cvae_bench.runtime.worker import RemoteBackend, Worker

    if weights is None:
        raise UsageError("--backend needs --weights FILE (canonical weights, e.g. a run's weights.safetensors)")
    if providers is not None:
        raise UsageError("--providers goes with --onnx (onnxruntime); --backend decodes in its framework")
    assert backend is not None
    info = _available(backend)
    spec = DEFAULT_SPEC
    if not 0 <= digit < spec.num_classes:  # before a worker starts
        raise UsageError(f"--digit: expected a class 0-{spec.num_classes - 1} of this decoder; received {digit}")
    arrays = load_weights(weights, spec)
    with Worker(info) as worker:
        remote = RemoteBackend(worker, spec, 0, device)
        remote.set_weights(arrays)
        paths = write_figures(
            remote.decode,
            out_dir,
            latent_dim=spec.latent_dim,
            num_classes=spec.num_classes,
            seed=seed,
            digit=digit,
            source=f"{Path(weights).name} on {info.name}",
        )
    return [str(p) for p in paths]
