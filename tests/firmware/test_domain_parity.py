"""Parity for the domain model: the trained healthcare tiny model (quick config), compiled with
shared.tiny.compiler, gives the LiteRT interpreter's outputs bit for bit on the host (gcc + ASan/UBSan) and
on the Cortex-M4 under QEMU, on >= 1000 inputs: quantized feature vectors of a simulated cohort (the
inputs the device really sees) plus random int8 vectors covering the whole input range."""

from __future__ import annotations

import numpy as np
import pytest

from shared.tiny.compiler import compile_tflite
from tests._tools import require_tool
from tests.firmware.conftest import build_harness, run_harness
from tests.firmware.test_compiler_parity import _interpret

pytestmark = pytest.mark.firmware
NAME = "hc_tiny"
N_RANDOM = 500
COHORT = {"n_patients": 6, "duration_h": 8.0, "seed": 31}  # not a training cohort: 6 x 96 windows


@pytest.fixture(scope="module")
def model(quick_models) -> bytes:
    return (quick_models / "tiny.tflite").read_bytes()


@pytest.fixture(scope="module")
def real_inputs(model) -> np.ndarray:
    """Feature vectors of a simulated cohort (healthcare.signals -> features.to_vector), quantized with
    the model's input scale and zero point, as the simulated and the C device do."""
    from healthcare.features import extract_window, to_vector
    from healthcare.signals import CohortConfig, simulate_cohort
    from shared.tiny.int8 import Int8Runner

    cohort = simulate_cohort(CohortConfig(**COHORT))
    x = np.stack([to_vector(extract_window(w)) for p in cohort for w in p.windows()])
    return Int8Runner(model).quantize(x)


@pytest.fixture(scope="module")
def inputs(real_inputs) -> np.ndarray:
    rng = np.random.default_rng(2024)
    rand = rng.integers(-128, 128, size=(N_RANDOM, real_inputs.shape[1]), dtype=np.int8)
    xs = np.concatenate([real_inputs, rand])
    assert len(xs) >= 1000
    return xs


@pytest.fixture(scope="module")
def compiled(model, tmp_path_factory):
    return compile_tflite(model, NAME, tmp_path_factory.mktemp("hc-gen"))


@pytest.fixture(scope="module")
def reference(model, inputs) -> np.ndarray:
    return _interpret(model, inputs)


def _assert_same(got: np.ndarray, want: np.ndarray, n_real: int, where: str) -> None:
    assert got.shape == want.shape
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{where}: {len(bad)} of {got.size} values differ "
                           f"({int((bad[:, 0] < n_real).sum())} on cohort inputs); first at input {bad[0][0]}: "
                           f"C {got[tuple(bad[0])]} vs {want[tuple(bad[0])]}")


def test_inputs_are_real_and_cover_the_range(real_inputs, inputs, compiled):
    assert real_inputs.shape[1] == compiled.input_size == 8
    assert len(real_inputs) >= 500
    # the cohort's vectors vary in every feature, and stay mostly inside the quantization range
    assert all(len(np.unique(real_inputs[:, j])) > 5 for j in range(real_inputs.shape[1]))
    assert np.mean(np.abs(real_inputs.astype(int)) == 128) < 0.05
    assert inputs.min() == -128 and inputs.max() == 127


@pytest.fixture(scope="module")
def host_outputs(compiled, inputs, gcc, tmp_path_factory) -> np.ndarray:
    work = tmp_path_factory.mktemp("hc-host")
    exe = build_harness(gcc, compiled.source_path, NAME, work / "hc_harness", sanitize=True)
    return run_harness(exe, inputs, work)


@pytest.fixture(scope="module")
def m4_outputs(quick_models, inputs, tmp_path_factory) -> np.ndarray:
    for tool in ("make", "arm-none-eabi-gcc", "qemu-system-arm"):
        require_tool(tool)
    from shared.tiny.firmware import BuildConfig, FirmwareModel, build, run_parity

    work = tmp_path_factory.mktemp("hc-m4")
    res = build(BuildConfig("healthcare", "cortex-m4-parity",
                            [FirmwareModel(quick_models / "tiny.tflite", NAME, "healthcare-tiny@test")], work))
    return run_parity(res.artifacts["parity.elf"], inputs, work, timeout_s=120)


def test_host_bit_exact(host_outputs, reference, real_inputs):
    _assert_same(host_outputs, reference, len(real_inputs), "host (gcc, ASan/UBSan) vs the interpreter")


def test_qemu_bit_exact(m4_outputs, reference, real_inputs):
    _assert_same(m4_outputs, reference, len(real_inputs), "Cortex-M4 under QEMU vs the interpreter")


def test_c_device_matches_the_simulated_device(model, inputs, real_inputs, host_outputs, m4_outputs):
    """healthcare.device scores with Int8Runner's reference kernels (BUILTIN_REF): for this model the
    firmware's int8 scores are the simulated wearable's, bit for bit."""
    want = _interpret(model, inputs, resolver="ref")
    _assert_same(host_outputs, want, len(real_inputs), "host vs BUILTIN_REF")
    _assert_same(m4_outputs, want, len(real_inputs), "M4 vs BUILTIN_REF")


def test_cohort_outputs_are_not_constant(reference, real_inputs):
    """Guard against a vacuous parity: the real inputs move the scores and reach several classes."""
    y = reference[: len(real_inputs)]
    assert len(np.unique(y, axis=0)) > 20
    assert len(np.unique(y.argmax(1))) >= 2
