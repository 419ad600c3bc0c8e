"""Kernel parity on the Cortex-M7 (qemu -M mps2-an500) and the Cortex-M33 (qemu -M mps2-an505, Secure state):
every test model compiled to C, built for the board row's core (-mcpu=cortex-m7 -mfpu=fpv5-d16 /
-mcpu=cortex-m33 -mfpu=fpv5-sp-d16, both with the DSP extension) by `make mps2`, gives the LiteRT interpreter's
outputs bit for bit on the 1000 random int8 inputs of the host and M4 parity tests. One model per core runs in
`make test`; the whole suite is marked slow (a build per model per core) and runs in .ci/run."""

from __future__ import annotations

import pytest

from tests._tools import require_tool
from tests.firmware.test_compiler_parity import PARITY_MODELS, _interpret
from tests.firmware.test_parity_qemu import _assert_same, _inputs

pytestmark = pytest.mark.firmware
BOARDS = ("mps2-an500", "mps2-an505")
QUICK = "conv1d_pool"


@pytest.fixture(scope="module")
def board_run(int8_models, tmp_path_factory):
    for tool in ("make", "arm-none-eabi-gcc", "qemu-system-arm"):
        require_tool(tool)
    from shared.tiny.board_build import build_board
    from shared.tiny.compiler import compile_tflite
    from shared.tiny.targets import FirmwareModel, run_parity

    work = tmp_path_factory.mktemp("board-parity")
    cache: dict[tuple[str, str], tuple] = {}

    def run(board: str, name: str) -> tuple:
        if (board, name) not in cache:
            tflite = work / f"{name}.tflite"
            tflite.write_bytes(int8_models[name])
            xs = _inputs(name, compile_tflite(tflite, name, work / "sizes").input_size)
            res = build_board(board, None, [FirmwareModel(tflite, name, "parity@test")], work / board)
            ys = run_parity(res.artifacts["parity.elf"], xs, work, timeout_s=180, machine=res.board.qemu_machine)
            cache[(board, name)] = (xs, ys, res)
        return cache[(board, name)]

    return run


@pytest.mark.parametrize("board", BOARDS)
def test_quick_model_bit_identical(board, board_run, int8_models):
    xs, ys, res = board_run(board, QUICK)
    assert res.board.core in ("cortex-m7", "cortex-m33") and res.size.fits()
    _assert_same(QUICK, ys, _interpret(int8_models[QUICK], xs), f"the interpreter ({board})")


@pytest.mark.slow
@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("name", [n for n in PARITY_MODELS if n != QUICK])
def test_every_model_bit_identical(board, name, board_run, int8_models):
    xs, ys, _ = board_run(board, name)
    assert len(xs) >= 1000
    _assert_same(name, ys, _interpret(int8_models[name], xs), f"the interpreter ({board})")
