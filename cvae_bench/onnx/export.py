"""ONNX export: the backend's exporter in its worker, then the one interface, checks and metadata, then the file.

Only onnx and onnxruntime are imported here (no framework): the framework's exporter runs in the backend's
worker (`Backend.export_onnx`), and its file is normalised (`onnx.interface`), checked against the framework
(`onnx.check`), optionally reduced in precision (`onnx.variants`), stamped (`onnx.metadata`) and written
atomically. Nothing of training/ is needed: the val −ELBO comes from the shared evaluator (`data.evaluation`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import onnx

from cvae_bench import __version__
from cvae_bench.backends import registry
from cvae_bench.backends.base import F32, Backend
from cvae_bench.backends.registry import BackendInfo
from cvae_bench.core.errors import OnnxExportError
from cvae_bench.core.events import SILENT, Reporter
from cvae_bench.core.records import Record
from cvae_bench.data.evaluation import evaluate_job
from cvae_bench.data.loading import as_float, load_dataset
from cvae_bench.data.specs import DEFAULT_DATASET
from cvae_bench.models.evaluator import Evaluator
from cvae_bench.models.spec import DEFAULT_SPEC, ModelSpec
from cvae_bench.onnx.check import Verdict, check_inputs, check_structure, verify
from cvae_bench.onnx.interface import interface, normalize_interface, set_metadata
from cvae_bench.onnx.metadata import OnnxMetadata
from cvae_bench.onnx.options import ExportCommand, ExportSettings
from cvae_bench.onnx.scratch import scratch_dir
from cvae_bench.onnx.sessions import make_session
from cvae_bench.onnx.variants import SPEED_BATCH, compare_speed, make_variant, onnx_evaluation, speed_feeds
from cvae_bench.runtime.files import atomic_path, ensure_dir, file_sha256, load_weights
from cvae_bench.runtime.worker import RemoteBackend, Worker


# -- the export -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measurement(Record):
    """What one precision of the part costs: file size, speed in onnxruntime (CPU), val −ELBO."""

    precision: str
    size_bytes: int
    ms_per_call: float | None
    val_elbo: float

    def line(self, name: str, versus: str, baseline: float, note: str = "") -> str:
        """E.g. `decoder.onnx: fp16, 0.42 MB, 1.9 ms/call @1024, val -ELBO 234.911 (+0.003 vs fp32)`."""
        speed = (
            f"{self.ms_per_call:.2f} ms/call @{SPEED_BATCH}" if self.ms_per_call is not None else "speed not measured"
        )
        delta = self.val_elbo - baseline
        delta = 0.0 if abs(delta) < 5e-4 else delta  # no "-0.000"
        return (
            f"{name}: {self.precision}{note}, {self.size_bytes / 1e6:.2f} MB, {speed}, "
            f"val -ELBO {self.val_elbo:.3f} ({delta:+.3f} vs {versus})"
        )


@dataclass(frozen=True)
class ExportResult(Record):
    """A written, verified ONNX part and everything that was measured on the way."""

    path: str
    part: str
    backend: str
    precision: str
    exporter: str
    opset: int
    val_elbo: float
    verdicts: dict[str, Verdict]
    measurements: dict[str, Measurement]
    metadata: OnnxMetadata

    def lines(self) -> list[str]:
        """The human summary: exporter, verdicts, and one line per precision."""
        name = Path(self.path).name
        out = [f"{name}: {self.part} of {self.backend}, exported by {self.exporter}, opset {self.opset}"]
        out += [v.line() for v in self.verdicts.values()]
        fp32 = self.measurements["fp32"]
        note = "" if self.precision == "fp32" else " (reference, not written)"
        out.append(fp32.line(name, self.backend, self.val_elbo, note))
        if self.precision != "fp32":
            out.append(self.measurements[self.precision].line(name, "fp32", fp32.val_elbo))
        return out


def export_part(
    cmd: ExportCommand,
    reporter: Reporter = SILENT,
    *,
    measure_speed: bool = True,
    spec: ModelSpec = DEFAULT_SPEC,
) -> ExportResult:
    """Export `cmd.part` of `cmd.weights` with `cmd.backend`'s exporter, normalise, verify, and write `cmd.out`.

    The backend runs in a worker of its own; this process imports onnx and onnxruntime only. The file
    is written (atomically) only once every check has passed; on any failure nothing is left behind.

    The weights are read first, then the data set is fetched if needed (`reporter` hears its progress), then
    the worker starts.

    Args:
        cmd: what to export (`ExportCommand.check` has passed, or the caller knows its values are good).
        reporter: hears the progress of the data set's download or verification.
        measure_speed: time onnxruntime at batch 1024.
        spec: the model.

    Returns:
        What was written and measured.

    Raises:
        OnnxExportError: the backend cannot export, or its file cannot be brought to the interface.
        OnnxCheckError: onnxruntime differs from the framework beyond the tolerance.
    """
    info = registry.get(cmd.backend)
    settings = cmd.settings(measure_speed=measure_speed, spec=spec)
    weights = load_weights(cmd.weights, spec)
    ds = load_dataset(cmd.dataset, cmd.data_path, reporter=reporter)
    ensure_dir(Path(cmd.out).parent)  # an unwritable folder fails now, not after the verification
    _, _, x_test, y_test = as_float(ds)
    with Worker(info, idle_timeout=cmd.idle_timeout) as worker:
        backend = RemoteBackend(worker, spec, 0, cmd.device)
        if not backend.info.get("capabilities", {}).get("onnx_export"):
            raise OnnxExportError(
                f"backend {info.name!r} does not export ONNX (its Capabilities.onnx_export is False); "
                "export the same weights with one that does, e.g. --backend torch"
            )
        backend.set_weights(weights)
        evaluation = backend.run_job(
            evaluate_job, dataset=cmd.dataset, data_path=str(ds.path), val_subset=cmd.val_subset
        )
        return export_verified(
            backend,
            cmd.out,
            settings,
            backend_name=info.name,
            versions=backend.info["versions"],
            x_test=x_test,
            y_test=y_test,
            val_elbo=evaluation.val_elbo,
            weights_sha256=file_sha256(cmd.weights),
        )


class Exporting(Protocol):
    """What the export needs of a backend, local (`Backend`) or in a worker (`RemoteBackend`)."""

    def export_onnx(self, path: str, part: str = "decoder", opset: int | None = None) -> dict[str, Any]: ...
    def encode(self, x: F32, y: F32) -> tuple[F32, F32]: ...
    def decode(self, z: F32, y: F32) -> F32: ...


def export_verified(
    backend: Exporting,
    out_path: str | Path,
    settings: ExportSettings,
    *,
    backend_name: str,
    versions: dict[str, str],
    x_test: F32,
    y_test: F32,
    val_elbo: float,
    weights_sha256: str | None,
) -> ExportResult:
    """The export itself, for a backend that already holds the weights.

    Raw export to a temporary folder, `normalize_interface`, `check_structure`, the fp32 check against the
    backend at `TOLERANCES`, the variant and its check, the measurements, the metadata, the atomic write.

    Args:
        backend: the framework's networks, local or in a worker; the reference of the checks.
        out_path: where the ONNX file goes.
        settings: the part, precision, opset, data set, validation subset, timing and model.
        backend_name, versions: who exported it, recorded in the metadata.
        x_test, y_test: the validation split, as floats (the real-input checks and the ONNX val −ELBO).
        val_elbo: the shared evaluator's score of the weights in the framework.
        weights_sha256: of the weights file, if there is one.
    """
    part, precision, opset, spec = settings.part, settings.precision, settings.opset, settings.spec
    dataset, val_subset = settings.dataset, settings.val_subset
    # The exporter writes into a scratch folder that goes however this ends (a failing exporter included).
    with scratch_dir("export") as tmp:
        raw_path = tmp / f"raw-{part}.onnx"
        exporter = backend.export_onnx(str(raw_path), part=part, opset=opset)
        try:
            raw = onnx.load(raw_path)
        except (OSError, onnx.checker.ValidationError, ValueError) as exc:  # also protobuf's DecodeError
            raise OnnxExportError(f"the exporter of {backend_name!r} wrote no readable ONNX file: {exc}") from exc
    model = normalize_interface(raw, part, spec, opset)
    final_opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    check_structure(model, part, spec)
    reference = backend.decode if part == "decoder" else backend.encode
    cases = check_inputs(part, x_test, y_test, backend.encode, spec=spec)
    candidates = {"fp32": model}
    if precision != "fp32":
        candidates[precision] = make_variant(model, precision)
        check_structure(candidates[precision], part, spec)
    verdicts: dict[str, Verdict] = {}
    measurements: dict[str, Measurement] = {}
    x_val, y_val = x_test[:val_subset], y_test[:val_subset]
    sessions = {name: make_session(candidate) for name, candidate in candidates.items()}
    for name, sess in sessions.items():
        verdicts[name] = verify(sess, reference, cases, part=part, precision=name, reference_name=backend_name)
        score = onnx_evaluation(part, sess, backend, x_val, y_val, spec).val_elbo
        measurements[name] = Measurement(name, 0, None, score)
    if settings.measure_speed:  # last, once the framework's threads are idle
        for name, ms in compare_speed(sessions, speed_feeds(part, spec)).items():
            measurements[name] = Measurement(name, 0, ms, measurements[name].val_elbo)
    want = interface(part, spec)
    metadata = OnnxMetadata(
        cvae_bench_version=__version__,
        part=part,
        backend=backend_name,
        framework_versions=dict(versions),
        exporter=str(exporter.get("exporter", "unknown")),
        exporter_version=str(exporter.get("exporter_version", "unknown")),
        exporter_details=dict(exporter),
        opset=final_opset,
        precision=precision,
        latent_dim=spec.latent_dim,
        num_classes=spec.num_classes,
        image_shape=tuple(spec.image_shape),
        spec=json.loads(json.dumps(spec.to_dict())),  # JSON types, as the file gives them back
        dataset=dataset,
        val_examples=len(x_val),
        val_elbo=val_elbo,
        val_elbo_onnx=measurements[precision].val_elbo,
        verification=verdicts[precision],
        weights_sha256=weights_sha256 or None,
        verification_fp32=verdicts["fp32"] if precision != "fp32" else None,
    )
    for name, candidate in candidates.items():
        candidate.graph.name = f"cvae_{part}"
        candidate.doc_string = (
            f"cvae-bench {part} of the Keras CVAE tutorial ({dataset}): "
            f"{', '.join(s.describe() for s in want.inputs)} -> {', '.join(s.describe() for s in want.outputs)}"
        )
        set_metadata(candidate, dataclasses.replace(metadata, precision=name).to_props())
        m = measurements[name]
        measurements[name] = Measurement(name, candidate.ByteSize(), m.ms_per_call, m.val_elbo)
    out = Path(out_path)
    ensure_dir(out.parent)
    try:
        with atomic_path(out) as tmp_out:
            tmp_out.write_bytes(candidates[precision].SerializeToString())
    except OSError as exc:  # a full disk or a folder made read-only meanwhile: one line, nothing left
        raise OnnxExportError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return ExportResult(
        path=str(out),
        part=part,
        backend=backend_name,
        precision=precision,
        exporter=f"{metadata.exporter} [{metadata.exporter_version}]",
        opset=final_opset,
        val_elbo=val_elbo,
        verdicts=verdicts,
        measurements=measurements,
        metadata=metadata,
    )


def export_decoder(
    backend: Backend, path: str, *, dataset: str = DEFAULT_DATASET, data_path: str | None = None
) -> dict[str, str]:
    """In a worker, next to `backend`: its decoder with its current weights, exported and verified.

    The same pipeline as `export_part` (the benchmarks call it); the val −ELBO is the shared evaluator's,
    run here, and there is no weights file to hash. Returns the file's metadata as written
    (`OnnxMetadata.to_props()`; `OnnxMetadata.from_props` reads it back).
    """
    _, _, x_test, y_test = as_float(load_dataset(dataset, data_path, download=False))
    evaluation = Evaluator(x_test, y_test, backend.spec)(backend)
    result = export_verified(
        backend,
        path,
        ExportSettings(dataset=dataset, measure_speed=False, spec=backend.spec),
        backend_name=backend.name,
        versions=backend.framework_versions(),
        x_test=x_test,
        y_test=y_test,
        val_elbo=evaluation.val_elbo,
        weights_sha256=None,
    )
    return result.metadata.to_props()


def exports_onnx(info: BackendInfo, device: str = "cpu", spec: ModelSpec = DEFAULT_SPEC) -> bool:
    """Whether the backend declares ONNX export (asked of a short-lived worker: no framework import here)."""
    with Worker(info) as worker:
        backend = RemoteBackend(worker, spec, 0, device)
        return bool(backend.info.get("capabilities", {}).get("onnx_export"))
