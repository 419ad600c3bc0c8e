"""Compiler unit tests: multipliers, arena planning, generated files, and clear errors on bad input."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from shared.tiny.compiler import (
    SUPPORTED_OPS,
    Buffer,
    CompileError,
    arena_plan,
    compile_tflite,
    main_compile,
    plan_buffers,
)
from shared.tiny.compiler._quant import quantize_multiplier
from shared.tiny.compiler.planner import ArenaPlan, Overlap
from tests.firmware.conftest import RUNTIME, STRICT_CFLAGS


@pytest.mark.parametrize("real", [1e-9, 0.0039, 0.3, 0.5, 0.999999, 1.0, 3.7, 1234.5])
def test_quantize_multiplier_reconstructs_the_scale(real):
    m, shift = quantize_multiplier(real)
    assert (1 << 30) <= m < (1 << 31)
    assert math.isclose(m * 2.0 ** (shift - 31), real, rel_tol=2**-30)


def test_quantize_multiplier_zero_and_invalid():
    assert quantize_multiplier(0.0) == (0, 0)
    with pytest.raises(CompileError):
        quantize_multiplier(float("nan"))


def test_planner_reuses_memory_of_dead_buffers():
    bufs = [Buffer(0, 100, 0, 1), Buffer(1, 60, 1, 2), Buffer(2, 100, 2, 3), Buffer(3, 8, 3, 3)]
    plan = plan_buffers(bufs)
    assert plan.overlaps() == []
    assert plan.arena_bytes < sum(b.size_bytes for b in bufs)
    assert plan.arena_bytes >= 160  # buffers 0 and 1 are alive together
    assert all(off % 4 == 0 for off in plan.offsets.values())


def test_planner_random_lifetimes_never_overlap():
    rng = np.random.default_rng(3)
    for _ in range(50):
        bufs = []
        for k in range(12):
            first = int(rng.integers(0, 10))
            bufs.append(Buffer(k, int(rng.integers(1, 300)), first, first + int(rng.integers(0, 4))))
        plan = plan_buffers(bufs)
        assert plan.overlaps() == []
        assert plan.arena_bytes >= max(b.size_bytes for b in bufs)


def test_planner_ties_let_an_output_start_before_its_input():
    """A tie (a raster-order kernel's output over the input bytes it no longer reads) shrinks the arena;
    the same offsets without the tie, or past its delta, are a collision."""
    bufs = [Buffer(0, 100, 0, 1), Buffer(1, 200, 1, 2), Buffer(2, 50, 2, 3)]
    plan = plan_buffers(bufs, ties=[Overlap(0, 1, -42)])
    assert plan.overlaps() == [] and plan.ties == [Overlap(0, 1, -44)]  # delta rounded down to a word
    assert plan.offsets[1] - plan.offsets[0] <= -44
    assert plan.arena_bytes == 252 < plan_buffers(bufs).arena_bytes == 300  # 200 + 50, word-aligned
    assert ArenaPlan(plan.arena_bytes, plan.offsets, bufs).overlaps() == [(0, 1)]
    shifted = {**plan.offsets, 1: plan.offsets[0] - 40}
    assert (0, 1) in ArenaPlan(plan.arena_bytes, shifted, bufs, 4, plan.ties).overlaps()


def test_planner_random_chains_of_ties_never_collide():
    rng = np.random.default_rng(5)
    for _ in range(40):
        bufs = [Buffer(k, int(rng.integers(1, 300)), k, k + 1) for k in range(8)]
        bufs += [Buffer(100 + k, int(rng.integers(1, 200)), int(rng.integers(0, 8)), 9) for k in range(4)]
        ties = [Overlap(k, k + 1, -int(rng.integers(0, 400))) for k in range(7) if rng.random() < 0.7]
        plan = plan_buffers(bufs, ties=ties)
        assert plan.overlaps() == []
        assert all(off % 4 == 0 for off in plan.offsets.values())


def test_depthwise_gap_arena_uses_ties(int8_models):
    """depthwise_gap: CONV_2D -> DEPTHWISE (x2 channels) -> DEPTHWISE stride 2, each output tied to its input:
    the arena is the chain's span, not the two largest activations side by side."""
    plan = arena_plan(int8_models["depthwise_gap"])
    assert len(plan.ties) == 2 and plan.overlaps() == []
    assert plan.arena_bytes < plan_buffers(plan.buffers).arena_bytes == 864 + 1728


@pytest.mark.parametrize("blob", [b"", b"TFL3", bytes(range(256)) * 4])
def test_garbage_is_a_compile_error(blob, tmp_path):
    with pytest.raises(CompileError):
        compile_tflite(blob, "m", tmp_path)


def test_random_and_truncated_bytes_never_crash(int8_models, tmp_path):
    buf = int8_models["dense_mlp"]
    rng = np.random.default_rng(0)
    for cut in [8, 16, 64, len(buf) // 3, len(buf) // 2, len(buf) - 100]:
        with pytest.raises(CompileError):
            compile_tflite(buf[:cut], "m", tmp_path)
    for _ in range(30):
        noisy = bytearray(buf)
        start = int(rng.integers(8, len(buf) - 40))
        noisy[start:start + 40] = rng.integers(0, 256, size=40, dtype=np.uint8).tobytes()
        try:
            compile_tflite(bytes(noisy), "m", tmp_path)
        except CompileError:
            pass  # a clear error is fine; anything else propagates and fails


def test_float_model_is_refused(tmp_path):
    pytest.importorskip("tensorflow")
    from tests.firmware import _models

    with pytest.raises(CompileError, match="float32"):
        compile_tflite(_models.float_model(), "m", tmp_path)


def test_unsupported_op_names_op_and_index(int8_models, tmp_path):
    buf = bytearray(int8_models["dense_mlp"])
    # patch the SOFTMAX operator code (25) into HARD_SWISH (117): builtin_code is an int32 field
    from shared.tiny.compiler._flatbuf import _Reader, _Table

    r = _Reader(bytes(buf))
    model = _Table(r, r.u32(0, "root"), "model")
    for oc in model.tables(1, "operator_codes"):
        if int(oc.scalar(3, "i", 0)) == 25:
            pos = oc.pos + oc._field(3)
            buf[pos:pos + 4] = (117).to_bytes(4, "little")
            if oc._field(0):  # deprecated_builtin_code byte, when present
                buf[oc.pos + oc._field(0)] = 117
    with pytest.raises(CompileError, match=r"op 3 \(HARD_SWISH\) is not supported"):
        compile_tflite(bytes(buf), "m", tmp_path)


def test_bad_name_and_label_count(int8_models, tmp_path):
    with pytest.raises(CompileError, match="C identifier"):
        compile_tflite(int8_models["dense_mlp"], "3bad-name", tmp_path)
    with pytest.raises(CompileError, match="labels"):
        compile_tflite(int8_models["dense_mlp"], "m", tmp_path, labels=["a", "b"])


@pytest.mark.firmware
def test_generated_pair_builds_on_its_own(int8_models, gcc, tmp_path):
    labels = ["a", "b", "c", "d", "e"]
    cm = compile_tflite(int8_models["dense_mlp"], "mlp", tmp_path, labels=labels)
    header = cm.header_path.read_text()
    for macro in ["MLP_INPUT_SIZE 20", "MLP_OUTPUT_SIZE 5", f"MLP_ARENA_BYTES {cm.arena_bytes}",
                  "MLP_INPUT_SCALE", "MLP_INPUT_ZERO_POINT", "MLP_OUTPUT_SCALE", "MLP_OUTPUT_ZERO_POINT",
                  "MLP_NUM_LABELS 5", "int mlp_invoke(const int8_t *input, int8_t *output);"]:
        assert macro in header
    src = cm.source_path.read_text()
    assert "malloc" not in src and src.count("static int8_t mlp_arena[") == 1
    obj = tmp_path / "lib.a"
    objs = []
    for c in [cm.source_path, *sorted(RUNTIME.glob("*.c"))]:
        o = tmp_path / (c.stem + ".o")
        res = subprocess.run([gcc, *STRICT_CFLAGS, "-O2", f"-I{RUNTIME}", "-c", str(c), "-o", str(o)],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        objs.append(o)
    assert obj.parent.exists() and len(objs) > 3
    assert cm.ops == ["FULLY_CONNECTED"] * 3 + ["SOFTMAX"]
    assert cm.input_zero_point in range(-128, 128) and cm.output_scale == pytest.approx(1 / 256)


def test_arena_plan_matches_compiled_model(int8_models, tmp_path):
    for name in ["conv1d_pool", "branches"]:
        plan = arena_plan(int8_models[name])
        cm = compile_tflite(int8_models[name], name, tmp_path)
        assert plan.arena_bytes == cm.arena_bytes > 0
        assert plan.overlaps() == []
        # reuse: the arena is smaller than keeping every activation alive
        assert plan.arena_bytes <= sum(b.size_bytes for b in plan.buffers)


def test_cli_writes_files_and_reports_errors(int8_models, tmp_path, capsys):
    model = tmp_path / "m.tflite"
    model.write_bytes(int8_models["dense_mlp"])
    assert main_compile([str(model), "--name", "cli_m", "--out", str(tmp_path / "gen"), "--json"]) == 0
    assert (tmp_path / "gen" / "cli_m.c").is_file() and (tmp_path / "gen" / "cli_m.h").is_file()
    assert '"arena_bytes"' in capsys.readouterr().out
    from shared.errors import UserError

    with pytest.raises(UserError, match="not found"):  # the console script: one line on stderr, exit 2
        main_compile([str(tmp_path / "missing.tflite"), "--name", "x", "--out", str(tmp_path)])


def test_supported_ops_cover_the_brief():
    for op in ["FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN",
               "ADD", "MUL", "CONCATENATION", "RESHAPE", "SOFTMAX", "LOGISTIC", "TANH", "SQUEEZE",
               "EXPAND_DIMS"]:
        assert op in SUPPORTED_OPS
