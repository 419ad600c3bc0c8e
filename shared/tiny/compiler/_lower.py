"""Lower each TFLite operator to a const parameter block plus one runtime call.

A lowered step refers to tensors by the token @T<index>@; the emitter replaces each token with
the C pointer expression of that tensor (arena slice, caller buffer or const array).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from shared.tiny.compiler import _quant as q
from shared.tiny.compiler._flatbuf import Graph, Operator, Tensor
from shared.tiny.compiler.errors import CompileError

OP_NAMES = {0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D",
            6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL",
            19: "RELU", 21: "RELU6", 22: "RESHAPE", 25: "SOFTMAX", 28: "TANH", 34: "PAD", 39: "TRANSPOSE",
            40: "MEAN", 41: "SUB", 43: "SQUEEZE", 45: "STRIDED_SLICE", 70: "EXPAND_DIMS", 74: "SUM",
            77: "SHAPE", 82: "REDUCE_MAX",
            98: "LEAKY_RELU", 114: "QUANTIZE", 117: "HARD_SWISH", 126: "BATCH_MATMUL"}
ALIAS_OPS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}
SUPPORTED_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN",
                 "REDUCE_MAX", "ADD", "MUL", "CONCATENATION", "PAD", "RESHAPE", "SQUEEZE", "EXPAND_DIMS",
                 "SOFTMAX", "LOGISTIC", "TANH", "QUANTIZE")


@dataclass
class Step:
    op: str
    call: str  # C statement with @T<i>@ tokens
    decls: list[str] = field(default_factory=list)
    reads: list[int] = field(default_factory=list)
    writes: list[int] = field(default_factory=list)
    const_bytes: int = 0
    inplace: bool = False  # the kernel may write over its (same-sized) input
    macs: int = 0  # multiply-accumulates per inference (FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D)
    # raster-order kernel: the output may start up to this many bytes after the input and share its bytes
    # (planner.Overlap); None where the kernel does not allow it
    overlap_delta: int | None = None


def c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 16, align: bool = False) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    if ctype == "float":
        flat = [f"{float(v):.9e}f" for v in np.asarray(values, np.float32).reshape(-1)]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)] or ["0"]
    body = ",\n  ".join(lines)
    attr = " TL_ALIGN4" if align else ""
    return f"static const {ctype} {name}[{max(len(flat), 1)}]{attr} = {{\n  {body}\n}};"


def c_struct(ctype: str, name: str, fields: dict[str, object]) -> str:
    body = ",\n  ".join(f".{k} = {_c_value(v)}" for k, v in fields.items())
    return f"static const {ctype} {name} = {{\n  {body}\n}};"


def _c_value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.9e}f"
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(_c_value(x) for x in v) + "}"
    return str(v)


# TL_ROUND_* in firmware/runtime/tl_runtime.h
ROUND_SINGLE, ROUND_DOUBLE, ROUND_DOUBLE_NARROW, ROUND_SINGLE_NARROW = 1, 2, 3, 4
NARROW_ACC_LIMIT = 1 << 30


def rounding_for(arithmetic: str, conv: bool, acc_bound: int | None, shifts: tuple[int, ...]) -> int:
    """TL_ROUND_* of one FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D layer. TFLite Micro rounds twice
    everywhere; LiteRT's reference kernels round once in FULLY_CONNECTED and twice in the per-channel
    CONV_2D and DEPTHWISE_CONV_2D (measured against its BUILTIN_REF interpreter op by op). The double
    rounding takes its fast path where every accumulator is below 2^30 in magnitude (`acc_bound`, None
    where the kernel does not fold the input offset) and every shift is at most -1; the single rounding
    where every shift is at most -2."""
    if arithmetic == "litert" and not conv:
        return ROUND_SINGLE_NARROW if max(shifts, default=0) <= -2 else ROUND_SINGLE
    if acc_bound is not None and acc_bound < NARROW_ACC_LIMIT and max(shifts, default=0) <= -1:
        return ROUND_DOUBLE_NARROW
    return ROUND_DOUBLE


def acc_bound(w: np.ndarray, folded_bias: np.ndarray) -> int:
    """Largest |accumulator| (partial sums included) of rows `w` [out][k] on int8 inputs, starting from
    the folded bias: |bias| + 128 * sum |w|."""
    w = np.asarray(w, np.int64).reshape(len(folded_bias), -1)
    return int((np.abs(np.asarray(folded_bias, np.int64)) + 128 * np.abs(w).sum(axis=1)).max(initial=0))


class Lowerer:
    def __init__(self, graph: Graph, prefix: str, arithmetic: str = "litert") -> None:
        self.g = graph
        self.prefix = prefix
        self.arithmetic = arithmetic

    # ---- helpers --------------------------------------------------------------------------
    def t(self, op: Operator, k: int, role: str) -> Tensor:
        if k >= len(op.inputs) or op.inputs[k] < 0:
            raise CompileError(f"op {op.index} ({op.name}): missing {role} input")
        return self.g.tensors[op.inputs[k]]

    def out(self, op: Operator) -> Tensor:
        if len(op.outputs) != 1:
            raise CompileError(f"op {op.index} ({op.name}): expected one output, got {len(op.outputs)}")
        return self.g.tensors[op.outputs[0]]

    def desc(self, op: Operator) -> str:
        return f"op {op.index} ({op.name})"

    def need_int8(self, op: Operator, *tensors: Tensor) -> None:
        for t in tensors:
            if t.dtype != "int8":
                raise CompileError(f"{self.desc(op)}: tensor {t.index} ({t.name!r}) is {t.dtype}; only full-int8 "
                                   f"models are supported (convert with inference_input_type=tf.int8)")
            if t.scales.size == 0:
                raise CompileError(f"{self.desc(op)}: tensor {t.index} ({t.name!r}) has no quantization")

    def const_of(self, op: Operator, t: Tensor, role: str) -> np.ndarray:
        if t.data is None:
            raise CompileError(f"{self.desc(op)}: {role} tensor {t.index} ({t.name!r}) must be constant")
        return t.data

    def sym(self, op: Operator, what: str) -> str:
        return f"{self.prefix}_op{op.index}_{what}"

    def act(self, op: Operator, fid: int, out: Tensor) -> tuple[int, int]:
        return q.activation_range(int(op.opt(fid, "b", 0)), out.scale, out.zero_point, self.desc(op))

    # ---- dispatch ---------------------------------------------------------------------------
    def lower(self, op: Operator) -> Step:
        if op.name not in SUPPORTED_OPS:
            raise CompileError(f"op {op.index} ({op.name}) is not supported; supported ops: "
                               f"{', '.join(SUPPORTED_OPS)}")
        fn = getattr(self, "_" + op.name.lower())
        return fn(op)

    # ---- ops ----------------------------------------------------------------------------------
    def _conv_common(self, op: Operator, depthwise: bool) -> Step:
        x, w, y = self.t(op, 0, "input"), self.t(op, 1, "filter"), self.out(op)
        self.need_int8(op, x, w, y)
        wd = self.const_of(op, w, "filter")
        if len(x.shape) != 4 or len(w.shape) != 4 or len(y.shape) != 4:
            raise CompileError(f"{self.desc(op)}: expected 4-D input/filter/output, got {x.shape}, {w.shape}, "
                               f"{y.shape}")
        n, in_h, in_w, in_c = x.shape
        _, out_h, out_w, out_c = y.shape
        if depthwise:
            _, k_h, k_w, w_c = w.shape
            if w_c != out_c or out_c % in_c:
                raise CompileError(f"{self.desc(op)}: filter {w.shape} does not match in/out channels "
                                   f"{in_c}/{out_c}")
            stride_w, stride_h = int(op.opt(1, "i", 1)), int(op.opt(2, "i", 1))
            act_fid, dil_w, dil_h = 4, int(op.opt(5, "i", 1)), int(op.opt(6, "i", 1))
        else:
            w_o, k_h, k_w, w_i = w.shape
            if w_o != out_c or w_i != in_c:
                raise CompileError(f"{self.desc(op)}: filter {w.shape} does not match in/out channels "
                                   f"{in_c}/{out_c} (grouped convolution is not supported)")
            stride_w, stride_h = int(op.opt(1, "i", 1)), int(op.opt(2, "i", 1))
            act_fid, dil_w, dil_h = 3, int(op.opt(4, "i", 1)), int(op.opt(5, "i", 1))
        if min(stride_w, stride_h, dil_w, dil_h) < 1:
            raise CompileError(f"{self.desc(op)}: stride and dilation must be >= 1")
        if np.any(w.zero_points != 0):
            raise CompileError(f"{self.desc(op)}: int8 filter must have zero point 0")
        pad_h = _padding(in_h, k_h, stride_h, dil_h, out_h)
        pad_w = _padding(in_w, k_w, stride_w, dil_w, out_w)
        in_s, out_s = float(x.scale), float(y.scale)
        scales = w.scales if w.scales.size > 1 else np.repeat(w.scales[:1], out_c)
        if scales.size != out_c:
            raise CompileError(f"{self.desc(op)}: {w.scales.size} filter scales for {out_c} channels")
        mults, shifts = zip(*(q.quantize_multiplier(in_s * float(s) / out_s) for s in scales), strict=True)
        step = Step(op.name, "", reads=[x.index], writes=[y.index],
                    macs=n * out_h * out_w * out_c * k_h * k_w * (1 if depthwise else in_c))
        bias_sym = "0"
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            b = self.t(op, 2, "bias")
            bd = self.const_of(op, b, "bias")
            if b.dtype != "int32" or bd.size != out_c:
                raise CompileError(f"{self.desc(op)}: bias must be int32[{out_c}], got {b.dtype}[{bd.size}]")
            bias_sym = self.sym(op, "bias")
            step.decls.append(c_array("int32_t", bias_sym, bd))
            step.const_bytes += 4 * out_c
        act_min, act_max = self.act(op, act_fid, y)
        patch = k_h * k_w * in_c
        folded_dw = False
        pointwise = (not depthwise and k_h == k_w == 1 and stride_h == stride_w == 1 and pad_h == pad_w == 0
                     and (in_h, in_w) == (out_h, out_w))
        if pointwise or (not depthwise and patch <= IM2COL_MAX):
            # a matrix product on the FULLY_CONNECTED kernel: blocked weights, input offset in the bias
            bias = np.zeros(out_c, np.int64) if bias_sym == "0" else self.const_of(op, self.t(op, 2, "bias"), "")
            step.decls = []
            step.const_bytes = 0
            bias_sym = self.sym(op, "bias")
            fmat = wd.reshape(out_c, patch)
            folded = fold_bias(fmat, bias, x.zero_point, self.desc(op))
            rounding = rounding_for(self.arithmetic, True, acc_bound(fmat, folded), shifts)
            step.decls += [c_array("int32_t", bias_sym, folded),
                           c_array("int8_t", self.sym(op, "weights"), block_rows(fmat), align=True),
                           c_array("int32_t", self.sym(op, "mult"), np.array(mults)),
                           c_array("int32_t", self.sym(op, "shift"), np.array(shifts))]
            step.const_bytes += wd.size + 12 * out_c
            if pointwise:
                params = dict(batches=n * in_h * in_w, in_n=in_c, out_n=out_c, output_offset=y.zero_point,
                              act_min=act_min, act_max=act_max, per_channel=1, weights=self.sym(op, "weights"),
                              bias=bias_sym, multiplier=self.sym(op, "mult"), shift=self.sym(op, "shift"),
                              rounding=rounding)
                step.decls.append(c_struct("tl_fc_params", self.sym(op, "p"), params))
                step.call = f"tl_fully_connected(&{self.sym(op, 'p')}, @T{x.index}@, @T{y.index}@);"
                step.inplace = in_c == out_c
                step.overlap_delta = raster_overlap_delta(n * in_h * in_w, (1, 1, in_c), (1, 1, out_c), 1, 0)
                return step
        elif depthwise and out_c == in_c and k_h * k_w <= DW_TAPS_MAX:
            # the folded depthwise path: input offset in the bias over all taps (padding reads the zero point)
            bias = np.zeros(out_c, np.int64) if bias_sym == "0" else self.const_of(op, self.t(op, 2, "bias"), "")
            step.decls = []
            step.const_bytes = 0
            bias_sym = self.sym(op, "bias")
            folded = fold_bias(wd.reshape(-1, out_c).T, bias, x.zero_point, self.desc(op))
            rounding = rounding_for(self.arithmetic, True, acc_bound(wd.reshape(-1, out_c).T, folded), shifts)
            step.decls += [c_array("int32_t", bias_sym, folded),
                           c_array("int8_t", self.sym(op, "weights"), wd),
                           c_array("int32_t", self.sym(op, "mult"), np.array(mults)),
                           c_array("int32_t", self.sym(op, "shift"), np.array(shifts))]
            step.const_bytes += wd.size + 12 * out_c
            folded_dw = True
            # in place with a ring of pad_h + 1 saved input rows (on the stack) when that saves RAM
            ring = (pad_h + 1) * in_w * in_c
            step.inplace = (stride_h == stride_w == 1 and (in_h, in_w) == (out_h, out_w) and ring <= DW_RING_MAX
                            and 2 * ring <= x.size)
        else:
            rounding = rounding_for(self.arithmetic, True, None, shifts)
            step.decls += [c_array("int8_t", self.sym(op, "weights"), wd),
                           c_array("int32_t", self.sym(op, "mult"), np.array(mults)),
                           c_array("int32_t", self.sym(op, "shift"), np.array(shifts))]
            step.const_bytes += wd.size + 8 * out_c
        params = dict(batches=n, in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
                      k_h=k_h, k_w=k_w, stride_h=stride_h, stride_w=stride_w, dil_h=dil_h, dil_w=dil_w,
                      pad_h=pad_h, pad_w=pad_w, depth_multiplier=out_c // in_c if depthwise else 1,
                      input_offset=-x.zero_point, output_offset=y.zero_point, act_min=act_min, act_max=act_max,
                      weights=self.sym(op, "weights"), bias=bias_sym, multiplier=self.sym(op, "mult"),
                      shift=self.sym(op, "shift"), rounding=rounding)
        step.decls.append(c_struct("tl_conv_params", self.sym(op, "p"), params))
        fn = ("tl_depthwise_conv2d_folded" if folded_dw else "tl_depthwise_conv2d") if depthwise else (
            "tl_conv2d_im2col" if patch <= IM2COL_MAX else "tl_conv2d")
        step.call = f"{fn}(&{self.sym(op, 'p')}, @T{x.index}@, @T{y.index}@);"
        step.overlap_delta = raster_overlap_delta(n, (in_h, in_w, in_c), (out_h, out_w, out_c), stride_h, pad_h)
        return step

    def _conv_2d(self, op: Operator) -> Step:
        return self._conv_common(op, depthwise=False)

    def _depthwise_conv_2d(self, op: Operator) -> Step:
        return self._conv_common(op, depthwise=True)

    def _fully_connected(self, op: Operator) -> Step:
        x, w, y = self.t(op, 0, "input"), self.t(op, 1, "weights"), self.out(op)
        self.need_int8(op, x, w, y)
        wd = self.const_of(op, w, "weights")
        if int(op.opt(1, "b", 0)) != 0:
            raise CompileError(f"{self.desc(op)}: shuffled weights format is not supported")
        if len(w.shape) != 2:
            raise CompileError(f"{self.desc(op)}: weights must be 2-D, got {w.shape}")
        out_n, in_n = w.shape
        if x.size % in_n or y.size != x.size // in_n * out_n:
            raise CompileError(f"{self.desc(op)}: input {x.shape} / output {y.shape} do not fit weights {w.shape}")
        in_s, out_s = x.scale, y.scale
        if w.scales.size > 1:
            pairs = [q.quantize_multiplier(float(in_s) * float(s) / float(out_s)) for s in w.scales]
        else:  # GetQuantizedConvolutionMultipler: the scale product is taken in float32
            pairs = [q.quantize_multiplier(float(q.F32(in_s) * q.F32(w.scale)) / float(out_s))]
        mults, shifts = zip(*pairs, strict=True)
        wd = np.asarray(wd).reshape(out_n, in_n)
        if np.any(w.zero_points != 0):
            raise CompileError(f"{self.desc(op)}: int8 weights must have zero point 0")
        bias = np.zeros(out_n, np.int64)
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            b = self.t(op, 2, "bias")
            bias = self.const_of(op, b, "bias")
            if b.dtype != "int32" or bias.size != out_n:
                raise CompileError(f"{self.desc(op)}: bias must be int32[{out_n}], got {b.dtype}[{bias.size}]")
        act_min, act_max = self.act(op, 0, y)
        bias_sym = self.sym(op, "bias")
        step = Step(op.name, "", reads=[x.index], writes=[y.index], const_bytes=wd.size + 4 * out_n + 8 * len(mults),
                    macs=x.size // in_n * in_n * out_n)
        folded = fold_bias(wd, bias, x.zero_point, self.desc(op))
        step.decls += [c_array("int32_t", bias_sym, folded),
                       c_array("int8_t", self.sym(op, "weights"), block_rows(wd), align=True),
                       c_array("int32_t", self.sym(op, "mult"), np.array(mults)),
                       c_array("int32_t", self.sym(op, "shift"), np.array(shifts))]
        params = dict(batches=x.size // in_n, in_n=in_n, out_n=out_n, output_offset=y.zero_point,
                      act_min=act_min, act_max=act_max, per_channel=int(len(mults) > 1),
                      weights=self.sym(op, "weights"), bias=bias_sym, multiplier=self.sym(op, "mult"),
                      shift=self.sym(op, "shift"),
                      rounding=rounding_for(self.arithmetic, False, acc_bound(wd, folded), shifts))
        step.decls.append(c_struct("tl_fc_params", self.sym(op, "p"), params))
        step.call = f"tl_fully_connected(&{self.sym(op, 'p')}, @T{x.index}@, @T{y.index}@);"
        return step

    def _pool(self, op: Operator, fn: str) -> Step:
        x, y = self.t(op, 0, "input"), self.out(op)
        self.need_int8(op, x, y)
        if len(x.shape) != 4 or len(y.shape) != 4:
            raise CompileError(f"{self.desc(op)}: expected 4-D tensors, got {x.shape} -> {y.shape}")
        if x.scale != y.scale or x.zero_point != y.zero_point:
            raise CompileError(f"{self.desc(op)}: input and output quantization differ")
        n, in_h, in_w, c = x.shape
        _, out_h, out_w, _ = y.shape
        stride_w, stride_h = int(op.opt(1, "i", 1)), int(op.opt(2, "i", 1))
        k_w, k_h = int(op.opt(3, "i", 1)), int(op.opt(4, "i", 1))
        if min(stride_w, stride_h, k_w, k_h) < 1:
            raise CompileError(f"{self.desc(op)}: filter size and stride must be >= 1")
        act_min, act_max = self.act(op, 5, y)
        params = dict(batches=n, in_h=in_h, in_w=in_w, channels=c, out_h=out_h, out_w=out_w, k_h=k_h, k_w=k_w,
                      stride_h=stride_h, stride_w=stride_w, pad_h=_padding(in_h, k_h, stride_h, 1, out_h),
                      pad_w=_padding(in_w, k_w, stride_w, 1, out_w), act_min=act_min, act_max=act_max)
        return Step(op.name, f"{fn}(&{self.sym(op, 'p')}, @T{x.index}@, @T{y.index}@);",
                    [c_struct("tl_pool_params", self.sym(op, "p"), params)], [x.index], [y.index])

    def _max_pool_2d(self, op: Operator) -> Step:
        return self._pool(op, "tl_max_pool2d")

    def _average_pool_2d(self, op: Operator) -> Step:
        return self._pool(op, "tl_avg_pool2d")

    def _reduce_layout(self, op: Operator, x: Tensor) -> tuple[int, int, int]:
        """View the input as [outer][reduce_n][inner] for a reduction over constant axes."""
        axes = self.const_of(op, self.t(op, 1, "axis"), "axis").astype(int).reshape(-1)
        rank = len(x.shape)
        resolved = sorted({int(a) + rank if a < 0 else int(a) for a in axes})
        if any(not 0 <= a < rank for a in resolved):
            raise CompileError(f"{self.desc(op)}: axis {axes.tolist()} out of range for rank {rank}")
        kept = [(d, i in resolved) for i, d in enumerate(x.shape) if d != 1]
        flags = [r for _, r in kept]
        first, last = len(flags), len(flags) - 1
        if True in flags:
            first = flags.index(True)
            last = len(flags) - 1 - flags[::-1].index(True)
            if not all(flags[first:last + 1]):
                raise CompileError(f"{self.desc(op)}: reducing non-adjacent axes {resolved} is not supported")
        dims = [d for d, _ in kept]
        return math.prod(dims[:first]), math.prod(dims[first:last + 1]), math.prod(dims[last + 1:])

    def _mean(self, op: Operator) -> Step:
        x, y = self.t(op, 0, "input"), self.out(op)
        self.need_int8(op, x, y)
        outer, reduce_n, inner = self._reduce_layout(op, x)
        mult, shift = q.quantize_multiplier(float(x.scale) / float(y.scale))
        # QuantizedMeanOrSum folds 1/N into the multiplier, gaining floor(log2(N)) bits of shift.
        s = max(0, min(reduce_n.bit_length() - 1, 32, 31 + shift))
        mult = (mult << s) // reduce_n
        shift -= s
        params = dict(outer=outer, reduce_n=reduce_n, inner=inner, input_zero_point=x.zero_point,
                      output_zero_point=y.zero_point, multiplier=int(mult), shift=int(shift))
        return Step(op.name, f"tl_mean(&{self.sym(op, 'p')}, @T{x.index}@, @T{y.index}@);",
                    [c_struct("tl_mean_params", self.sym(op, "p"), params)], [x.index], [y.index])

    def _reduce_max(self, op: Operator) -> Step:
        x, y = self.t(op, 0, "input"), self.out(op)
        self.need_int8(op, x, y)
        if x.scale != y.scale or x.zero_point != y.zero_point:
            raise CompileError(f"{self.desc(op)}: input and output quantization differ")
        outer, reduce_n, inner = self._reduce_layout(op, x)
        return Step(op.name, f"tl_reduce_max({outer}, {reduce_n}, {inner}, @T{x.index}@, @T{y.index}@);",
                    [], [x.index], [y.index])

    def _binary_shape(self, op: Operator, a: Tensor, b: Tensor, y: Tensor) -> dict[str, list[int]]:
        try:
            out = np.broadcast_shapes(a.shape, b.shape)
        except ValueError as exc:
            raise CompileError(f"{self.desc(op)}: shapes {a.shape} and {b.shape} do not broadcast") from exc
        if tuple(out) != tuple(y.shape) and math.prod(out) != y.size:
            raise CompileError(f"{self.desc(op)}: output shape {y.shape} != broadcast shape {out}")
        if len(out) > 4:
            raise CompileError(f"{self.desc(op)}: broadcasting over more than 4 dimensions is not supported")
        out4 = [1] * (4 - len(out)) + list(out)
        return {"dims": out4, "stride1": _strides(a.shape, out4), "stride2": _strides(b.shape, out4)}

    def _add(self, op: Operator) -> Step:
        a, b, y = self.t(op, 0, "first"), self.t(op, 1, "second"), self.out(op)
        self.need_int8(op, a, b, y)
        shape = self._binary_shape(op, a, b, y)
        twice_max = 2.0 * float(max(a.scale, b.scale))
        left_shift = 20
        m1, s1 = q.quantize_multiplier(float(a.scale) / twice_max)
        m2, s2 = q.quantize_multiplier(float(b.scale) / twice_max)
        mo, so = q.quantize_multiplier(twice_max / ((1 << left_shift) * float(y.scale)))
        act_min, act_max = self.act(op, 0, y)
        params = dict(shape=_c_broadcast(shape), input1_offset=-a.zero_point, input2_offset=-b.zero_point,
                      output_offset=y.zero_point, left_shift=left_shift, input1_multiplier=m1, input1_shift=s1,
                      input2_multiplier=m2, input2_shift=s2, output_multiplier=mo, output_shift=so,
                      act_min=act_min, act_max=act_max)
        return Step(op.name, f"tl_add(&{self.sym(op, 'p')}, @T{a.index}@, @T{b.index}@, @T{y.index}@);",
                    [c_struct("tl_add_params", self.sym(op, "p"), params)], [a.index, b.index], [y.index])

    def _mul(self, op: Operator) -> Step:
        a, b, y = self.t(op, 0, "first"), self.t(op, 1, "second"), self.out(op)
        self.need_int8(op, a, b, y)
        shape = self._binary_shape(op, a, b, y)
        mo, so = q.quantize_multiplier(float(a.scale) * float(b.scale) / float(y.scale))
        act_min, act_max = self.act(op, 0, y)
        params = dict(shape=_c_broadcast(shape), input1_offset=-a.zero_point, input2_offset=-b.zero_point,
                      output_offset=y.zero_point, output_multiplier=mo, output_shift=so, act_min=act_min,
                      act_max=act_max)
        return Step(op.name, f"tl_mul(&{self.sym(op, 'p')}, @T{a.index}@, @T{b.index}@, @T{y.index}@);",
                    [c_struct("tl_mul_params", self.sym(op, "p"), params)], [a.index, b.index], [y.index])

    def _concatenation(self, op: Operator) -> Step:
        y = self.out(op)
        ins = [self.t(op, k, f"#{k}") for k in range(len(op.inputs))]
        self.need_int8(op, y, *ins)
        if int(op.opt(1, "b", 0)) != 0:
            raise CompileError(f"{self.desc(op)}: fused activation on CONCATENATION is not supported")
        for t in ins:
            if t.scale != y.scale or t.zero_point != y.zero_point:
                raise CompileError(f"{self.desc(op)}: input {t.index} quantization differs from the output "
                                   f"(requantizing concatenation is not supported)")
        rank = len(y.shape)
        axis = int(op.opt(0, "i", 0))
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < max(rank, 1):
            raise CompileError(f"{self.desc(op)}: axis {axis} out of range for rank {rank}")
        outer = math.prod(y.shape[:axis])
        chunks = [math.prod(t.shape[axis:]) for t in ins]
        if sum(chunks) * outer != y.size:
            raise CompileError(f"{self.desc(op)}: input shapes do not concatenate to {y.shape}")
        arr = self.sym(op, "chunk")
        ptrs = ", ".join(f"@T{t.index}@" for t in ins)
        call = (f"{{ const int8_t *const ins[{len(ins)}] = {{{ptrs}}};\n"
                f"    tl_concat({len(ins)}, ins, {arr}, {outer}, @T{y.index}@); }}")
        return Step(op.name, call, [c_array("int32_t", arr, np.array(chunks))], [t.index for t in ins], [y.index])

    def _softmax(self, op: Operator) -> Step:
        x, y = self.t(op, 0, "input"), self.out(op)
        self.need_int8(op, x, y)
        beta = float(op.opt(0, "f", 0.0))
        depth = x.shape[-1] if x.shape else 1
        table = q.softmax_exp_table(x.scale, beta)
        tsym = self.sym(op, "exp")
        params = dict(outer=x.size // depth, depth=depth, exp_table=tsym, output_scale=float(y.scale),
                      output_zero_point=y.zero_point)
        return Step(op.name, f"tl_softmax(&{self.sym(op, 'p')}, @T{x.index}@, @T{y.index}@);",
                    [c_array("float", tsym, table, per_line=6),
                     c_struct("tl_softmax_params", self.sym(op, "p"), params)], [x.index], [y.index], 1024)

    def _lut(self, op: Operator, kind: str) -> Step:
        x, y = self.t(op, 0, "input"), self.out(op)
        self.need_int8(op, x, y)
        table = q.lut_table(kind, x.scale, x.zero_point, y.scale, y.zero_point)
        tsym = self.sym(op, "lut")
        return Step(op.name, f"tl_lut({tsym}, {x.size}, @T{x.index}@, @T{y.index}@);",
                    [c_array("int8_t", tsym, table)], [x.index], [y.index], 256)

    def _logistic(self, op: Operator) -> Step:
        return self._lut(op, "logistic")

    def _tanh(self, op: Operator) -> Step:
        return self._lut(op, "tanh")

    def _pad(self, op: Operator) -> Step:
        x, y = self.t(op, 0, "input"), self.out(op)
        self.need_int8(op, x, y)
        pads = self.const_of(op, self.t(op, 1, "paddings"), "paddings").astype(int).reshape(-1, 2)
        if len(x.shape) > 4 or pads.shape[0] != len(x.shape) or np.any(pads < 0):
            raise CompileError(f"{self.desc(op)}: paddings {pads.tolist()} do not fit input {x.shape}")
        if x.scale != y.scale or x.zero_point != y.zero_point:
            raise CompileError(f"{self.desc(op)}: input and output quantization differ")
        lead = 4 - len(x.shape)
        in4 = [1] * lead + list(x.shape)
        before = [0] * lead + [int(p[0]) for p in pads]
        out4 = [1] * lead + list(y.shape)
        if any(o != i + b + int(p[1]) for o, i, b, p in zip(out4[lead:], in4[lead:], before[lead:], pads,
                                                            strict=True)):
            raise CompileError(f"{self.desc(op)}: output shape {y.shape} does not match the paddings")
        params = dict(in_dims=in4, out_dims=out4, before=before, value=y.zero_point)
        return Step(op.name, f"tl_pad(&{self.sym(op, 'p')}, @T{x.index}@, @T{y.index}@);",
                    [c_struct("tl_pad_params", self.sym(op, "p"), params)], [x.index], [y.index])

    def _quantize(self, op: Operator) -> Step:
        x, y = self.t(op, 0, "input"), self.out(op)
        self.need_int8(op, x, y)
        mult, shift = q.quantize_multiplier(float(x.scale) / float(y.scale))
        params = dict(n=x.size, input_zero_point=x.zero_point, output_zero_point=y.zero_point,
                      multiplier=mult, shift=shift)
        return Step(op.name, f"tl_requantize(&{self.sym(op, 'p')}, @T{x.index}@, @T{y.index}@);",
                    [c_struct("tl_requantize_params", self.sym(op, "p"), params)], [x.index], [y.index])


FC_BLOCK = 4  # TL_FC_BLOCK in firmware/runtime/tl_runtime.h
IM2COL_MAX = 512  # TL_IM2COL_MAX
DW_TAPS_MAX = 16  # TL_DW_TAPS_MAX
DW_RING_MAX = 4096  # stack bytes an in-place depthwise may take for its saved rows


def block_rows(w: np.ndarray, rows: int = FC_BLOCK) -> np.ndarray:
    """[out][in] int8 weights -> the kernels' layout: per block of `rows` rows, each run of four inputs as
    one word per row, then the block's in % 4 last inputs row by row; leftover rows stored plainly."""
    w = np.asarray(w, np.int8)
    out_n, in_n = w.shape
    k4 = in_n // 4 * 4
    blocks = out_n // rows
    parts = []
    for b in range(blocks):
        blk = w[b * rows:(b + 1) * rows]
        parts.append(blk[:, :k4].reshape(rows, k4 // 4, 4).transpose(1, 0, 2).reshape(-1))
        parts.append(blk[:, k4:].reshape(-1))
    parts.append(w[blocks * rows:].reshape(-1))
    return np.concatenate(parts)


def fold_bias(w: np.ndarray, bias: np.ndarray, input_zero_point: int, desc: str) -> np.ndarray:
    """bias - zp * sum(row): the input offset folded in at compile time (sum w*(x - zp) = sum w*x - zp*sum w)."""
    folded = np.asarray(bias, np.int64) - int(input_zero_point) * np.asarray(w, np.int64).sum(axis=1)
    if folded.min(initial=0) < -(1 << 31) or folded.max(initial=0) >= (1 << 31):
        raise CompileError(f"{desc}: bias with the folded input offset overflows int32")
    return folded


def raster_overlap_delta(batches: int, in_hwc: tuple[int, int, int], out_hwc: tuple[int, int, int], stride_h: int,
                         pad_h: int) -> int:
    """How far after its input a raster-order kernel's output may start and still never overwrite an input
    byte before its last read: output pixel p (batch b, row oy) is written while the kernel may still
    read any input row from max(0, oy * stride_h - pad_h) of batch b on, so the bytes of pixels 0..p must
    end before that row starts: delta = min over (b, oy) of row_start - end of output row oy."""
    in_h, in_w, in_c = in_hwc
    out_h, out_w, out_c = out_hwc
    b = np.arange(batches, dtype=np.int64)[:, None]
    oy = np.arange(out_h, dtype=np.int64)[None, :]
    row_start = b * in_h * in_w * in_c + np.maximum(0, oy * stride_h - pad_h) * in_w * in_c
    out_end = ((b * out_h + oy) * out_w + out_w) * out_c
    return int((row_start - out_end).min())


def _padding(in_size: int, k: int, stride: int, dil: int, out_size: int) -> int:
    """Padding before the first element, as TFLite computes it from the output size."""
    effective = (k - 1) * dil + 1
    total = (out_size - 1) * stride + effective - in_size
    return max(total, 0) // 2


def _strides(shape: tuple[int, ...], out4: list[int]) -> list[int]:
    s4 = [1] * (4 - len(shape)) + list(shape)
    strides = [0, 0, 0, 0]
    acc = 1
    for k in range(3, -1, -1):
        strides[k] = 0 if s4[k] == 1 and out4[k] != 1 else acc
        acc *= s4[k]
    return strides


def _c_broadcast(shape: dict[str, list[int]]) -> str:
    return "{" + ", ".join(f".{k} = {{{', '.join(str(v) for v in vals)}}}" for k, vals in shape.items()) + "}"
