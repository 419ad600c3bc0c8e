"""Runtime tests: strict C99 builds, and the fixed-point helpers against a Python model of the spec."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tests.firmware.conftest import RUNTIME, SANITIZE, STRICT_CFLAGS

pytestmark = pytest.mark.firmware


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_runtime_compiles_warning_free(compiler, tmp_path):
    if compiler == "clang" and shutil.which("clang") is None:
        pytest.skip("clang not installed (optional second compiler)")
    from tests._tools import require_tool

    cc = require_tool(compiler)
    for src in sorted(RUNTIME.glob("*.c")):
        res = subprocess.run([cc, *STRICT_CFLAGS, "-O2", "-c", str(src), "-o", str(tmp_path / "x.o")],
                             capture_output=True, text=True)
        assert res.returncode == 0, f"{src.name}:\n{res.stderr}"


_PROBE = r"""
#include <stdio.h>
#include "tl_runtime.h"
int main(void) {
  long x, m, s;
  while (scanf("%ld %ld %ld", &x, &m, &s) == 3) {
    printf("%ld %ld\n", (long)tl_mul_by_quantized_multiplier((int32_t)x, (int32_t)m, (int)s),
           (long)tl_rounding_divide_by_pot((int32_t)x, (int)(s < 0 ? -s : s)));
  }
  return 0;
}
"""


def _mbqm(x: int, m: int, shift: int) -> int:
    """Single-rounding requantization: round(x * m / 2^(31 - shift)), ties toward +infinity."""
    total = 31 - shift
    return (x * m + (1 << (total - 1))) >> total


def _rdpot(x: int, e: int) -> int:
    """Rounding divide by 2^e, ties away from zero."""
    if e == 0:
        return x
    q, r = divmod(abs(x), 1 << e)
    q += r >= (1 << (e - 1))
    return q if x >= 0 else -q


def test_fixed_point_helpers_match_the_spec(gcc, tmp_path):
    src = tmp_path / "probe.c"
    src.write_text(_PROBE)
    exe = tmp_path / "probe"
    res = subprocess.run([gcc, *STRICT_CFLAGS, *SANITIZE, f"-I{RUNTIME}", str(src), str(RUNTIME / "tl_quant.c"),
                          "-o", str(exe)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    rng = np.random.default_rng(11)
    cases = []
    for _ in range(3000):
        shift = int(rng.integers(-31, 1))
        x = int(rng.integers(-(1 << 24), 1 << 24))
        cases.append((x, int(rng.integers(1 << 30, 1 << 31)), shift))
    # ties and extremes
    cases += [(-9379, 1098957312, -7), (1 << 30, (1 << 31) - 1, 0), (-(1 << 31), 1 << 30, -31), (5, 1 << 30, -1),
              (-5, 1 << 30, -1), (3, 1 << 30, 1), (2147483647, 2147483647, -31)]
    stdin = "\n".join(f"{x} {m} {s}" for x, m, s in cases)
    out = subprocess.run([str(exe)], input=stdin, capture_output=True, text=True, check=True).stdout.split("\n")
    for (x, m, s), line in zip(cases, out, strict=False):
        got_mbqm, got_rd = (int(v) for v in line.split())
        assert got_mbqm == _mbqm(x, m, s), (x, m, s)
        assert got_rd == _rdpot(x, abs(s)), (x, s)
