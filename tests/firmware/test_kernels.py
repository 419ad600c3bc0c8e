"""The runtime's kernels on both builds: portable C (host gcc) and the DSP extension (Cortex-M4 under QEMU,
``__ARM_FEATURE_DSP``), in both arithmetics (``litert``: single rounding; ``tflm``: -DTL_ARITH_TFLM, double
rounding), against a NumPy model of the TFLite int8 arithmetic written here, on random inputs. The cases
hit the awkward shapes: input lengths with a tail (in % 4, in % 16), leftover rows after the 4-row blocks,
weights off a word boundary, in-place vectors and depthwise rows, padding, stride 2, and requantization
shifts on both sides of the inline fast path."""

from __future__ import annotations

import numpy as np
import pytest

from shared.tiny.compiler._lower import block_rows, c_array, fold_bias, raster_overlap_delta
from tests._tools import require_tool

pytestmark = pytest.mark.firmware
N_VECTORS = 40


# ---- NumPy reference of the requantizations ---------------------------------------------------------
def _requant_litert(acc: int, m: int, s: int) -> int:
    ts = 31 - s
    return (acc * m + (1 << (ts - 1))) >> ts


def _srdhm(a: int, b: int) -> int:
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    q = abs(ab + nudge) >> 31
    return q if ab + nudge >= 0 else -q


def _rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    return (x >> e) + ((x & mask) > (mask >> 1) + (1 if x < 0 else 0))


def _requant_tflm(acc: int, m: int, s: int) -> int:
    left, right = max(s, 0), max(-s, 0)
    x = ((acc << left) + (1 << 31)) % (1 << 32) - (1 << 31)  # int32 wrap, as the C does
    return _rdbpot(_srdhm(x, m), right)


def _out(acc: int, m: int, s: int, zp: int, lo: int, hi: int, arith: str) -> int:
    v = (_requant_tflm if arith == "tflm" else _requant_litert)(int(acc), int(m), int(s)) + zp
    return max(lo, min(hi, v))


# ---- cases ------------------------------------------------------------------------------------------
class Case:
    """One kernel call: C declarations + a statement, and its NumPy reference."""

    def __init__(self, name: str, in_size: int, out_size: int) -> None:
        self.name, self.in_size, self.out_size = name, in_size, out_size
        self.decls: list[str] = []
        self.call = ""
        self.ref = None  # (input vector, arith) -> int8 outputs


TIE_MULTIPLIERS = (1 << 30, 3 << 29, 5 << 28)  # 0.5, 0.75, 0.625: short binary fractions make rounding ties


