"""The one place onnxruntime sessions are configured: `session_options` and `make_session`.

The decoder and encoder are chains of three dense layers, so a session needs no inter-op parallelism; what
matters is how many threads one operator may use. `deploy.py` keeps its own copy of the quiet options
because it must run with onnxruntime and NumPy alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnxruntime as ort

from cvae_bench.core.records import Record

if TYPE_CHECKING:
    import onnx

#: onnxruntime's severity for "errors only": it warns about unused initializers and the like otherwise.
LOG_ERRORS_ONLY = 3
CPU = ("CPUExecutionProvider",)


@dataclass(frozen=True)
class SessionSettings(Record):
    """What a session was configured with, for result files (None: onnxruntime's default)."""

    intra_op_threads: int | None
    inter_op_threads: int | None
    execution_mode: str
    graph_optimization_level: str


def session_settings(threads: int | None = None) -> SessionSettings:
    """The settings `session_options(threads)` applies.

    Args:
        threads: intra-op threads; None keeps onnxruntime's defaults (one per core, parallel execution off).
    """
    return SessionSettings(
        intra_op_threads=threads,
        inter_op_threads=1 if threads is not None else None,
        execution_mode="ORT_SEQUENTIAL",
        graph_optimization_level="ORT_ENABLE_ALL",
    )


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """SessionOptions that log errors only, with every graph optimisation and sequential execution.

    Args:
        threads: intra-op threads, with one inter-op thread; None leaves onnxruntime to choose.

    Raises:
        ValueError: `threads` is not a positive integer.
    """
    settings = session_settings(threads)
    options = ort.SessionOptions()
    options.log_severity_level = LOG_ERRORS_ONLY
    options.execution_mode = getattr(ort.ExecutionMode, settings.execution_mode)
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, settings.graph_optimization_level)
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads: expected a positive integer or None; received {threads!r}")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def make_session(
    model: str | Path | bytes | onnx.ModelProto,
    providers: Sequence[str] = CPU,
    threads: int | None = None,
) -> Any:
    """An onnxruntime InferenceSession of `model` with `session_options(threads)`.

    Args:
        model: a path, the serialised bytes, or an in-memory `onnx.ModelProto`.
        providers: execution providers in order of preference.
        threads: see `session_options`.
    """
    source: str | bytes
    if isinstance(model, (str, Path)):
        source = str(model)
    elif isinstance(model, bytes):
        source = model
    else:
        source = model.SerializeToString()
    return ort.InferenceSession(source, session_options(threads), providers=list(providers))
