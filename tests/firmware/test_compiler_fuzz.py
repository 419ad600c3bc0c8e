"""Fuzz the compiler with mutated .tflite files: every mutant is refused with a CompileError or compiles to C
that builds with -Werror and runs clean under ASan/UBSan (heap/global overflows, signed overflow).

Mutations are structural (they rewrite shape dimensions, quantization scales and zero points, and op
option scalars in place, found through the compiler's own flatbuffer reader) plus raw byte flips; the
targeted cases are the ones issue 13 found by hand.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from shared.tiny.compiler import CompileError, compile_tflite
from shared.tiny.compiler._flatbuf import _Reader, _Table
from tests.firmware.conftest import build_harness, run_harness

pytestmark = pytest.mark.firmware
BASES = ["dense_mlp", "conv1d_pool", "branches", "dense_tanh_head", "depthwise_gap"]
N_RANDOM = 300  # mutants compiled per run (all bases together)
MAX_BUILDS = 4  # of those that compile, how many are built with sanitizers and run (per test)
DIMS = [0, -1, 1, 2, 3, 7, 255, 65535, 2147418113, 429509837, 40, 2**31 - 1]
SCALES = [0.0, float("nan"), float("inf"), -1.0, 1e-45, 1e-40, 1.2e-38, 1e-30, 1e30, 3e38]
ZPS = [-129, 128, 200, 2**40, -(2**40)]


def _fields(buf: bytes) -> dict[str, list[tuple[int, str]]]:
    """Byte offsets (and struct formats) of every tensor's shape dims, scales, zero points and every op's
    builtin-option scalars in the first subgraph."""
    r = _Reader(buf)
    model = _Table(r, r.u32(0, "root"), "model")
    sg = model.tables(2, "subgraphs")[0]
    out: dict[str, list[tuple[int, str]]] = {"dim": [], "scale": [], "zp": [], "opt": []}
    for t in sg.tables(0, "tensors"):
        v = t.vector_len(0, "shape")
        if v:
            out["dim"] += [(v[0] + 4 * k, "<i") for k in range(v[1])]
        q = t.table(4, "quantization")
        if q is not None:
            for fid, key, size, fmt in ((2, "scale", 4, "<f"), (3, "zp", 8, "<q")):
                v = q.vector_len(fid, key)
                if v:
                    out[key] += [(v[0] + size * k, fmt) for k in range(v[1])]
    for op in sg.tables(3, "operators"):
        o = op.table(4, "options")
        if o is not None:
            for fid in range((o.vt_size - 4) // 2):
                off = o._field(fid)
                if off:
                    out["opt"].append((o.pos + off, "<b"))
    return out


def _put(buf: bytearray, at: tuple[int, str], value) -> None:
    pos, fmt = at
    if fmt == "<b":
        struct.pack_into("<B", buf, pos, int(value) & 0xFF)
    else:
        struct.pack_into(fmt, buf, pos, value)


def _mutant(base: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(base)
    f = _fields(base)
    for _ in range(int(rng.integers(1, 4))):
        kind = str(rng.choice(["dim", "scale", "zp", "opt", "byte"]))
        if kind == "byte" or not f[kind]:
            pos = int(rng.integers(8, len(buf)))
            buf[pos] = int(rng.integers(0, 256))
            continue
        at = f[kind][int(rng.integers(len(f[kind])))]
        if kind == "dim":
            _put(buf, at, int(rng.choice(DIMS)))
        elif kind == "scale":
            _put(buf, at, float(rng.choice(SCALES)))
        elif kind == "zp":
            _put(buf, at, int(rng.choice(ZPS)))
        else:
            _put(buf, at, int(rng.choice([0, 1, 2, 3, 5, 64, 127, 255])))
    return bytes(buf)


def _compile_or_refuse(buf: bytes, tmp_path, name: str = "fz"):
    """A CompileError is a fine answer; any other exception fails the test."""
    try:
        return compile_tflite(buf, name, tmp_path)
    except CompileError as exc:
        assert str(exc), "CompileError without a message"
        return None


def _run_sanitized(cm, gcc: str, tmp_path, tag: str) -> None:
    src = cm.source_path.read_text()
    assert "inff" not in src and "nanf" not in src
    exe = build_harness(gcc, cm.source_path, cm.name, tmp_path / f"fz_{tag}")
    rng = np.random.default_rng(1)
    xs = rng.integers(-128, 128, size=(4, cm.input_size), dtype=np.int8)
    ys = run_harness(exe, xs, tmp_path)  # non-zero exit (ASan/UBSan report) fails inside
    assert ys.shape == (4, cm.output_size)


def _set_scales(buf: bytes, value: float) -> bytes:
    out = bytearray(buf)
    for at in _fields(buf)["scale"]:
        _put(out, at, value)
    return bytes(out)


@pytest.mark.parametrize("value", [0.0, float("nan"), float("inf"), 1e-40, -0.5])
def test_invalid_scales_are_compile_errors(value, int8_models, tmp_path):
    with pytest.raises(CompileError, match="scale"):
        compile_tflite(_set_scales(int8_models["dense_mlp"], value), "fz", tmp_path)


def test_int64_wrapping_shape_is_refused(int8_models, tmp_path):
    base = int8_models["conv1d_pool"]
    dims = _fields(base)["dim"]
    buf = bytearray(base)
    for at, v in zip(dims[:4], [1, 2147418113, 429509837, 40], strict=True):
        _put(buf, at, v)  # 1 x 2147418113 x 429509837 x 40 wraps to 8 in int64
    with pytest.raises(CompileError):
        compile_tflite(bytes(buf), "fz", tmp_path)


def test_every_shape_mutation_is_refused_or_runs_clean(int8_models, gcc, tmp_path):
    """Each single dimension of each base model set to hostile values: refused, or safe C."""
    built = 0
    for name in ("dense_tanh_head", "conv1d_pool"):
        base = int8_models[name]
        for k, at in enumerate(_fields(base)["dim"]):
            for v in (0, 2, 65535, 2**31 - 1):
                buf = bytearray(base)
                _put(buf, at, v)
                cm = _compile_or_refuse(bytes(buf), tmp_path / "out")
                if cm is not None and built < MAX_BUILDS:
                    built += 1
                    _run_sanitized(cm, gcc, tmp_path, f"{name}_{k}_{v}")


def test_random_mutants_are_refused_or_run_clean(int8_models, gcc, tmp_path):
    rng = np.random.default_rng(13)
    outcomes = {"refused": 0, "compiled": 0, "built": 0}
    for i in range(N_RANDOM):
        base = int8_models[BASES[i % len(BASES)]]
        cm = _compile_or_refuse(_mutant(base, rng), tmp_path / "out")
        if cm is None:
            outcomes["refused"] += 1
            continue
        outcomes["compiled"] += 1
        if outcomes["built"] < MAX_BUILDS:
            outcomes["built"] += 1
            _run_sanitized(cm, gcc, tmp_path, str(i))
    print("compiler fuzz:", outcomes)
    assert outcomes["refused"] > N_RANDOM // 4 and outcomes["built"] > 0
