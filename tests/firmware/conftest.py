"""Fixtures for the compiler/runtime tests: converted test models (once per session) and gcc builds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests._tools import require_tool

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "firmware" / "runtime"
HARNESS = REPO / "firmware" / "tools" / "tl_harness.c"
STRICT_CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-O1"]


@pytest.fixture(scope="session")
def int8_models(tmp_path_factory) -> dict[str, bytes]:
    """Every test model of _models.BUILDERS converted to full-int8 TFLite (slow: done once)."""
    pytest.importorskip("tensorflow")
    from tests.firmware import _models

    cache = tmp_path_factory.mktemp("tflite")
    out = {}
    for name, buf in _models.build_all().items():
        (cache / f"{name}.tflite").write_bytes(buf)
        out[name] = buf
    return out


@pytest.fixture(scope="session")
def gcc() -> str:
    return require_tool("gcc")


def build_harness(gcc: str, source: Path, name: str, exe: Path, sanitize: bool = True,
                  extra_cflags: tuple[str, ...] = ()) -> Path:
    """Compile the generated model with the runtime and the generic harness (extra_cflags: -DTL_ARITH_TFLM
    for a model compiled with arithmetic="tflm")."""
    cmd = [gcc, *STRICT_CFLAGS, *(SANITIZE if sanitize else ["-O2"]), *extra_cflags, f"-I{RUNTIME}",
           f"-I{source.parent}",
           f"-DTL_MODEL={name}", f"-DTL_MODEL_UPPER={name.upper()}", f'-DTL_MODEL_HEADER="{name}.h"',
           str(HARNESS), str(source), *sorted(str(p) for p in RUNTIME.glob("*.c")), "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"gcc failed:\n{' '.join(cmd)}\n{res.stderr}"
    return exe


def run_harness(exe: Path, inputs: np.ndarray, workdir: Path) -> np.ndarray:
    """Run the harness over all rows of `inputs` (int8 [N, input_size]); returns int8 [N, output_size]."""
    fin, fout = workdir / f"{exe.name}.in", workdir / f"{exe.name}.out"
    fin.write_bytes(np.ascontiguousarray(inputs, np.int8).tobytes())
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    res = subprocess.run([str(exe), str(fin), str(fout)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, f"harness failed: {res.stderr}"
    assert int(res.stdout.strip()) == len(inputs)
    return np.frombuffer(fout.read_bytes(), np.int8).reshape(len(inputs), -1)
