"""Parity on the Cortex-M4: every test model compiled to C (default arithmetic, "litert"), built for
-mcpu=cortex-m4 -mfloat-abi=hard -mfpu=fpv4-sp-d16 (target cortex-m4-parity) and run under qemu-system-arm
-M mps2-an386, one QEMU process per model, gives LiteRT's reference kernels' outputs bit for bit on 1000
random int8 inputs (the inputs of the host parity test), and the host build's outputs bit for bit. The
arithmetic="tflm" build on the M4 is checked against TFLite Micro by make firmware-report."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from shared.tiny.compiler import compile_tflite
from tests._tools import require_tool
from tests.firmware import _models
from tests.firmware.conftest import build_harness, run_harness
from tests.firmware.test_compiler_parity import N_INPUTS, PARITY_MODELS, _interpret

pytestmark = pytest.mark.firmware


def _inputs(name: str, input_size: int) -> np.ndarray:
    """The same random inputs as test_compiler_parity draws for `name`."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return rng.integers(-128, 128, size=(N_INPUTS, input_size), dtype=np.int8)


@pytest.fixture(scope="module")
def m4_run(int8_models, tmp_path_factory):
    """name -> (inputs, outputs of parity.elf under QEMU, BuildResult); built and run once per model."""
    for tool in ("make", "arm-none-eabi-gcc", "qemu-system-arm"):
        require_tool(tool)
    from shared.tiny.firmware import BuildConfig, FirmwareModel, build, run_parity

    work = tmp_path_factory.mktemp("m4-parity")
    cache: dict[str, tuple] = {}

    def run(name: str) -> tuple:
        if name not in cache:
            tflite = work / f"{name}.tflite"
            tflite.write_bytes(int8_models[name])
            xs = _inputs(name, compile_tflite(tflite, name, work / "sizes").input_size)
            res = build(BuildConfig(None, "cortex-m4-parity", [FirmwareModel(tflite, name, "parity@test")], work))
            cache[name] = (xs, run_parity(res.artifacts["parity.elf"], xs, work, timeout_s=120), res)
        return cache[name]

    return run


def _assert_same(name: str, got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, (name, got.shape, want.shape)
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{name}: {len(bad)} of {got.size} values differ from {what}; first at input "
                           f"{bad[0][0]}: M4 {got[tuple(bad[0])]} vs {what} {want[tuple(bad[0])]}")


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_m4_bit_identical_with_interpreter(name, int8_models, m4_run):
    xs, y_m4, _ = m4_run(name)
    assert len(xs) >= 1000
    _assert_same(name, y_m4, _interpret(int8_models[name], xs), "LiteRT's reference kernels")


@pytest.mark.parametrize("name", list(_models.BUILDERS))
def test_m4_bit_identical_with_host_build(name, m4_run, gcc, tmp_path):
    """The same C on x86-64 (gcc -O2) and on the M4 (arm-none-eabi-gcc -O2, FPv4 single precision for
    SOFTMAX): identical bits, dense_tanh_head included."""
    xs, y_m4, res = m4_run(name)
    src = res.model_dir / f"{name}.c"
    exe = build_harness(gcc, src, name, tmp_path / f"{name}_host", sanitize=False)
    _assert_same(name, y_m4, run_harness(exe, xs, tmp_path), "the host build")
    assert len(np.unique(y_m4, axis=0)) > 10, f"{name}: outputs barely move; the parity would be vacuous"


def test_parity_elf_rejects_a_partial_vector(m4_run, tmp_path):
    """A truncated input file is an error, not a silently shorter run; so is an empty batch."""
    from shared.tiny.firmware import run_parity, run_qemu

    xs, _, res = m4_run(PARITY_MODELS[0])
    fin = tmp_path / "partial.bin"
    fin.write_bytes(xs[:2].tobytes()[:-1])
    run = run_qemu(res.artifacts["parity.elf"], ["--in", str(fin), "--out", str(tmp_path / "o.bin")], timeout_s=60)
    assert run.returncode != 0 and "partial vector" in run.stderr, run.stderr
    with pytest.raises(ValueError, match="inputs"):
        run_parity(res.artifacts["parity.elf"], np.zeros((0, xs.shape[1]), np.int8), tmp_path)
