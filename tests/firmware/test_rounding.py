"""The runtime's requantization roundings (tl_scale with TL_ROUND_SINGLE, TL_ROUND_DOUBLE and their fast
paths TL_ROUND_SINGLE_NARROW and TL_ROUND_DOUBLE_NARROW) against Python models of LiteRT's single rounding
and TFLite Micro's double rounding, on the host (portable C) and on the Cortex-M4 under QEMU (the narrow
double rounding on SMMULR there), over random accumulators, multipliers and shifts with many ties."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tests._tools import require_tool
from tests.firmware.test_kernels import _requant_litert, _requant_tflm

pytestmark = pytest.mark.firmware
CASES = 64  # (acc, multiplier, shift) triples per input vector: 12 bytes in, 16 bytes out each
VECTORS = 60

_MODEL_C = r"""
#include <string.h>
#include "rt.h"
#include "tl_runtime.h"
int rt_invoke(const int8_t *input, int8_t *output) {
  int32_t i;
  for (i = 0; i < RT_CASES; ++i) {
    int32_t acc, m, s, r[4];
    memcpy(&acc, input + 12 * i, 4);
    memcpy(&m, input + 12 * i + 4, 4);
    memcpy(&s, input + 12 * i + 8, 4);
    r[0] = tl_scale(acc, m, s, TL_ROUND_SINGLE);
    r[1] = tl_scale(acc, m, s, TL_ROUND_DOUBLE);
    /* the narrow path only where the compiler would pick it: |acc| < 2^30, shift <= -1 */
    r[2] = (acc > -(1 << 30) && acc < (1 << 30) && s <= -1) ? tl_scale(acc, m, s, TL_ROUND_DOUBLE_NARROW) : r[1];
    /* the narrow single rounding only where the compiler would pick it: shift <= -2 */
    r[3] = s <= -2 ? tl_scale(acc, m, s, TL_ROUND_SINGLE_NARROW) : r[0];
    memcpy(output + 16 * i, r, 16);
  }
  return 0;
}
"""


def _write_model(out_dir) -> int:
    size = 12 * CASES
    (out_dir / "rt.h").write_text(
        f"#ifndef RT_H\n#define RT_H\n#include <stdint.h>\n#define RT_CASES {CASES}\n#define RT_INPUT_SIZE {size}\n"
        f"#define RT_OUTPUT_SIZE {16 * CASES}\n#define RT_ARENA_BYTES 0\n"
        "int rt_invoke(const int8_t *input, int8_t *output);\n#endif\n")
    (out_dir / "rt.c").write_text(_MODEL_C)
    return size


def _cases(rng) -> np.ndarray:
    """[VECTORS * CASES, 3] int64: accumulators small (many ties), medium and full-range; multipliers
    random or short binary fractions; shifts over the whole range, mostly the usual -12..-1."""
    n = VECTORS * CASES
    scale = rng.choice([1 << 8, 1 << 16, 1 << 29, 1 << 31], size=n, p=[0.4, 0.3, 0.2, 0.1])
    acc = np.clip(rng.integers(-(1 << 31), 1 << 31, size=n) % (2 * scale) - scale, -(1 << 31), (1 << 31) - 1)
    m = rng.integers(1 << 30, 1 << 31, size=n)
    ties = rng.random(n) < 0.5
    m[ties] = rng.choice([1 << 30, 3 << 29, 5 << 28, 7 << 28], size=int(ties.sum()))
    s = np.where(rng.random(n) < 0.8, rng.integers(-12, 0, size=n), rng.integers(-31, 2, size=n))
    return np.stack([acc, m, s], axis=1).astype(np.int64)


def _expected(cases: np.ndarray) -> np.ndarray:
    out = np.zeros((len(cases), 4), np.int64)
    for i, (acc, m, s) in enumerate(cases.tolist()):
        single, double = _requant_litert(acc, m, s), _requant_tflm(acc, m, s)
        single = max(-(1 << 31), min((1 << 31) - 1, single))
        out[i] = (single, double, double, single)
    return out


def _decode(raw: np.ndarray) -> np.ndarray:
    return np.frombuffer(np.ascontiguousarray(raw, np.int8).tobytes(), "<i4").astype(np.int64).reshape(-1, 4)


def test_roundings_on_host_and_cortex_m4(tmp_path):
    for tool in ("make", "gcc", "arm-none-eabi-gcc", "qemu-system-arm"):
        require_tool(tool)
    from shared.tiny.report import _host_harness
    from shared.tiny.targets import make, run_parity

    size = _write_model(tmp_path)
    cases = _cases(np.random.default_rng(2026))
    xs = np.frombuffer(cases.astype("<i4").tobytes(), np.int8).reshape(VECTORS, size)
    want = _expected(cases)
    narrow = (np.abs(cases[:, 0]) < (1 << 30)) & (cases[:, 2] <= -1)
    # the cases tell the roundings apart, and most of them take the narrow path
    assert (want[:, 0] != want[:, 1]).sum() > 50 and narrow.mean() > 0.7

    exe = _host_harness(tmp_path, "rt", tmp_path / "host")
    (tmp_path / "in.bin").write_bytes(xs.tobytes())
    subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True, timeout=60,
                   capture_output=True)
    host = _decode(np.frombuffer((tmp_path / "out.bin").read_bytes(), np.int8))
    make("cortex-m4-parity", tmp_path, ["rt"], tmp_path / "m4")
    m4 = _decode(run_parity(tmp_path / "m4" / "parity.elf", xs, tmp_path / "m4", timeout_s=120))
    for label, got in (("host", host), ("cortex-m4", m4)):
        for col, mode in enumerate(("single", "double", "double narrow", "single narrow")):
            bad = np.flatnonzero(got[:, col] != want[:, col])
            assert bad.size == 0, f"{label} {mode}: {bad.size} differ, first {cases[bad[0]].tolist()} -> " \
                                  f"{got[bad[0], col]} (want {want[bad[0], col]})"
