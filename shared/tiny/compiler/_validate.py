"""Whole-graph checks run before any op is lowered, so hostile or corrupt models end in a CompileError.

What the emitted C relies on and a flatbuffer can violate:

* sizes: every tensor an op touches has dimensions >= 1 and at most MAX_TENSOR_ELEMENTS elements,
  counted with Python integers (no int64 wrap-around: 1x2147418113x429509837x40 is not 8);
* quantization: every int8 tensor's scales are finite, positive float32 normals (no zero, NaN,
  infinity or denormal), one per tensor or one per channel of its quantized dimension, zero points
  within int8 (weights: 0);
* writes: an op writes a fresh activation tensor (not a constant, not the model input, not one another op
  already wrote), one output per op;
* per-op shapes: element-wise ops (LOGISTIC, TANH, QUANTIZE, SOFTMAX) keep the size; pooling and
  convolutions keep batch (and, for pooling, channels) and have the output size their padding and
  stride give; concatenation inputs agree with the output on every axis but the concatenated one;
  reductions produce the kept size;
* int32 accumulators: for FULLY_CONNECTED and convolutions, |bias| + 256 * sum |weights| of every output
  channel fits in int32, so neither the plain nor a bias-folded kernel can overflow; and the largest
  accumulator times the requantization multiplier (also for QUANTIZE, MEAN, ADD, MUL) stays below 2^30,
  so the saturating multiply plus the output offset cannot overflow either.
"""

from __future__ import annotations

import math

import numpy as np

from shared.tiny.compiler._flatbuf import Graph, Operator, Tensor
from shared.tiny.compiler.errors import CompileError

MAX_TENSOR_ELEMENTS = 1 << 24  # 16 Mi elements: far above any microcontroller model, far below int32
INT32_MAX = (1 << 31) - 1
REQUANT_LIMIT = float(1 << 30)
F32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32
_SAME, _VALID = 0, 1  # Padding enum of schema.fbs
_PADDING_FIELD = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 0, "MAX_POOL_2D": 0, "AVERAGE_POOL_2D": 0}
_SAME_SIZE = {"LOGISTIC", "TANH", "QUANTIZE", "SOFTMAX"}


def elements(shape: tuple[int, ...]) -> int:
    """Element count of a shape in Python integers (exact, never wraps)."""
    return math.prod(int(d) for d in shape)


def _desc(op: Operator) -> str:
    return f"op {op.index} ({op.name})"


def check_tensor(t: Tensor, where: str) -> None:
    if any(int(d) < 1 for d in t.shape):
        raise CompileError(f"{where}: tensor {t.index} ({t.name!r}) has a dimension < 1: {t.shape}")
    n = elements(t.shape)
    if n > MAX_TENSOR_ELEMENTS:
        raise CompileError(f"{where}: tensor {t.index} ({t.name!r}) of shape {t.shape} has {n} elements, "
                           f"more than {MAX_TENSOR_ELEMENTS}")
    if t.dtype != "int8" or t.scales.size == 0:
        return
    s = t.scales.astype(np.float64)
    if not np.all(np.isfinite(s)) or np.any(s < F32_TINY):
        bad = [float(v) for v in s if not (math.isfinite(v) and v >= F32_TINY)][:3]
        raise CompileError(f"{where}: tensor {t.index} ({t.name!r}) has an invalid quantization scale {bad} "
                           f"(must be a finite, normal float32 > 0)")
    if s.size > 1:
        qd = t.quantized_dimension
        if not 0 <= qd < len(t.shape) or t.shape[qd] != s.size:
            raise CompileError(f"{where}: tensor {t.index} ({t.name!r}) has {s.size} scales, which does not "
                               f"match quantized dimension {qd} of shape {t.shape}")
    zp = t.zero_points
    if zp.size not in (0, 1, s.size):
        raise CompileError(f"{where}: tensor {t.index} ({t.name!r}) has {zp.size} zero points for {s.size} scales")
    if zp.size and (np.any(zp < -128) or np.any(zp > 127)):
        raise CompileError(f"{where}: tensor {t.index} ({t.name!r}) has a zero point outside int8: "
                           f"{zp[(zp < -128) | (zp > 127)][:3].tolist()}")


