"""Bounds-checked reader for the TFLite flatbuffer (schema.fbs), only the fields the compiler needs.

Every access checks offsets against the buffer, so a truncated or corrupt file raises
`CompileError` with what was being read, never IndexError or a crash.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

from shared.tiny.compiler.errors import CompileError

# TensorType enum of schema.fbs
TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
                7: "int16", 8: "complex64", 9: "int8", 10: "float64"}
_NUMPY_TYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "int64": np.int64,
                "int16": np.int16, "int8": np.int8, "float16": np.float16, "bool": np.bool_}


class _Table:
    """One flatbuffer table at absolute position `pos` in `buf`."""

    def __init__(self, reader: _Reader, pos: int, what: str) -> None:
        self.r = reader
        self.pos = pos
        self.what = what
        vt = pos - reader.i32(pos, what)
        vt_size = reader.u16(vt, what)
        if vt_size < 4 or vt_size % 2:
            raise CompileError(f"malformed TFLite flatbuffer: bad vtable for {what}")
        reader.check(vt, vt_size, what)
        self.vt = vt
        self.vt_size = vt_size

    def _field(self, fid: int) -> int:
        slot = 4 + 2 * fid
        if slot >= self.vt_size:
            return 0
        return self.r.u16(self.vt + slot, self.what)

    def scalar(self, fid: int, fmt: str, default: int | float = 0) -> int | float:
        off = self._field(fid)
        if off == 0:
            return default
        return self.r.unpack(fmt, self.pos + off, self.what)

    def _ref(self, fid: int) -> int | None:
        off = self._field(fid)
        if off == 0:
            return None
        at = self.pos + off
        return at + self.r.u32(at, self.what)

    def table(self, fid: int, what: str) -> _Table | None:
        at = self._ref(fid)
        return None if at is None else _Table(self.r, at, what)

    def vector_len(self, fid: int, what: str) -> tuple[int, int] | None:
        at = self._ref(fid)
        if at is None:
            return None
        n = self.r.u32(at, what)
        return at + 4, n

    def tables(self, fid: int, what: str) -> list[_Table]:
        v = self.vector_len(fid, what)
        if v is None:
            return []
        start, n = v
        self.r.check(start, 4 * n, what)
        return [_Table(self.r, start + 4 * i + self.r.u32(start + 4 * i, what), f"{what}[{i}]")
                for i in range(n)]

    def array(self, fid: int, dtype: str, what: str) -> np.ndarray | None:
        v = self.vector_len(fid, what)
        if v is None:
            return None
        start, n = v
        dt = np.dtype(dtype)
        self.r.check(start, n * dt.itemsize, what)
        return np.frombuffer(self.r.buf, dtype=dt, count=n, offset=start).copy()

    def string(self, fid: int, what: str) -> str:
        raw = self.array(fid, "u1", what)
        return "" if raw is None else bytes(raw).decode("utf-8", errors="replace")


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf = buf

    def check(self, pos: int, size: int, what: str) -> None:
        if pos < 0 or size < 0 or pos + size > len(self.buf):
            raise CompileError(f"malformed TFLite flatbuffer: {what} lies outside the file "
                               f"(offset {pos}, {size} bytes, file {len(self.buf)} bytes; truncated?)")

    def unpack(self, fmt: str, pos: int, what: str) -> int | float:
        size = struct.calcsize("<" + fmt)
        self.check(pos, size, what)
        return struct.unpack_from("<" + fmt, self.buf, pos)[0]

    def u16(self, pos: int, what: str) -> int:
        return int(self.unpack("H", pos, what))

    def u32(self, pos: int, what: str) -> int:
        return int(self.unpack("I", pos, what))

    def i32(self, pos: int, what: str) -> int:
        return int(self.unpack("i", pos, what))


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None  # constant contents, None for activations
    scales: np.ndarray  # float32, empty when not quantized
    zero_points: np.ndarray  # int64
    quantized_dimension: int

    @property
    def size(self) -> int:
        return math.prod(int(d) for d in self.shape)  # Python ints: never wraps

    @property
    def scale(self) -> float:
        """Per-tensor scale as a float32 value (the interpreter keeps scales in float)."""
        if self.scales.size == 0:
            raise CompileError(f"tensor {self.index} ({self.name!r}) is not quantized")
        return float(self.scales[0])

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0]) if self.zero_points.size else 0


@dataclass
class Operator:
    index: int
    opcode: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: _Table | None = field(repr=False, default=None)

    def opt(self, fid: int, fmt: str, default: int | float = 0) -> int | float:
        return default if self.options is None else self.options.scalar(fid, fmt, default)


@dataclass
class Graph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]


def parse_model(buf: bytes, op_names: dict[int, str]) -> Graph:
    """Parse the first subgraph of a TFLite flatbuffer."""
    if len(buf) < 8:
        raise CompileError(f"not a TFLite model: only {len(buf)} bytes")
    if buf[4:8] != b"TFL3":
        raise CompileError("not a TFLite model: file identifier 'TFL3' missing at byte 4")
    r = _Reader(buf)
    model = _Table(r, r.u32(0, "model root"), "model")
    codes = []
    for i, oc in enumerate(model.tables(1, "operator_codes")):
        deprecated = int(oc.scalar(0, "b", 0))
        builtin = int(oc.scalar(3, "i", 0))
        code = max(deprecated, builtin)
        if oc.string(1, f"operator_codes[{i}].custom_code"):
            code = -1
        codes.append(code)
    buffers = model.tables(4, "buffers")
    subgraphs = model.tables(2, "subgraphs")
    if not subgraphs:
        raise CompileError("TFLite model has no subgraph")
    sg = subgraphs[0]
    tensors = [_parse_tensor(t, i, buffers) for i, t in enumerate(sg.tables(0, "tensors"))]
    ops = []
    for i, op in enumerate(sg.tables(3, "operators")):
        idx = int(op.scalar(0, "I", 0))
        if idx >= len(codes):
            raise CompileError(f"malformed TFLite flatbuffer: operator {i} has opcode index {idx} "
                               f"but the model has {len(codes)} operator codes")
        code = codes[idx]
        ins = op.array(1, "<i4", f"operator {i} inputs")
        outs = op.array(2, "<i4", f"operator {i} outputs")
        ops.append(Operator(i, code, op_names.get(code, f"builtin code {code}" if code >= 0 else "CUSTOM"),
                            [] if ins is None else [int(x) for x in ins],
                            [] if outs is None else [int(x) for x in outs],
                            op.table(4, f"operator {i} builtin_options")))
    g_in = sg.array(1, "<i4", "subgraph inputs")
    g_out = sg.array(2, "<i4", "subgraph outputs")
    graph = Graph(tensors, ops, [] if g_in is None else [int(x) for x in g_in],
                  [] if g_out is None else [int(x) for x in g_out])
    n = len(tensors)
    for op in ops:
        for t in op.inputs + op.outputs:
            if t >= n or t < -1:
                raise CompileError(f"malformed TFLite flatbuffer: operator {op.index} ({op.name}) "
                                   f"refers to tensor {t}, model has {n}")
    for t in graph.inputs + graph.outputs:
        if not 0 <= t < n:
            raise CompileError(f"malformed TFLite flatbuffer: graph input/output tensor {t} out of range")
    return graph


def _parse_tensor(t: _Table, i: int, buffers: list[_Table]) -> Tensor:
    what = f"tensor {i}"
    shape = t.array(0, "<i4", f"{what} shape")
    type_code = int(t.scalar(1, "b", 0))
    dtype = TENSOR_TYPES.get(type_code, f"type {type_code}")
    name = t.string(3, f"{what} name")
    buf_idx = int(t.scalar(2, "I", 0))
    data = None
    if buf_idx >= len(buffers) and buf_idx != 0:
        raise CompileError(f"malformed TFLite flatbuffer: {what} ({name!r}) uses buffer {buf_idx}, "
                           f"model has {len(buffers)}")
    if 0 < buf_idx < len(buffers):
        b = buffers[buf_idx]
        raw = b.array(0, "u1", f"buffer {buf_idx}")
        if raw is None and int(b.scalar(1, "Q", 0)) > 1:
            raise CompileError(f"{what} ({name!r}) keeps its data outside the flatbuffer "
                               f"(large-model format); not supported")
        if raw is not None and raw.size:
            np_type = _NUMPY_TYPES.get(dtype)
            if np_type is None:
                raise CompileError(f"{what} ({name!r}) holds constant data of unsupported type {dtype}")
            itemsize = np.dtype(np_type).itemsize
            if raw.size % itemsize:
                raise CompileError(f"malformed TFLite flatbuffer: buffer of {what} has {raw.size} bytes, "
                                   f"not a multiple of {itemsize}")
            data = raw.view(np.dtype(np_type).newbyteorder("<")).astype(np_type)
    q = t.table(4, f"{what} quantization")
    scales = np.zeros(0, np.float32)
    zps = np.zeros(0, np.int64)
    qdim = 0
    if q is not None:
        s = q.array(2, "<f4", f"{what} scales")
        z = q.array(3, "<i8", f"{what} zero points")
        scales = np.zeros(0, np.float32) if s is None else s.astype(np.float32)
        zps = np.zeros(0, np.int64) if z is None else z.astype(np.int64)
        qdim = int(q.scalar(6, "i", 0))
    shp = tuple(int(x) for x in shape) if shape is not None else ()
    if data is not None and math.prod(shp) != data.size and shp:
        raise CompileError(f"malformed TFLite flatbuffer: {what} ({name!r}) has shape {shp} "
                           f"but {data.size} values")
    return Tensor(i, name, shp, dtype, data, scales, zps, qdim)
