"""The C port of the healthcare DSP (hc_features.c) against healthcare.features on real PPG windows.

Issue 13 item 10: the beat detector changed (beat period, diastolic-wave rule, polarity setting); the C
port must follow on real recordings too, at their own sampling rates (19.6 to 128 Hz) and in both
polarities, not only on the simulator's 25 Hz windows (test_app_features.py). Same tolerances.
"""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

from shared.domain import get
from tests._tools import require_tool
from tests.firmware.test_app_features import TOLERANCES

pytestmark = pytest.mark.firmware

APP = get("healthcare").firmware_dir  # the domain's firmware app, in its package
WINDOW_S = 30.0
OFFSET = 100_000.0  # counts: above the off-wrist threshold
COUNTS_STD = 1_000.0  # counts: perfusion (AC / DC) about 1 %

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "hc_features.h"
/* stdin: windows of "n fs polarity temp" then n samples; stdout: one JSON line of features each */
int main(void) {
  int n, pol, i, k;
  float fs, temp;
  while (scanf("%d %f %d %f", &n, &fs, &pol, &temp) == 4) {
    float *x = malloc(sizeof(float) * n), *zero = calloc(n, sizeof(float)), *one = malloc(sizeof(float) * n);
    float *scratch = malloc(sizeof(float) * HC_SCRATCH_FLOATS(n));
    hc_features f;
    const float *v = &f.hr_bpm;
    for (i = 0; i < n; i++) {
      if (scanf("%f", &x[i]) != 1) return 3;
      one[i] = 1.0f;
    }
    if (hc_set_ppg_polarity(pol) != 0) return 4;
    if (hc_extract(x, x, zero, zero, one, n, temp, fs, scratch, &f) != 0) return 5;
    printf("[");
    for (k = 0; k < HC_N_FEATURES; k++) {
      if (v[k] != v[k]) printf("%snull", k ? "," : "");
      else printf("%s%.9g", k ? "," : "", (double)v[k]);
    }
    printf(",%d]\n", f.hr_good);
    free(x); free(zero); free(one); free(scratch);
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def windows() -> list[tuple[str, np.ndarray, float, int]]:
    """Three 30 s windows of every recording (float32 samples, as the device holds them), in the
    recording's polarity and inverted with the setting flipped."""
    from healthcare import ppg_eval
    from tests.healthcare.test_real_ppg import _ensure_packages

    _ensure_packages()
    recs, missing = ppg_eval.recordings()
    assert not missing, missing
    out = []
    for r in recs:
        n = int(WINDOW_S * r.fs_hz)
        x = (r.x - r.x.mean()) * (COUNTS_STD / r.x.std()) + OFFSET  # an 18-bit front end's range
        for i0 in np.linspace(0, max(0, x.size - n), 3).astype(int):
            w = x[i0: i0 + n].astype(np.float32)
            out.append((f"{r.name}@{i0}", w, r.fs_hz, r.polarity))
            flipped = (np.float32(2 * OFFSET + float(w.max())) - w).astype(np.float32)
            out.append((f"{r.name}@{i0}-inverted", flipped, r.fs_hz, -r.polarity))
    return out


@pytest.fixture(scope="module")
def c_features(windows, tmp_path_factory) -> list[list]:
    gcc = require_tool("gcc")
    d = tmp_path_factory.mktemp("real-ppg")
    (d / "main.c").write_text(HARNESS)
    exe = d / "features"
    res = subprocess.run([gcc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", f"-I{APP}",
                          str(d / "main.c"), f"{APP}/hc_features.c", "-lm", "-o", str(exe)],
                         capture_output=True, text=True)
    assert res.returncode == 0 and not res.stderr, res.stderr
    text = "".join(f"{w.size} {fs!r} {pol} 33.0\n" + "\n".join(repr(float(v)) for v in w) + "\n"
                   for _, w, fs, pol in windows)
    out = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True, timeout=120)
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_c_features_match_python_on_real_ppg(windows, c_features):
    from healthcare.features import FEATURE_NAMES, extract

    assert len(c_features) == len(windows)
    with_hr = 0
    for (name, w, fs, pol), c in zip(windows, c_features, strict=True):
        n = w.size
        acc = np.zeros((n, 3))
        acc[:, 2] = 1.0
        fs32 = float(np.float32(fs))  # the C takes fs as float
        py = extract(w.astype(np.float64), w.astype(np.float64), acc, 33.0, fs32, polarity=pol).as_dict()
        for k, feat in enumerate(FEATURE_NAMES):
            p, v = py[feat], c[k]
            assert (p is None) == (v is None), f"{name} {feat}: python {p} vs C {v}"
            if p is None:
                continue
            atol, rtol = TOLERANCES[feat]
            assert abs(v - p) <= max(atol, rtol * abs(p)), f"{name} {feat}: python {p} vs C {v}"
        with_hr += py["hr_bpm"] is not None and math.isfinite(py["hr_bpm"])
    assert with_hr >= len(windows) * 0.8  # the comparison covers the detector, not only NaN patterns


def test_c_hr_quality_matches_python_on_real_ppg(windows, c_features):
    """Issue 23 item 11: the HR gate (features step 10) gives the same verdict in C on every real window,
    and both verdicts occur among them."""
    from healthcare.features import extract

    verdicts = []
    for (name, w, fs, pol), c in zip(windows, c_features, strict=True):
        acc = np.zeros((w.size, 3))
        acc[:, 2] = 1.0
        py = extract(w.astype(np.float64), w.astype(np.float64), acc, 33.0, float(np.float32(fs)), polarity=pol)
        assert c[-1] == (py.hr_quality == "good"), f"{name}: python {py.hr_quality} vs C hr_good {c[-1]}"
        verdicts.append(py.hr_quality)
    assert {"good", "low"} <= set(verdicts)
