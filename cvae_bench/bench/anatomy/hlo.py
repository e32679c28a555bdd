"""What each XLA thunk computes, from the HLO modules the profiler stores in its XSpace (xplane.pb).

A thunk's name is an HLO instruction name, and that name does not say what it computes: XLA names a fusion
after two of its ops ("multiply_add_fusion" may be Adam's moment update or the loss), TensorFlow's XLA names
a dot after the TF op ("MatMul.24"), and a YNNPACK fusion ("ynn_fusion.2") may hold a GEMM or a reduction.
Both jax.profiler and TF's profiler store each compiled module's HloProto in the "/host:metadata" plane,
and every instruction there carries its opcode and `metadata.op_name`, the name scope it was traced under
("jit(train_step)/adam/mul", "adam/Sub_2", "cvae_1/stateless_random_normal/StatelessRandomNormalV2").
`categories_from_xspace` reads those, so that a fusion can be filed by what is inside it.

The protos are decoded here from their wire format (a handful of field numbers, stable in XLA and TSL), so
that neither adapter needs the other framework's proto classes (jax ships no xplane/HLO proto reader).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from cvae_bench.bench.roofline import DATA, ELEMENTWISE, GEMM, OPTIMIZER

# Field numbers: tsl/profiler/protobuf/xplane.proto and xla/service/hlo.proto, xla/xla_data.proto.
_XSPACE_PLANES = 1
_XPLANE_NAME, _XPLANE_EVENT_METADATA, _XPLANE_STAT_METADATA = 2, 4, 5
_MAP_KEY, _MAP_VALUE = 1, 2
_XEVENTMETADATA_STATS = 5
_XSTAT_METADATA_ID, _XSTAT_BYTES = 1, 6
_XSTATMETADATA_NAME = 2
_HLOPROTO_MODULE = 1
_MODULE_COMPUTATIONS = 3
_COMPUTATION_INSTRUCTIONS, _COMPUTATION_ID = 2, 5
_INSTR_NAME, _INSTR_OPCODE, _INSTR_METADATA, _INSTR_CALLED = 1, 2, 7, 38
_OPMETADATA_OP_NAME = 2

#: Opcodes that compute nothing themselves; their op_name (often empty, or the first user's after CSE) says
#: nothing about whose work a fusion does.
_PLUMBING = frozenset({"parameter", "constant", "bitcast", "tuple", "get-tuple-element", "copy", "broadcast"})
_GEMM_OPCODES = frozenset({"dot", "convolution"})
#: Opcodes that pick or draw a batch's data (the batch gather, the ε draws).
_DATA_OPCODES = frozenset({"gather", "dynamic-slice", "rng", "rng-bit-generator", "rng-get-and-update-state"})
#: Name scopes of work that is not the model's: Keras optimisers trace under their name ("adam/…",
#: "jit(train_step)/adam/…"); random draws under the RNG's ("stateless_random_normal/…", "jit(_normal)").
_SCOPES = (
    (OPTIMIZER, re.compile(r"(?:^|/)(?:adamw?|optimizer|apply_gradients)(?:_\d+)?/", re.IGNORECASE)),
    (DATA, re.compile(r"random|threefry|philox|jit\(_(?:normal|uniform)", re.IGNORECASE)),
)


@dataclass(frozen=True)
class Instruction:
    """One instruction a thunk may run: its opcode, and the (opcode, op_name) of everything it calls."""

    name: str
    opcode: str
    inner: tuple[tuple[str, str], ...]


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field of one serialised message; length-delimited values as bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield number, value
        elif wire == 2:
            n, i = _varint(buf, i)
            yield number, buf[i : i + n]
            i += n
        elif wire in (1, 5):  # fixed 64 / 32 bits: no field read here has them, skip
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _bytes(buf: bytes, number: int) -> list[bytes]:
    return [v for n, v in _fields(buf) if n == number and isinstance(v, bytes)]


def _int(buf: bytes, number: int) -> int:
    return next((v for n, v in _fields(buf) if n == number and isinstance(v, int)), 0)


def _ints(buf: bytes, number: int) -> list[int]:
    """A repeated integer field, packed (proto3's default) or not."""
    out: list[int] = []
    for n, v in _fields(buf):
        if n != number:
            continue
        if isinstance(v, int):
            out.append(v)
            continue
        i = 0
        while i < len(v):
            x, i = _varint(v, i)
            out.append(x)
    return out


def _text(buf: bytes, number: int) -> str:
    return next(iter(_bytes(buf, number)), b"").decode("utf-8", "replace")


def hlo_protos(xspace: bytes) -> list[bytes]:
    """The serialised HloProto of every module the profiler stored (the "Hlo Proto" stats of the metadata plane)."""
    out = []
    for plane in _bytes(xspace, _XSPACE_PLANES):
        if _text(plane, _XPLANE_NAME) != "/host:metadata":
            continue
        stat_names = {}
        for entry in _bytes(plane, _XPLANE_STAT_METADATA):
            key, value = _int(entry, _MAP_KEY), next(iter(_bytes(entry, _MAP_VALUE)), b"")
            stat_names[key] = _text(value, _XSTATMETADATA_NAME)
        for entry in _bytes(plane, _XPLANE_EVENT_METADATA):
            for meta in _bytes(entry, _MAP_VALUE):
                for stat in _bytes(meta, _XEVENTMETADATA_STATS):
                    if stat_names.get(_int(stat, _XSTAT_METADATA_ID)) == "Hlo Proto":
                        out.extend(_bytes(stat, _XSTAT_BYTES))
    return out


def instructions(hlo_proto: bytes) -> list[Instruction]:
    """Every instruction of one module, each with what the computations it calls (a fusion's body) hold."""
    module = next(iter(_bytes(hlo_proto, _HLOPROTO_MODULE)), b"")
    computations: dict[int, list[bytes]] = {}
    for comp in _bytes(module, _MODULE_COMPUTATIONS):
        computations[_int(comp, _COMPUTATION_ID)] = _bytes(comp, _COMPUTATION_INSTRUCTIONS)

    def op(instr: bytes) -> tuple[str, str]:
        metadata = next(iter(_bytes(instr, _INSTR_METADATA)), b"")
        return _text(instr, _INSTR_OPCODE), _text(metadata, _OPMETADATA_OP_NAME)

    out = []
    for body in computations.values():
        for instr in body:
            called = [i for c in _ints(instr, _INSTR_CALLED) for i in computations.get(c, [])]
            opcode = _text(instr, _INSTR_OPCODE)
            # a while/call/conditional is not one thunk's work: its body's thunks are profiled on their own
            inner = tuple(op(i) for i in called) if opcode == "fusion" else (op(instr),)
            out.append(Instruction(_text(instr, _INSTR_NAME), opcode, inner))
    return out


def category(instr: Instruction) -> str | None:
    """The category of a thunk by what it computes, or None to leave it to its name's pattern.

    Anything holding a dot or convolution is a GEMM. A fusion without one is not, whatever its name
    ("ynn_fusion" also holds reductions): it is the optimiser's (or the RNG's) work when most of its computing
    instructions were traced under that name scope, data when it gathers or draws, element-wise otherwise.
    Plumbing (parameters, constants, bitcasts, copies, broadcasts) does not vote: CSE gives a shared constant
    the op_name of whichever op came first.
    """
    if instr.opcode in _GEMM_OPCODES or any(opcode in _GEMM_OPCODES for opcode, _ in instr.inner):
        return GEMM
    if instr.opcode != "fusion":
        return None
    scopes = [name for opcode, name in instr.inner if opcode not in _PLUMBING and name]
    for cat, pattern in _SCOPES:
        if sum(1 for s in scopes if pattern.search(s)) * 2 > len(scopes) > 0:
            return cat
    if any(opcode in _DATA_OPCODES for opcode, _ in instr.inner):
        return DATA
    return ELEMENTWISE


def categories_from_xspace(xspace: bytes) -> dict[str, str]:
    """{thunk name: category} for the thunks whose HLO says what they compute.

    Thunk events carry the instruction name, and a name used in two modules (small jitted helpers have
    their own "copy" or "fusion") is kept only when both agree; the others fall back to name patterns.
    """
    found: dict[str, str | None] = {}
    for proto in hlo_protos(xspace):
        for instr in instructions(proto):
            cat = category(instr)
            if instr.name in found and found[instr.name] != cat:
                cat = None
            found[instr.name] = cat
    return {name: cat for name, cat in found.items() if cat is not None}
