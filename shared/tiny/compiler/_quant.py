"""Quantization arithmetic done at compile time, following the TFLite int8 spec.

Scales are float32 in the flatbuffer; the interpreter combines them either in double or in
float32 depending on the op, and the multipliers below reproduce each choice exactly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections.abc import Callable

import numpy as np

from shared.tiny.compiler.errors import CompileError

F32 = np.float32


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Split `real` into a Q31 multiplier in [2^30, 2^31) and a power-of-two exponent."""
    if real == 0.0:
        return 0, 0
    if not math.isfinite(real) or real < 0:
        raise CompileError(f"invalid requantization scale {real!r}")
    q, shift = math.frexp(real)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    if shift > 30:  # single-rounding limit, as QuantizeMultiplier clamps it
        shift, q_fixed = 30, (1 << 31) - 1
    return int(q_fixed), int(shift)


def _round_half_away(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def roundf(x: np.float32) -> np.float32:
    """C roundf: half away from zero (exact: a float32 plus 0.5 is exact in double)."""
    v = float(x)
    return F32(math.copysign(math.floor(abs(v) + 0.5), v))


def activation_range(act: int, scale: float, zero_point: int, op_desc: str) -> tuple[int, int]:
    """Clamp bounds of a fused activation on an int8 output (CalculateActivationRangeQuantized)."""
    def quant(f: float) -> int:
        v = float(f) / float(scale) if scale > 0 else math.inf
        if not math.isfinite(v) or abs(v) > 1e6:  # far outside int8 either way; avoids inf -> int
            return zero_point + (1_000_000 if v > 0 else -1_000_000)
        return zero_point + int(roundf(F32(f) / F32(scale)))

    if act == 0:  # NONE
        return -128, 127
    if act == 1:  # RELU
        return max(-128, quant(0.0)), 127
    if act == 3:  # RELU6
        return max(-128, quant(0.0)), min(127, quant(6.0))
    if act == 2:  # RELU_N1_TO_1
        return max(-128, quant(-1.0)), min(127, quant(1.0))
    raise CompileError(f"{op_desc}: fused activation {act} (TANH/SIGN_BIT) is not supported")


def _libm() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("m")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


_LIBM = _libm()


def _float_fn(name: str, fallback: Callable[[float], float]) -> Callable[[np.float32], np.float32]:
    """Single-precision libm function (expf, tanhf): the ones the interpreter calls."""
    if _LIBM is not None and hasattr(_LIBM, name):
        fn = getattr(_LIBM, name)
        fn.restype = ctypes.c_float
        fn.argtypes = [ctypes.c_float]
        return lambda x: F32(fn(float(x)))
    return lambda x: F32(fallback(float(x)))


expf = _float_fn("expf", math.exp)
tanhf = _float_fn("tanhf", math.tanh)


def lut_table(kind: str, in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """256-entry int8 table of LOGISTIC or TANH, indexed by the input byte (PopulateLookupTable)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _lut_table(kind, in_scale, in_zp, out_scale, out_zp)


def _lut_table(kind: str, in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    inverse_scale = F32(1) / F32(out_scale)
    table = np.zeros(256, np.int8)
    for val in range(-128, 128):
        x = F32(in_scale) * F32(val - in_zp)
        if kind == "logistic":
            y = F32(1) / (F32(1) + expf(-x))
        else:
            y = tanhf(x)
        rescaled = roundf(F32(y * inverse_scale))
        if not math.isfinite(float(rescaled)):
            raise CompileError(f"{kind} table: non-finite value for input {val} (scales {in_scale}, {out_scale})")
        q = int(F32(rescaled + F32(out_zp)))
        table[val & 0xFF] = max(-128, min(127, q))
    return table


def softmax_exp_table(in_scale: float, beta: float) -> np.ndarray:
    """table[255 - d] = expf(-in_scale * beta * d) in float32 (PopulateSoftmaxLookupTable)."""
    with np.errstate(over="ignore", invalid="ignore"):
        scale = F32(-F32(in_scale) * F32(beta))
        table = np.zeros(256, np.float32)
        for d in range(256):
            table[255 - d] = expf(F32(scale * F32(d)))
    if not np.all(np.isfinite(table)):
        raise CompileError(f"softmax table is not finite (input scale {in_scale}, beta {beta})")
    return table
