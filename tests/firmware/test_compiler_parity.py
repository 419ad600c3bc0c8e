"""Parity: compiled C (gcc + ASan/UBSan) vs the interpreter of its arithmetic, bit for bit, on random int8
inputs: arithmetic="litert" (the default) vs LiteRT's reference kernels (OpResolverType.BUILTIN_REF) and
arithmetic="tflm" vs TensorFlow Lite Micro. LiteRT's default interpreter (XNNPACK) rounds the per-channel
convolutions, MEAN and MUL once where the reference kernels round twice, so it differs on a few values
of the convolution models (README, firmware section); make firmware-report counts them."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from shared.tiny.compiler import compile_tflite
from tests._tools import require_all
from tests.firmware import _models
from tests.firmware.conftest import build_harness, run_harness

pytestmark = pytest.mark.firmware
N_INPUTS = 1000
N_INPUTS_TFLM = 300  # the tflite-micro interpreter is the slower one; the QEMU and report runs use more
PARITY_MODELS = list(_models.BUILDERS)
ARITH_CFLAGS = {"litert": (), "tflm": ("-DTL_ARITH_TFLM",)}


def _need_tflm() -> None:
    """The tflite-micro package (TFLite Micro's interpreter): skip without it, fail under TINYLARGE_REQUIRE_ALL=1."""
    try:
        import tflite_micro  # noqa: F401
    except ImportError as exc:
        if require_all():
            pytest.fail(f"tflite-micro not importable ({exc}); TINYLARGE_REQUIRE_ALL=1")
        pytest.skip(f"tflite-micro not importable ({exc})")


def _interpret(buf: bytes, xs: np.ndarray, resolver: str = "ref") -> np.ndarray:
    """Outputs of LiteRT's reference kernels (`resolver` "ref", what arithmetic="litert" reproduces), its
    default interpreter ("default": builtin kernels + XNNPACK) or TensorFlow Lite Micro ("tflm")."""
    from shared.tiny.report import reference_outputs

    return reference_outputs(buf, xs, {"ref": "litert", "default": "xnnpack", "tflm": "tflm"}[resolver])


def _inputs(name: str, input_size: int, n: int = N_INPUTS) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return rng.integers(-128, 128, size=(n, input_size), dtype=np.int8)


def _compile_and_run(name: str, buf: bytes, gcc: str, tmp_path, arith: str = "litert",
                     n: int = N_INPUTS) -> tuple[np.ndarray, np.ndarray]:
    """The litert build with ASan/UBSan; the tflm build (the same C but for the rounding field of each
    layer) plain -O2."""
    cm = compile_tflite(buf, name, tmp_path, arithmetic=arith)
    exe = build_harness(gcc, cm.source_path, name, tmp_path / f"{name}_harness", sanitize=arith == "litert",
                        extra_cflags=ARITH_CFLAGS[arith])
    xs = _inputs(name, cm.input_size, n)
    return xs, run_harness(exe, xs, tmp_path)


def _assert_equal(name: str, y_c: np.ndarray, y_ref: np.ndarray, what: str) -> None:
    bad = np.argwhere(y_c != y_ref)
    assert bad.size == 0, (f"{name}: {len(bad)} of {y_c.size} values differ from {what}; first at input "
                           f"{bad[0][0]}, C {y_c[tuple(bad[0])]} vs {what} {y_ref[tuple(bad[0])]}")


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_bit_identical_with_litert_reference_kernels(name, int8_models, gcc, tmp_path):
    xs, y_c = _compile_and_run(name, int8_models[name], gcc, tmp_path)
    _assert_equal(name, y_c, _interpret(int8_models[name], xs), "LiteRT's reference kernels")
    assert len(np.unique(y_c, axis=0)) > 10, f"{name}: outputs barely move; the parity would be vacuous"


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_tflm_arithmetic_bit_identical_with_tflite_micro(name, int8_models, gcc, tmp_path):
    _need_tflm()
    xs, y_c = _compile_and_run(name, int8_models[name], gcc, tmp_path, "tflm", N_INPUTS_TFLM)
    _assert_equal(name, y_c, _interpret(int8_models[name], xs, "tflm"), "TFLite Micro")


def test_the_two_references_differ(int8_models, tmp_path):
    """Guard against a vacuous two-mode parity: on these models the two interpreters disagree somewhere
    (single vs double rounding in FULLY_CONNECTED), so each mode's zero above is its own."""
    _need_tflm()
    differ = 0
    for name in ("dense_mlp", "never_seen"):
        xs = _inputs(name, compile_tflite(int8_models[name], name, tmp_path).input_size, N_INPUTS_TFLM)
        differ += int((_interpret(int8_models[name], xs) != _interpret(int8_models[name], xs, "tflm")).sum())
    assert differ > 0
