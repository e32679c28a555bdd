"""Chrome-trace JSON (jax's perfetto trace, onnxruntime's profile), read into plain events."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TraceEvent:
    """One complete event: name, start and duration in seconds, thread, and its arguments."""

    name: str
    start: float
    duration: float
    tid: Any
    args: dict[str, Any] = field(default_factory=dict)
    category: str = ""

    @property
    def end(self) -> float:
        """start + duration."""
        return self.start + self.duration


def read_chrome_trace(path: str | Path) -> list[TraceEvent]:
    """Every complete ("X") event of a Chrome-trace file (plain or gzipped JSON; a list or {"traceEvents"})."""
    p = Path(path)
    raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    data = json.loads(raw)
    events = data["traceEvents"] if isinstance(data, dict) else data
    return [
        TraceEvent(
            name=str(e.get("name", "")),
            start=float(e.get("ts", 0.0)) * 1e-6,
            duration=float(e.get("dur", 0.0)) * 1e-6,
            tid=e.get("tid"),
            args=dict(e.get("args") or {}),
            category=str(e.get("cat", "")),
        )
        for e in events
        if e.get("ph") == "X"
    ]
