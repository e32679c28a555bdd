"""What every exported ONNX file says about itself: the `metadata_props` as one typed record.

ONNX metadata is a map of strings; `OnnxMetadata.to_props()` writes it (the keys, their order and their
formatting are a file format: see docs/design.md) and `from_props()` reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cvae_bench.core.errors import OnnxExportError
from cvae_bench.core.records import Record
from cvae_bench.models.spec import ModelSpec
from cvae_bench.onnx.check import Verdict


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class OnnxMetadata(Record):
    """The provenance, interface sizes, scores and verdicts of one exported part at one precision."""

    cvae_bench_version: str
    part: str
    backend: str
    framework_versions: dict[str, str]
    exporter: str
    exporter_version: str
    exporter_details: dict[str, Any]
    opset: int
    precision: str
    latent_dim: int
    num_classes: int
    image_shape: tuple[int, ...]
    spec: dict[str, Any]
    dataset: str
    val_examples: int
    #: The framework's val −ELBO on these weights, and the val −ELBO with this file in its place.
    val_elbo: float
    val_elbo_onnx: float
    verification: Verdict
    weights_sha256: str | None = None
    #: The fp32 check, kept in a reduced-precision file whose own verdict is `verification`.
    verification_fp32: Verdict | None = field(default=None)

    @property
    def model_spec(self) -> ModelSpec:
        """The model spec the file was exported from."""
        return ModelSpec.from_dict(self.spec)

    def to_props(self) -> dict[str, str]:
        """The `metadata_props` of the file, in the order they are written."""
        props = {
            "cvae_bench_version": self.cvae_bench_version,
            "part": self.part,
            "backend": self.backend,
            "framework_versions": _json(self.framework_versions),
            "exporter": self.exporter,
            "exporter_version": self.exporter_version,
            "exporter_details": _json(self.exporter_details),
            "opset": str(self.opset),
            "precision": self.precision,
            "latent_dim": str(self.latent_dim),
            "num_classes": str(self.num_classes),
            "image_shape": json.dumps(list(self.image_shape)),
            "spec": _json(self.spec),
            "dataset": self.dataset,
            "val_examples": str(self.val_examples),
            "val_elbo": f"{self.val_elbo:.6f}",
            "val_elbo_onnx": f"{self.val_elbo_onnx:.6f}",
            "verification": self.verification.compact(),
        }
        if self.weights_sha256:
            props["weights_sha256"] = self.weights_sha256
        if self.verification_fp32 is not None:
            props["verification_fp32"] = self.verification_fp32.compact()
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> OnnxMetadata:
        """Read the record back from a file's `metadata_props` (keys it does not know are ignored).

        Raises:
            OnnxExportError: a key is missing or its value does not parse.
        """
        try:
            fp32 = props.get("verification_fp32")
            return cls(
                cvae_bench_version=props["cvae_bench_version"],
                part=props["part"],
                backend=props["backend"],
                framework_versions=json.loads(props["framework_versions"]),
                exporter=props["exporter"],
                exporter_version=props["exporter_version"],
                exporter_details=json.loads(props["exporter_details"]),
                opset=int(props["opset"]),
                precision=props["precision"],
                latent_dim=int(props["latent_dim"]),
                num_classes=int(props["num_classes"]),
                image_shape=tuple(json.loads(props["image_shape"])),
                spec=json.loads(props["spec"]),
                dataset=props["dataset"],
                val_examples=int(props["val_examples"]),
                val_elbo=float(props["val_elbo"]),
                val_elbo_onnx=float(props["val_elbo_onnx"]),
                verification=Verdict.from_compact(props["verification"]),
                weights_sha256=props.get("weights_sha256"),
                verification_fp32=Verdict.from_compact(fp32) if fp32 else None,
            )
        except (KeyError, ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            raise OnnxExportError(f"the file's cvae-bench metadata is incomplete or malformed: {exc!r}") from exc