def _out_size(in_size: int, k: int, stride: int, dil: int, padding: int) -> int:
    if padding == _SAME:
        return -(-in_size // stride)
    effective = (k - 1) * dil + 1
    return -(-(in_size - effective + 1) // stride)


def _spatial(op: Operator, x: Tensor, y: Tensor, k_h: int, k_w: int, s_h: int, s_w: int, d_h: int,
             d_w: int) -> None:
    padding = int(op.opt(_PADDING_FIELD[op.name], "b", _SAME))
    if padding not in (_SAME, _VALID):
        raise CompileError(f"{_desc(op)}: unknown padding {padding}")
    if min(k_h, k_w, s_h, s_w, d_h, d_w) < 1:
        raise CompileError(f"{_desc(op)}: filter size, stride and dilation must be >= 1")
    want = (_out_size(x.shape[1], k_h, s_h, d_h, padding), _out_size(x.shape[2], k_w, s_w, d_w, padding))
    if tuple(y.shape[1:3]) != want or min(want) < 1:
        raise CompileError(f"{_desc(op)}: output {y.shape} does not match input {x.shape} with a {k_h}x{k_w} "
                           f"filter, stride {s_h}x{s_w}, dilation {d_h}x{d_w} and "
                           f"{'SAME' if padding == _SAME else 'VALID'} padding (expected {want[0]}x{want[1]})")
    if y.shape[0] != x.shape[0]:
        raise CompileError(f"{_desc(op)}: output batch {y.shape[0]} != input batch {x.shape[0]}")


def _requant(op: Operator, worst: float, real: float) -> None:
    """An int32 value up to `worst` times the requantization multiplier `real` must stay well inside int32
    (the runtime saturates the product and then adds the output offset)."""
    if math.isfinite(real) and worst * real > REQUANT_LIMIT:
        raise CompileError(f"{_desc(op)}: requantized values can reach {worst * real:.3g}, outside int32 "
                           f"(scales make the multiplier {real:.3g})")


def _accumulator(op: Operator, w: np.ndarray, bias: np.ndarray | None, channel_axis: int,
                 real: np.ndarray | None = None) -> None:
    """|bias| + 256 sum|w| per output channel must fit in int32 (|x - zero point| <= 255 < 256)."""
    wa = np.abs(np.moveaxis(w.astype(np.int64), channel_axis, 0).reshape(w.shape[channel_axis], -1)).sum(axis=1)
    worst = 256 * wa
    if bias is not None and bias.size == worst.size:
        worst = worst + np.abs(bias.astype(np.int64))
    if worst.size and int(worst.max()) > INT32_MAX:
        raise CompileError(f"{_desc(op)}: an output channel's int32 accumulator can overflow "
                           f"(|bias| + 256 * sum|weights| = {int(worst.max())} > {INT32_MAX})")
    if real is not None and worst.size:
        r = np.broadcast_to(real, worst.shape)
        k = int(np.argmax(worst * r))
        _requant(op, float(worst[k]), float(r[k]))


def _real(x: Tensor, w: Tensor, y: Tensor) -> np.ndarray | None:
    if x.scales.size == 0 or w.scales.size == 0 or y.scales.size == 0:
        return None
    return float(x.scales[0]) * w.scales.astype(np.float64) / float(y.scales[0])


def _const(g: Graph, op: Operator, k: int) -> np.ndarray | None:
    if k >= len(op.inputs) or op.inputs[k] < 0:
        return None
    return g.tensors[op.inputs[k]].data


def _check_op(g: Graph, op: Operator) -> None:
    ins = [g.tensors[i] for i in op.inputs if i >= 0]
    if len(op.outputs) != 1 or not ins:
        raise CompileError(f"{_desc(op)}: expected at least one input and exactly one output, got "
                           f"{len(ins)} and {len(op.outputs)}")
    x, y = ins[0], g.tensors[op.outputs[0]]
    name = op.name
    if name in _SAME_SIZE and elements(x.shape) != elements(y.shape):
        raise CompileError(f"{_desc(op)}: output {y.shape} must have as many elements as input {x.shape}")
    if name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        if len(x.shape) != 4 or len(y.shape) != 4:
            raise CompileError(f"{_desc(op)}: expected 4-D tensors, got {x.shape} -> {y.shape}")
        if y.shape[3] != x.shape[3]:
            raise CompileError(f"{_desc(op)}: output channels {y.shape[3]} != input channels {x.shape[3]}")
        _spatial(op, x, y, int(op.opt(4, "i", 1)), int(op.opt(3, "i", 1)), int(op.opt(2, "i", 1)),
                 int(op.opt(1, "i", 1)), 1, 1)
    elif name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = g.tensors[op.inputs[1]] if len(op.inputs) > 1 and op.inputs[1] >= 0 else None
        if w is None or len(x.shape) != 4 or len(y.shape) != 4 or len(w.shape) != 4:
            raise CompileError(f"{_desc(op)}: expected 4-D input, filter and output")
        dw = name == "DEPTHWISE_CONV_2D"
        dil = (int(op.opt(6, "i", 1)), int(op.opt(5, "i", 1))) if dw else (int(op.opt(5, "i", 1)),
                                                                          int(op.opt(4, "i", 1)))
        _spatial(op, x, y, w.shape[1], w.shape[2], int(op.opt(2, "i", 1)), int(op.opt(1, "i", 1)), *dil)
        if w.data is not None:
            _accumulator(op, w.data.reshape(w.shape), _const(g, op, 2), 3 if dw else 0, _real(x, w, y))
    elif name == "FULLY_CONNECTED":
        w = g.tensors[op.inputs[1]] if len(op.inputs) > 1 and op.inputs[1] >= 0 else None
        if w is not None and w.data is not None and len(w.shape) == 2:
            _accumulator(op, w.data.reshape(w.shape), _const(g, op, 2), 0, _real(x, w, y))
    elif name == "CONCATENATION":
        rank = len(y.shape)
        axis = int(op.opt(0, "i", 0))
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank:
            raise CompileError(f"{_desc(op)}: axis {axis} out of range for rank {rank}")
        for t in ins:
            if len(t.shape) != rank or any(a != b for k, (a, b) in enumerate(zip(t.shape, y.shape, strict=True))
                                           if k != axis):
                raise CompileError(f"{_desc(op)}: input {t.shape} does not concatenate to {y.shape} on axis {axis}")
        if sum(t.shape[axis] for t in ins) != y.shape[axis]:
            raise CompileError(f"{_desc(op)}: inputs do not add up to {y.shape} on axis {axis}")
    elif name in ("MEAN", "REDUCE_MAX", "SUM"):
        axes = _const(g, op, 1)
        if axes is None:
            raise CompileError(f"{_desc(op)}: the axis tensor must be constant")
        rank = len(x.shape)
        red = {int(a) + rank if int(a) < 0 else int(a) for a in np.asarray(axes).reshape(-1)}
        if any(not 0 <= a < rank for a in red):
            raise CompileError(f"{_desc(op)}: axis {sorted(red)} out of range for rank {rank}")
        reduce_n = elements(tuple(x.shape[a] for a in red))
        if elements(y.shape) * reduce_n != elements(x.shape):
            raise CompileError(f"{_desc(op)}: output {y.shape} is not input {x.shape} reduced over {sorted(red)}")
        if reduce_n * 256 > INT32_MAX:
            raise CompileError(f"{_desc(op)}: reducing {reduce_n} values can overflow the int32 sum")
    elif name in ("QUANTIZE", "MEAN") and x.scales.size and y.scales.size:
        _requant(op, 256.0, float(x.scales[0]) / float(y.scales[0]))
    elif name == "ADD" and len(ins) > 1 and all(t.scales.size for t in (*ins[:2], y)):
        _requant(op, 512.0, max(float(ins[0].scales[0]), float(ins[1].scales[0])) / float(y.scales[0]))
    elif name == "MUL" and len(ins) > 1 and all(t.scales.size for t in (*ins[:2], y)):
        _requant(op, 65536.0, float(ins[0].scales[0]) * float(ins[1].scales[0]) / float(y.scales[0]))
    if name == "SOFTMAX":
        beta = float(op.opt(0, "f", 0.0))
        if not math.isfinite(beta) or beta < 0:
            raise CompileError(f"{_desc(op)}: beta {beta!r} must be finite and >= 0")


def validate_graph(g: Graph) -> None:
    """Raise CompileError for the first property of `g` the emitted C could not honour."""
    for t_idx, role in ((g.inputs[0], "model input"), (g.outputs[0], "model output")):
        check_tensor(g.tensors[t_idx], role)
    written: set[int] = set()
    for op in g.operators:
        for t in op.inputs + op.outputs:
            if t >= 0:
                check_tensor(g.tensors[t], _desc(op))
        for t in op.outputs:
            if t < 0:
                raise CompileError(f"{_desc(op)}: missing output tensor")
            if g.tensors[t].data is not None:
                raise CompileError(f"{_desc(op)}: writes constant tensor {t} ({g.tensors[t].name!r})")
            if t == g.inputs[0]:
                raise CompileError(f"{_desc(op)}: writes the model input tensor {t}")
            if t in written or t in op.inputs:
                raise CompileError(f"{_desc(op)}: tensor {t} is written twice or in place")
            written.add(t)
        _check_op(g, op)
