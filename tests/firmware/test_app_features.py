"""The C port of the healthcare DSP (healthcare/firmware/hc_features.c) against healthcare.features.

Both run on the same simulated windows (written in the tlsensor text format the firmware reads). The C
side computes in float32 samples with double accumulators, Python in float64; stated tolerances:
"""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

from shared.domain import get
from tests._tools import require_tool
from tests.firmware import _fw

pytestmark = pytest.mark.firmware

#: feature -> (absolute, relative) tolerance; a value passes if within either
TOLERANCES = {
    "hr_bpm": (0.01, 1e-4), "hrv_rmssd_ms": (0.05, 1e-3), "hrv_sdnn_ms": (0.05, 1e-3),
    "spo2_pct": (0.01, 1e-4), "rr_bpm": (0.02, 1e-3), "temp_c": (1e-4, 0.0), "motion_g": (1e-5, 1e-4),
    "quality": (2e-3, 0.0),
}
FW = _fw.__file__.rsplit("/tests/", 1)[0] + "/firmware"
APP = get("healthcare").firmware_dir  # the domain's firmware app, in its package


@pytest.fixture(scope="module")
def c_features(tmp_path_factory) -> list[dict]:
    gcc = require_tool("gcc")
    exe = tmp_path_factory.mktemp("feat") / "features"
    cmd = [gcc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", f"-I{FW}/hal", f"-I{FW}/net",
           f"-I{APP}", f"{FW}/tools/hc_features_main.c", f"{APP}/hc_features.c",
           f"{FW}/hal/tl_sensor_text.c", f"{FW}/net/tl_json.c", "-lm", "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0 and not res.stderr, res.stderr
    out = subprocess.run([str(exe), str(_fw.sensor_file())], capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_every_window_is_processed(c_features):
    assert len(c_features) == len(_fw.windows())


def test_c_features_match_python_within_tolerances(c_features):
    from healthcare.features import FEATURE_NAMES, extract_window

    checked = 0
    for w, c in zip(_fw.windows(), c_features, strict=True):
        py = extract_window(w).as_dict()
        for name in FEATURE_NAMES:
            p, v = py[name], c[name]
            assert (p is None) == (v is None), f"{name}: python {p} vs C {v} (NaN pattern differs)"
            if p is None:
                continue
            atol, rtol = TOLERANCES[name]
            assert abs(v - p) <= max(atol, rtol * abs(p)), f"{name}: python {p} vs C {v}"
            checked += 1
    assert checked >= 8 * (len(c_features) - 1) - 4  # nearly every on-wrist feature was measurable


def test_c_hr_quality_matches_python(c_features):
    """Issue 23 item 11: the HR gate (features step 10) gives the same verdict in C on every window."""
    from healthcare.features import extract_window

    verdicts = [extract_window(w).hr_quality for w in _fw.windows()]
    assert [c["hr_quality"] for c in c_features] == verdicts
    assert {"good", "low"} <= set(verdicts)


def test_off_wrist_window_gives_nan_vitals_and_zero_quality(c_features):
    off = c_features[-1]
    assert off["hr_bpm"] is None and off["spo2_pct"] is None and off["temp_c"] is None
    assert off["quality"] == 0 and off["motion_g"] is not None


def test_c_model_vector_matches_to_vector(c_features):
    from healthcare.features import extract_window, to_vector

    for w, c in zip(_fw.windows(), c_features, strict=True):
        v = to_vector(extract_window(w))
        np.testing.assert_allclose(np.array(c["vector"]), v, atol=2e-3)
        assert all(math.isfinite(x) and abs(x) <= 8 for x in c["vector"])
