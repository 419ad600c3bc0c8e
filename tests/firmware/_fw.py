"""Helpers for the firmware target/app/gateway tests: one build per target per test session.

Test modules call these inside tests; results are cached per process (pytest session) in one
temporary folder, so the stand-in model is converted once and each target compiled once.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tests._tools import require_tool

DEVICE = "fw-test-1"
MODEL_ID = "healthcare-tiny@test"
START_MS = 1_700_000_000_000


@functools.cache
def workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="tl-fw-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def model() -> Path:
    from shared.tiny.firmware import domain_tflite

    return domain_tflite("healthcare", workdir())


def built(target: str):
    """BuildResult for `target` (skips, or fails under TINYLARGE_REQUIRE_ALL=1, when a tool is missing)."""
    require_tool("make")
    require_tool("gcc" if target == "host" else "arm-none-eabi-gcc")
    return _built(target)


@functools.cache
def _built(target: str):
    from shared.tiny.firmware import BuildConfig, FirmwareModel, build

    return build(BuildConfig("healthcare", target, [FirmwareModel(model(), "hc_tiny", MODEL_ID)], workdir()))


def synthetic_off_wrist(w):
    """A window as the device sees it off the wrist: ambient-light PPG of a few hundred counts."""
    from dataclasses import replace

    rng = np.random.default_rng(5)
    n = len(w.ppg_ir)
    return replace(w, ppg_ir=300 + rng.normal(0, 5, n), ppg_red=250 + rng.normal(0, 5, n))


@functools.cache
def windows() -> tuple:
    """A handful of simulated windows (different patients and times) plus one off the wrist."""
    from healthcare.signals import CohortConfig, simulate_cohort

    cohort = simulate_cohort(CohortConfig(n_patients=4, duration_h=2.0, seed=11))
    out = [p.window(t) for p in cohort for t in (600.0, 4200.0)]
    out.append(synthetic_off_wrist(out[0]))
    return tuple(out)


@functools.cache
def sensor_file() -> Path:
    from shared.tiny.firmware import write_windows

    path = workdir() / "sensors.txt"
    write_windows(path, "healthcare", windows(), START_MS)
    return path
