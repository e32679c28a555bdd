"""The worker protocol's framing: an 8-byte big-endian length, then a pickle, in both directions."""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any

_HEADER = struct.Struct(">Q")


class ProtocolError(Exception):
    """A frame that arrived whole but cannot be read: its pickle fails to load, or it is not an answer."""


def write_frame(stream: IO[bytes], obj: Any) -> None:
    """Write one length-prefixed pickle frame and flush."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """Read one frame; returns the sentinel `EOF` at end of stream.

    Raises:
        ProtocolError: the frame's pickle cannot be loaded (unpickling runs code, so anything may fail).
    """
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return EOF
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return EOF
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise ProtocolError(f"a frame of {size} bytes failed to unpickle: {type(exc).__name__}: {exc}") from exc


def check_answer(frame: Any) -> tuple[str, Any]:
    """Check a worker's answer frame and return its kind and payload.

    Returns:
        ("event", data), ("result", value) or ("error", the frame itself, with `type` and `message`).

    Raises:
        ProtocolError: the frame is not one of the three answers, or lacks what its kind needs.
    """
    if not isinstance(frame, dict):
        raise ProtocolError(f"an answer must be a dict, got {type(frame).__name__}")
    kind = frame.get("kind")
    if kind == "event" and "data" in frame:
        return kind, frame["data"]
    if kind == "result" and "value" in frame:
        return kind, frame["value"]
    if kind == "error" and isinstance(frame.get("type"), str) and isinstance(frame.get("message"), str):
        return kind, frame
    raise ProtocolError(f"malformed answer of kind {kind!r} with keys {sorted(map(str, frame))}")


EOF = object()