def _mults(rng, n: int, shifts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Random Q31 multipliers, every other one a short binary fraction (ties, where the roundings differ)."""
    m = rng.integers(1 << 30, (1 << 31) - 1, size=n)
    m[1::2] = [TIE_MULTIPLIERS[i % 3] for i in range(len(m[1::2]))]
    s = np.array([shifts[i % len(shifts)] for i in range(n)])
    return m, s


def _arith_of(rounding: int, arith: str) -> str:
    """The reference rounding of a layer's TL_ROUND_* value (0: the build's) in a build for `arith`."""
    return arith if rounding == 0 else ("litert" if rounding in (1, 4) else "tflm")


def fc_case(rng, name: str, batches: int, in_n: int, out_n: int, per_channel: bool, shifts: list[int],
            misalign: bool = False, in_place: bool = False, rounding: int = 0, overlap: bool = False,
            full_range: bool = False) -> Case:
    c = Case(name, batches * in_n, batches * out_n)
    w = rng.integers(-128, 128, size=(out_n, in_n)).astype(np.int8)
    bias = rng.integers(-5000, 5000, size=out_n)
    zp_in, zp_out = int(rng.integers(-20, 20)), int(rng.integers(-10, 10))
    m, s = _mults(rng, out_n if per_channel else 1, shifts)
    lo, hi = (zp_out, 127) if rng.random() < 0.5 else (-128, 127)
    if full_range:  # no activation clamp: the DSP build's assembly layers (SSAT the only clamp)
        lo, hi = -128, 127
    blocked = block_rows(w)
    if misalign:  # weights one byte past a word boundary: the kernel's row-at-a-time path
        c.decls.append(c_array("int8_t", f"{name}_wraw", np.concatenate([[0], blocked]), align=True))
        wsym = f"({name}_wraw + 1)"
    else:
        c.decls.append(c_array("int8_t", f"{name}_w", blocked, align=True))
        wsym = f"{name}_w"
    c.decls += [c_array("int32_t", f"{name}_b", fold_bias(w, bias, zp_in, name)),
                c_array("int32_t", f"{name}_m", m), c_array("int32_t", f"{name}_s", s),
                f"static const tl_fc_params {name}_p = {{{batches}, {in_n}, {out_n}, {zp_out}, {lo}, {hi}, "
                f"{int(per_channel)}, {wsym}, {name}_b, {name}_m, {name}_s, {rounding}}};"]
    if in_place:
        c.decls.append(f"static int8_t {name}_buf[{batches * in_n}];")
        c.call = (f"memcpy({name}_buf, in, {batches * in_n}); tl_fully_connected(&{name}_p, {name}_buf, {name}_buf); "
                  f"memcpy(out, {name}_buf, {batches * out_n});")
    elif overlap:  # the output starting before the input, sharing its bytes (the planner's ties)
        _overlap_call(c, "tl_fully_connected", raster_overlap_delta(batches, (1, 1, in_n), (1, 1, out_n), 1, 0))
    else:
        c.call = f"tl_fully_connected(&{name}_p, in, out);"

    def ref(x: np.ndarray, arith: str) -> np.ndarray:
        xs = x[:batches * in_n].reshape(batches, in_n).astype(np.int64) - zp_in
        acc = xs @ w.astype(np.int64).T + bias
        return np.array([[_out(acc[b, o], m[o if per_channel else 0], s[o if per_channel else 0], zp_out, lo, hi,
                               _arith_of(rounding, arith)) for o in range(out_n)] for b in range(batches)],
                        np.int8).reshape(-1)

    c.ref = ref
    return c


def _overlap_call(c: Case, fn: str, delta: int) -> None:
    """Run kernel `fn` with its output `delta` (< 0, rounded down to a word) bytes from its input in one buffer,
    as the arena planner ties them."""
    gap = -(delta // 4 * 4)
    assert gap > 0
    c.decls.append(f"static int8_t {c.name}_buf[{max(c.out_size, gap + c.in_size)}];")
    c.call = (f"memcpy({c.name}_buf + {gap}, in, {c.in_size}); {fn}(&{c.name}_p, {c.name}_buf + {gap}, {c.name}_buf); "
              f"memcpy(out, {c.name}_buf, {c.out_size});")


def _conv_geometry(in_h, in_w, k_h, k_w, stride, pad_h, pad_w):
    return (in_h + 2 * pad_h - k_h) // stride + 1, (in_w + 2 * pad_w - k_w) // stride + 1


def conv_case(rng, name: str, in_h: int, in_w: int, in_c: int, out_c: int, k_h: int, k_w: int, stride: int,
              pad_h: int, pad_w: int, depthwise: bool, in_place: bool = False, rounding: int = 0,
              shifts: tuple[int, ...] = (-9, -7, -1, 0, 1, -12), overlap: bool = False,
              full_range: bool = False) -> Case:
    out_h, out_w = _conv_geometry(in_h, in_w, k_h, k_w, stride, pad_h, pad_w)
    if depthwise:
        out_c = in_c
    c = Case(name, in_h * in_w * in_c, out_h * out_w * out_c)
    zp_in, zp_out = int(rng.integers(-20, 20)), int(rng.integers(-10, 10))
    m, s = _mults(rng, out_c, list(shifts))
    bias = rng.integers(-3000, 3000, size=out_c)
    lo, hi = (-128, 127) if full_range else (zp_out, 127)
    if depthwise:
        w = rng.integers(-128, 128, size=(k_h, k_w, out_c)).astype(np.int8)
        wtab, fold = w, fold_bias(w.reshape(-1, out_c).T, bias, zp_in, name)
        fn = "tl_depthwise_conv2d_folded"
    else:
        w = rng.integers(-128, 128, size=(out_c, k_h, k_w, in_c)).astype(np.int8)
        wtab, fold = block_rows(w.reshape(out_c, -1)), fold_bias(w.reshape(out_c, -1), bias, zp_in, name)
        fn = "tl_conv2d_im2col"
    c.decls += [c_array("int8_t", f"{name}_w", wtab, align=True), c_array("int32_t", f"{name}_b", fold),
                c_array("int32_t", f"{name}_m", m), c_array("int32_t", f"{name}_s", s),
                f"static const tl_conv_params {name}_p = {{1, {in_h}, {in_w}, {in_c}, {out_h}, {out_w}, {out_c}, "
                f"{k_h}, {k_w}, {stride}, {stride}, 1, 1, {pad_h}, {pad_w}, 1, {-zp_in}, {zp_out}, {lo}, {hi}, "
                f"{name}_w, {name}_b, {name}_m, {name}_s, {rounding}}};"]
    if in_place:
        c.decls.append(f"static int8_t {name}_buf[{in_h * in_w * in_c}];")
        c.call = (f"memcpy({name}_buf, in, {c.in_size}); {fn}(&{name}_p, {name}_buf, {name}_buf); "
                  f"memcpy(out, {name}_buf, {c.out_size});")
    elif overlap:
        _overlap_call(c, fn, raster_overlap_delta(1, (in_h, in_w, in_c), (out_h, out_w, out_c), stride, pad_h))
    else:
        c.call = f"{fn}(&{name}_p, in, out);"

    def ref(x: np.ndarray, arith: str) -> np.ndarray:
        img = x[:c.in_size].reshape(in_h, in_w, in_c).astype(np.int64)
        padded = np.full((in_h + 2 * pad_h + k_h, in_w + 2 * pad_w + k_w, in_c), zp_in, np.int64)
        padded[pad_h:pad_h + in_h, pad_w:pad_w + in_w] = img
        padded -= zp_in
        y = np.zeros((out_h, out_w, out_c), np.int8)
        for oy in range(out_h):
            for ox in range(out_w):
                patch = padded[oy * stride:oy * stride + k_h, ox * stride:ox * stride + k_w]
                if depthwise:
                    acc = (patch * w.astype(np.int64)).sum(axis=(0, 1)) + bias
                else:
                    acc = np.tensordot(w.astype(np.int64), patch, axes=([1, 2, 3], [0, 1, 2])) + bias
                y[oy, ox] = [_out(acc[o], m[o], s[o], zp_out, lo, hi, _arith_of(rounding, arith)) for o in range(out_c)]
        return y.reshape(-1)

    c.ref = ref
    return c


def build_cases() -> list[Case]:
    rng = np.random.default_rng(12)
    return [
        fc_case(rng, "fc_tail", 1, 37, 7, True, [-9, -8, -1, 0, 2]),
        fc_case(rng, "fc_big", 2, 64, 12, False, [-10]),
        fc_case(rng, "fc_odd", 1, 21, 5, True, [-6, -30, 1]),
        fc_case(rng, "fc_misaligned", 1, 40, 9, True, [-8, -1], misalign=True),
        fc_case(rng, "fc_in_place", 3, 20, 20, True, [-9, -7], in_place=True),
        conv_case(rng, "conv_im2col", 7, 5, 3, 6, 3, 2, 2, 1, 0, depthwise=False),
        conv_case(rng, "conv_kws", 9, 4, 1, 8, 4, 2, 2, 1, 1, depthwise=False),
        conv_case(rng, "dw_3x3", 6, 5, 10, 10, 3, 3, 1, 1, 1, depthwise=True),
        conv_case(rng, "dw_stride2", 7, 6, 8, 8, 3, 3, 2, 1, 1, depthwise=True),
        conv_case(rng, "dw_in_place", 6, 5, 12, 12, 3, 3, 1, 1, 1, depthwise=True, in_place=True),
        # each rounding named explicitly, whatever the build (TL_ROUND_SINGLE 1, DOUBLE 2, DOUBLE_NARROW 3,
        # SINGLE_NARROW 4)
        fc_case(rng, "fc_single", 1, 37, 7, True, [-9, -8, -1, 0, 2], rounding=1),
        fc_case(rng, "fc_double", 1, 37, 7, True, [-9, -8, -1, 0, 2], rounding=2),
        fc_case(rng, "fc_narrow", 2, 45, 9, True, [-9, -8, -1, -14, -3], rounding=3),
        fc_case(rng, "fc_single_narrow", 2, 45, 9, False, [-9], rounding=4),
        fc_case(rng, "fc_single_narrow_pc", 1, 37, 7, True, [-9, -8, -2, -14, -3], rounding=4),
        conv_case(rng, "conv_narrow", 7, 5, 3, 6, 3, 2, 2, 1, 0, depthwise=False, rounding=3,
                  shifts=(-9, -7, -1, -12)),
        conv_case(rng, "dw_double", 6, 5, 10, 10, 3, 3, 1, 1, 1, depthwise=True, rounding=2),
        conv_case(rng, "dw_narrow", 6, 5, 12, 12, 3, 3, 1, 1, 1, depthwise=True, in_place=True, rounding=3,
                  shifts=(-9, -7, -1, -12, -2)),
        conv_case(rng, "dw_single", 7, 6, 8, 8, 3, 3, 2, 1, 1, depthwise=True, rounding=1),
        # outputs tied to their inputs at the planner's distance (raster_overlap_delta)
        fc_case(rng, "fc_overlap", 6, 8, 16, True, [-9, -7], overlap=True),
        fc_case(rng, "fc_overlap_shrink", 5, 20, 6, True, [-9, -7], overlap=True),
        conv_case(rng, "conv_overlap", 7, 5, 3, 12, 3, 2, 1, 1, 0, depthwise=False, overlap=True),
        conv_case(rng, "conv_overlap_s2", 9, 4, 2, 8, 4, 2, 2, 1, 1, depthwise=False, overlap=True),
        conv_case(rng, "dw_overlap", 6, 5, 12, 12, 3, 3, 1, 1, 1, depthwise=True, overlap=True),
        conv_case(rng, "dw_overlap_s2", 7, 6, 8, 8, 3, 3, 2, 1, 1, depthwise=True, overlap=True),
        # the DSP build's assembly paths: whole layers (per channel, in and out multiples of 4, no clamp) with
        # runs left over before the 8-run loop (11 words) and without (16), in both narrow roundings; 1x1
        # convolution two vectors at a time (odd batch, in place, run counts off and on the 4-run loop)
        fc_case(rng, "fc_layer_sn", 1, 44, 12, True, [-9, -2, -5, -13], rounding=4, full_range=True),
        fc_case(rng, "fc_layer_sn64", 1, 64, 8, True, [-8, -3], rounding=4, full_range=True),
        fc_case(rng, "fc_layer_dn", 1, 44, 12, True, [-9, -1, -14, -3], rounding=3, full_range=True),
        fc_case(rng, "fc_layer_dn64", 1, 64, 8, True, [-7, -1], rounding=3, full_range=True),
        fc_case(rng, "fc_pair_dn", 3, 28, 8, True, [-9, -1, -12], rounding=3),
        fc_case(rng, "fc_pair_sn", 4, 16, 12, True, [-9, -2, -12], rounding=4, full_range=True),
        fc_case(rng, "fc_pair_in_place", 5, 16, 16, True, [-9, -7], rounding=3, in_place=True, full_range=True),
        fc_case(rng, "fc_pair_single", 2, 20, 8, True, [-9, -8, -1, 0, 2], rounding=1),
        # the 3x3 depthwise assembly (groups of four channels plus a tail of two; padding, stride 2, in place)
        # and im2col pixel pairs through the assembly (an odd pixel count leaves one for the one-vector path)
        conv_case(rng, "dw_asm_dn", 6, 5, 10, 10, 3, 3, 1, 1, 1, depthwise=True, in_place=True, rounding=3,
                  shifts=(-9, -7, -1, -12, -2), full_range=True),
        conv_case(rng, "dw_asm_sn", 7, 6, 8, 8, 3, 3, 2, 1, 1, depthwise=True, rounding=4,
                  shifts=(-9, -7, -2, -12), full_range=True),
        conv_case(rng, "conv_pair_dn", 9, 5, 1, 8, 4, 2, 2, 1, 1, depthwise=False, rounding=3,
                  shifts=(-9, -7, -1, -12), full_range=True),
        conv_case(rng, "conv_pair_sn", 7, 5, 4, 12, 3, 3, 1, 1, 0, depthwise=False, rounding=4,
                  shifts=(-9, -2, -12), full_range=True),
    ]


def write_model(cases: list[Case], out_dir, name: str = "kt") -> tuple[int, int]:
    """The cases as one 'model' (NAME.h / NAME.c with NAME_invoke) the parity harnesses can run."""
    in_size = max(c.in_size for c in cases)
    out_size = sum(c.out_size for c in cases)
    up = name.upper()
    (out_dir / f"{name}.h").write_text(
        f"#ifndef {up}_H\n#define {up}_H\n#include <stdint.h>\n#define {up}_INPUT_SIZE {in_size}\n"
        f"#define {up}_OUTPUT_SIZE {out_size}\n#define {up}_ARENA_BYTES 0\n"
        f"int {name}_invoke(const int8_t *input, int8_t *output);\n#endif\n")
    body = [f'#include <string.h>\n#include "{name}.h"\n#include "tl_runtime.h"\n']
    calls = []
    for c in cases:
        body += c.decls
        calls.append(f"  {{ const int8_t *in = input; int8_t *out = output; {c.call} output += {c.out_size}; }}")
    body.append(f"int {name}_invoke(const int8_t *input, int8_t *output) {{\n" + "\n".join(calls) +
                "\n  return 0;\n}\n")
    (out_dir / f"{name}.c").write_text("\n".join(body))
    return in_size, out_size


def _reference(cases: list[Case], xs: np.ndarray, arith: str) -> np.ndarray:
    return np.stack([np.concatenate([c.ref(x, arith) for c in cases]) for x in xs])


def test_block_rows_layout():
    """Row blocks as tl_runtime.h describes them: per 4-row block, each run of 4 inputs row by row, then
    the in % 4 tail row by row; leftover rows plain."""
    rng = np.random.default_rng(3)
    for out_n, in_n in [(7, 37), (4, 4), (3, 5), (8, 16), (9, 2)]:
        w = rng.integers(-128, 128, size=(out_n, in_n)).astype(np.int8)
        flat = block_rows(w)
        assert flat.size == w.size
        k4, tail, pos = in_n // 4 * 4, in_n % 4, 0
        for b in range(out_n // 4):
            for k in range(0, k4, 4):
                for r in range(4):
                    assert (flat[pos:pos + 4] == w[4 * b + r, k:k + 4]).all()
                    pos += 4
            for r in range(4):
                assert (flat[pos:pos + tail] == w[4 * b + r, k4:]).all()
                pos += tail
        assert (flat[pos:] == w[out_n // 4 * 4:].reshape(-1)).all()


def test_fold_bias_and_overflow():
    from shared.tiny.compiler import CompileError

    w = np.array([[1, -2, 3], [-128, -128, -128]], np.int8)
    assert fold_bias(w, np.array([10, 0]), 5, "t").tolist() == [10 - 5 * 2, 5 * 384]
    with pytest.raises(CompileError, match="overflows int32"):
        fold_bias(np.full((1, 4), -128, np.int8), np.array([(1 << 31) - 10]), 127, "op 3 (FULLY_CONNECTED)")


@pytest.mark.parametrize("arith", ["litert", "tflm"])
def test_kernels_portable_and_dsp_match_the_reference(arith, tmp_path):
    for tool in ("make", "gcc", "arm-none-eabi-gcc", "qemu-system-arm"):
        require_tool(tool)
    from shared.tiny.report import ARITH_CFLAGS, _host_harness
    from shared.tiny.targets import make, run_parity

    cases = build_cases()
    in_size, out_size = write_model(cases, tmp_path)
    xs = np.random.default_rng(99).integers(-128, 128, size=(N_VECTORS, in_size), dtype=np.int8)
    want = _reference(cases, xs, arith)
    cflags = ARITH_CFLAGS[arith]
    exe = _host_harness(tmp_path, "kt", tmp_path / "host", cflags)
    import subprocess

    (tmp_path / "in.bin").write_bytes(xs.tobytes())
    subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True, timeout=60)
    host = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.int8).reshape(N_VECTORS, out_size)
    make("cortex-m4-parity", tmp_path, ["kt"], tmp_path / "m4", extra_cflags=cflags)
    m4 = run_parity(tmp_path / "m4" / "parity.elf", xs, tmp_path / "m4", timeout_s=120)
    offsets = np.cumsum([0] + [c.out_size for c in cases])
    for c, lo, hi in zip(cases, offsets[:-1], offsets[1:], strict=True):
        assert (host[:, lo:hi] == want[:, lo:hi]).all(), f"{arith} {c.name}: portable C differs from the reference"
        assert (m4[:, lo:hi] == want[:, lo:hi]).all(), f"{arith} {c.name}: DSP build differs from the reference"


def test_arithmetic_option_guards_the_build(tmp_path):
    """compile_tflite(arithmetic=...) writes a guard: the source compiles only against a runtime built for
    the same rounding; an unknown arithmetic is refused by name."""
    import subprocess

    from shared.tiny.compiler import CompileError, compile_tflite
    from tests.firmware import _fw

    gcc = require_tool("gcc")
    from pathlib import Path

    runtime = Path(__file__).resolve().parents[2] / "firmware" / "runtime"
    with pytest.raises(CompileError, match="arithmetic 'xnn' is not one of litert, tflm"):
        compile_tflite(_fw.model(), "m", tmp_path, arithmetic="xnn")
    for arith, flag, ok in [("litert", [], True), ("litert", ["-DTL_ARITH_TFLM"], False),
                            ("tflm", ["-DTL_ARITH_TFLM"], True), ("tflm", [], False)]:
        cm = compile_tflite(_fw.model(), "m", tmp_path / arith, arithmetic=arith)
        proc = subprocess.run([gcc, "-std=c99", "-fsyntax-only", *flag, f"-I{runtime}", f"-I{tmp_path / arith}",
                               str(cm.source_path)], capture_output=True, text=True)
        assert (proc.returncode == 0) == ok, (arith, flag, proc.stderr[-300:])
        if not ok:
            assert f"arithmetic='{arith}'" in proc.stderr
