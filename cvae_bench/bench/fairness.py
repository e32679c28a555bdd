"""The fairness audit as a table: per measured process, the threads, precision and sync really in force."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cvae_bench.core.records import Record
from cvae_bench.runtime.allocators import memory_cell


@dataclass(frozen=True)
class AuditEntry(Record):
    """One measured process in the fairness audit.

    Attributes:
        label: the process, e.g. "torch:eager (cpu)".
        threads: the thread count asked for (None: none was; the frameworks' own defaults).
        audit: `runtime.threads.process_audit()` of the process (what its frameworks report; their keys),
            plus "ort" for onnxruntime sessions.
        compile, sync, data_on_device, warmup: what the group did about each, in words.
    """

    label: str
    threads: int | None
    audit: dict[str, Any] = field(default_factory=dict)
    compile: str = "-"
    sync: str = "-"
    data_on_device: str = "-"
    warmup: str = "-"


def _threads_cell(audit: Mapping[str, Any]) -> str:
    parts = []
    if "torch" in audit:
        t = audit["torch"]
        parts.append(f"torch intra {t['intra_op_threads']}/inter {t['inter_op_threads']}")
    if "tensorflow" in audit:
        t = audit["tensorflow"]
        env = audit.get("env", {})
        intra = t["intra_op_threads"] or f"env {env.get('TF_NUM_INTRAOP_THREADS', 'default')}"
        inter = t["inter_op_threads"] or f"env {env.get('TF_NUM_INTEROP_THREADS', 'default')}"
        parts.append(f"TF intra {intra}/inter {inter}")
    if "jax" in audit:
        flags = audit["jax"]["xla_flags"]
        parts.append(f"XLA {audit['affinity_cores']} cores" + (f" ({flags})" if flags else ""))
    if "ort" in audit:
        o = audit["ort"]
        parts.append(f"ORT intra {o['intra_op_threads']}/inter {o['inter_op_threads']}")
    wait = audit.get("env", {}).get("OMP_WAIT_POLICY")
    if wait and parts:
        parts.append(f"OpenMP wait {wait.lower()}")
    return "; ".join(parts) or "-"


def _precision_cell(audit: Mapping[str, Any]) -> str:
    parts = ["float32"]
    if "torch" in audit:
        t = audit["torch"]
        tf32 = t["cuda_matmul_allow_tf32"] or t["cudnn_allow_tf32"] or t["float32_matmul_precision"] != "highest"
        parts.append("torch TF32 " + ("ON" if tf32 else "off"))
    if "tensorflow" in audit:
        parts.append("TF TF32 " + ("ON (GPU only)" if audit["tensorflow"]["tf32_execution"] else "off"))
    if "jax" in audit:
        parts.append(f"jax matmul precision {audit['jax']['default_matmul_precision']}")
    if "ort" in audit:
        parts.append("ORT " + ", ".join(audit["ort"].get("precisions", [])))
    return "; ".join(parts)


AUDIT_HEADERS = [
    "process",
    "threads (requested)",
    "cores (affinity)",
    "threads in use",
    "compile / jit",
    "precision",
    "device sync",
    "data on device",
    "warm-up excluded",
    "memory pre-allocation",
]


def audit_rows(entries: Sequence[AuditEntry]) -> list[list[str]]:
    """Cells of the fairness table, one row per measured process."""
    return [
        [
            e.label,
            str(e.threads) if e.threads else "framework default",
            str(e.audit.get("affinity_cores", "-")),
            _threads_cell(e.audit),
            e.compile,
            _precision_cell(e.audit),
            e.sync,
            e.data_on_device,
            e.warmup,
            memory_cell(e.audit),
        ]
        for e in entries
    ]
