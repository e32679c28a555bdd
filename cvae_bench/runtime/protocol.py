"""The worker protocol's framing: an 8-byte big-endian length, then a pickle, in both directions."""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any

_HEADER = struct.Struct(">Q")


def write_frame(stream: IO[bytes], obj: Any) -> None:
    """Write one length-prefixed pickle frame and flush."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """Read one frame; returns the sentinel `EOF` at end of stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return EOF
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return EOF
    return pickle.loads(data)


EOF = object()
